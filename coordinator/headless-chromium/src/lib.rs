//! Debian's headless Chromium for browser tests, driven through `chromedriver` (WebDriver) with
//! [`fantoccini`].
//!
//! [`Browser::start`] starts `chromedriver` on a free loopback port, opens a session on a
//! headless Chromium with a fresh profile in a temp directory, and hands back the WebDriver
//! client (`Browser` dereferences to [`fantoccini::Client`]). The browser's console is
//! recorded: [`Browser::console_messages`] returns what pages logged, so a test can assert
//! that a page loads without errors.
//!
//! ```no_run
//! # async fn example() -> Result<(), headless_chromium::Error> {
//! let browser = headless_chromium::Browser::start().await?;
//! browser.goto("http://127.0.0.1:7700/ui").await?;
//! let errors: Vec<_> = browser.console_messages().await?.into_iter()
//!     .filter(|m| m.is_error()).collect();
//! assert!(errors.is_empty(), "{errors:?}");
//! browser.close().await;
//! # Ok(()) }
//! ```
//!
//! # Where the binaries come from
//! `CHROMIUM` and `CHROMEDRIVER` if set, else `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (Debian's `chromium` and `chromium-driver`). A missing one is [`Error::NotInstalled`],
//! whose message says what to install: browser tests fail rather than skip, since CI installs
//! both.
//!
//! # No orphans
//! `chromedriver` runs in a process group of its own, which Chromium and its helpers join;
//! dropping the [`Browser`] (also while a failed test unwinds) kills that whole group. For a
//! test process that dies without unwinding, `chromedriver` is spawned through
//! `setpriv --pdeathsig KILL` (util-linux), and Chromium is started with a parent-death signal
//! too, so the kernel ends both when the thread that started them exits. Start browsers from
//! a thread that lives as long as they are used (a test's own thread or a runtime worker, not
//! a `spawn_blocking` task).
//!
//! Chromium runs with `--no-sandbox` (needed as root) and without background networking,
//! component updates or sync: on a machine with a closed network those would only fail.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;

/// The WebDriver client crate, for its `Locator`, `Element` and errors.
pub use fantoccini;
use rustix::process::{Pid, Signal};
use serde_json::{Value, json};

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// What `chromedriver` prints once it listens.
const STARTED_LINE: &str = "was started successfully";
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Fresh ports tried when the chosen one was taken before `chromedriver` could bind it.
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 30;
const INSTALL_HINT: &str =
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)";

/// Why a browser could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Chromium or chromedriver is not installed where we looked.
    #[error("{what} not found at {path}; {INSTALL_HINT}, or set {variable} to its path")]
    NotInstalled {
        /// `chromium` or `chromedriver`.
        what: &'static str,
        /// Where we looked.
        path: PathBuf,
        /// The environment variable that overrides the path.
        variable: &'static str,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `chromedriver` exited or did not listen in time.
    #[error("chromedriver did not start: {reason}\n--- tail of its log ---\n{log_tail}")]
    DriverFailed {
        /// What went wrong.
        reason: String,
        /// The last lines of its output.
        log_tail: String,
    },
    /// The WebDriver session could not be created (Chromium did not start).
    #[error("cannot open a Chromium session: {0}")]
    Session(#[from] fantoccini::error::NewSessionError),
    /// A WebDriver command failed.
    #[error(transparent)]
    Command(#[from] fantoccini::error::CmdError),
    /// What a test waited for did not happen within [`WAIT_TIMEOUT`].
    #[error("gave up after {WAIT_TIMEOUT:?} waiting for {what} (at {url})")]
    Timeout {
        /// What was awaited, and what was seen last.
        what: String,
        /// The page the browser was on.
        url: String,
    },
}

/// How long [`Browser::wait_for_element`] and the other waits poll before giving up.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(20);

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// How the browser is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOptions {
    /// Width of the page's viewport in CSS pixels (screenshots have this width).
    pub width: u32,
    /// Height of the page's viewport in CSS pixels.
    pub height: u32,
}

impl Default for BrowserOptions {
    /// 1280 x 800.
    fn default() -> Self {
        BrowserOptions {
            width: 1280,
            height: 800,
        }
    }
}

/// One entry of the browser's console log (`console.*` calls, uncaught exceptions, failed
/// resource loads, Content-Security-Policy violations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMessage {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`, as Chromium reports it.
    pub level: String,
    /// The text, prefixed by Chromium with the source URL and position.
    pub message: String,
}

impl ConsoleMessage {
    /// An error: `console.error`, an uncaught exception, a failed load, a CSP violation.
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }
}

impl fmt::Display for ConsoleMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.level, self.message)
    }
}

/// A headless Chromium session. Dereferences to the WebDriver client; dropping it kills
/// Chromium and `chromedriver` (prefer [`Browser::close`], which ends the session first).
pub struct Browser {
    client: fantoccini::Client,
    driver: Driver,
}

impl Browser {
    /// [`Browser::start_with`] a 1280 x 800 window.
    pub async fn start() -> Result<Browser, Error> {
        Self::start_with(&BrowserOptions::default()).await
    }

    /// Starts `chromedriver` and a headless Chromium with a fresh profile.
    pub async fn start_with(options: &BrowserOptions) -> Result<Browser, Error> {
        let chromium = binary("chromium", "CHROMIUM", DEFAULT_CHROMIUM)?;
        let chromedriver = binary("chromedriver", "CHROMEDRIVER", DEFAULT_CHROMEDRIVER)?;
        let driver = Driver::start(&chromedriver).await?;
        let profile = driver.dir.path().join("profile");
        let launcher = write_launcher(driver.dir.path(), &chromium)?;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": launcher,
                "args": chromium_args(&profile, options),
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url())
            .await?;
        let browser = Browser { client, driver };
        browser.fit_viewport(options).await?;
        Ok(browser)
    }

    /// Grows the window by what its frame takes, so the page itself (and a screenshot) is
    /// `width` x `height`.
    async fn fit_viewport(&self, options: &BrowserOptions) -> Result<(), Error> {
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let size = |i: usize| inner[i].as_u64().and_then(|n| u32::try_from(n).ok());
        if let (Some(inner_width), Some(inner_height)) = (size(0), size(1)) {
            let width = options.width + options.width.saturating_sub(inner_width);
            let height = options.height + options.height.saturating_sub(inner_height);
            self.client.set_window_size(width, height).await?;
        }
        Ok(())
    }

    /// The WebDriver client (also reachable through `Deref`).
    pub fn client(&self) -> &fantoccini::Client {
        &self.client
    }

    /// What the browser's console received since the previous call (Chromium hands each
    /// entry out once).
    pub async fn console_messages(&self) -> Result<Vec<ConsoleMessage>, Error> {
        let answer = self.client.issue_cmd(BrowserLog).await?;
        let entries = answer.as_array().cloned().unwrap_or_default();
        Ok(entries
            .iter()
            .map(|entry| ConsoleMessage {
                level: entry["level"].as_str().unwrap_or("").to_string(),
                message: entry["message"].as_str().unwrap_or("").to_string(),
            })
            .collect())
    }

    /// The first element matching the CSS selector `css`, once there is one (polled until
    /// [`WAIT_TIMEOUT`]).
    pub async fn wait_for_element(&self, css: &str) -> Result<Element, Error> {
        self.poll(&format!("an element matching {css:?}"), async || {
            self.first(css).await
        })
        .await
    }

    /// The first element matching `css` now, if any (no waiting).
    async fn first(&self, css: &str) -> Result<Option<Element>, Error> {
        Ok(self
            .client
            .find_all(Locator::Css(css))
            .await?
            .into_iter()
            .next())
    }

    /// Clicks the first element matching `css` once there is one, finding it again if the
    /// page replaced it in between.
    pub async fn click_element(&self, css: &str) -> Result<(), Error> {
        self.poll(
            &format!("a clickable element matching {css:?}"),
            async || {
                let Some(element) = self.first(css).await? else {
                    return Ok(None);
                };
                match element.click().await {
                    Ok(()) => Ok(Some(())),
                    Err(e) if e.is_stale_element_reference() || e.is_element_not_interactable() => {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await
    }

    /// The text of the first element matching `css`, once there is one whose text satisfies
    /// `expected`; the timeout error says what the text was instead.
    pub async fn wait_for_text(
        &self,
        css: &str,
        expected: impl Fn(&str) -> bool,
    ) -> Result<String, Error> {
        let mut last = None;
        let waited = self
            .poll(&format!("the text of {css:?} to match"), async || {
                let Some(element) = self.first(css).await? else {
                    return Ok(None);
                };
                match element.text().await {
                    Ok(text) if expected(&text) => Ok(Some(text)),
                    Ok(text) => {
                        last = Some(text);
                        Ok(None)
                    }
                    Err(e) if e.is_stale_element_reference() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .await;
        match waited {
            Err(Error::Timeout { what, url }) => Err(Error::Timeout {
                what: format!("{what} (last text: {last:?})"),
                url,
            }),
            other => other,
        }
    }

    /// Calls `check` until it gives `Some`, for at most [`WAIT_TIMEOUT`].
    async fn poll<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if let Some(found) = check().await? {
                return Ok(found);
            }
            if Instant::now() > deadline {
                let url = match self.client.current_url().await {
                    Ok(url) => url.to_string(),
                    Err(e) => format!("unknown: {e}"),
                };
                return Err(Error::Timeout {
                    what: what.to_string(),
                    url,
                });
            }
            tokio::time::sleep(WAIT_POLL_INTERVAL).await;
        }
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn save_screenshot(&self, path: &Path) -> Result<(), Error> {
        let png = self.client.screenshot().await?;
        std::fs::write(path, png).map_err(io_error(format!("writing {}", path.display())))
    }

    /// Ends the session (Chromium exits), then stops `chromedriver`. Errors are ignored: the
    /// processes are killed regardless.
    pub async fn close(self) {
        let Browser { client, driver } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// The directory of the driver's log and the browser profile, removed on drop.
    pub fn dir(&self) -> &Path {
        self.driver.dir.path()
    }
}

impl Deref for Browser {
    type Target = fantoccini::Client;

    fn deref(&self) -> &fantoccini::Client {
        &self.client
    }
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver.url())
            .finish_non_exhaustive()
    }
}

/// The path of a binary: the environment variable if set, else the default; it must exist.
fn binary(what: &'static str, variable: &'static str, default: &str) -> Result<PathBuf, Error> {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NotInstalled {
            what,
            path,
            variable,
        })
    }
}

/// A script in `dir` that runs `chromium` with a parent-death signal: Chromium is killed when
/// `chromedriver`, which starts it, dies.
fn write_launcher(dir: &Path, chromium: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;

    let quoted = chromium.display().to_string().replace('\'', r"'\''");
    let script = format!("#!/bin/sh\nexec setpriv --pdeathsig KILL -- '{quoted}' \"$@\"\n");
    let path = dir.join("chromium");
    std::fs::write(&path, script).map_err(io_error(format!("writing {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error(format!("making {} executable", path.display())))?;
    Ok(path)
}

/// Chromium's flags: headless, no sandbox (root), nothing that reaches the network on its own.
fn chromium_args(profile: &Path, options: &BrowserOptions) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // No crash handler: it would run in a session of its own, outside the process group.
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!(
        "--window-size={},{}",
        options.width, options.height
    ));
    args
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log endpoint.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A running `chromedriver` on `port`, with its log and the browser profile in `dir`.
struct Driver {
    /// Held for its `Drop`; declared before `dir` so the processes die before their
    /// directory is removed.
    _process: DriverProcess,
    port: u16,
    dir: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port, trying another port when the chosen one
    /// was taken in between.
    async fn start(chromedriver: &Path) -> Result<Driver, Error> {
        let dir = tempfile::Builder::new()
            .prefix("headless-chromium-")
            .tempdir()
            .map_err(io_error("creating the browser's temp dir"))?;
        let mut last_failure = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log_path = dir.path().join(format!("chromedriver-{port}.log"));
            let log = File::create(&log_path)
                .map_err(io_error(format!("creating {}", log_path.display())))?;
            let mut process = DriverProcess(spawn_driver(chromedriver, port, log)?);
            match process.wait_until_listening(&log_path).await {
                Ok(()) => {
                    return Ok(Driver {
                        _process: process,
                        port,
                        dir,
                    });
                }
                // Dropping `process` kills what is left of it.
                Err(failure) if port_taken(&log_path) => last_failure = Some(failure),
                Err(e) => return Err(e),
            }
        }
        Err(last_failure.expect("at least one attempt"))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// `chromedriver`, leader of its own process group (which Chromium joins); the whole group is
/// killed on drop.
struct DriverProcess(Child);

impl DriverProcess {
    async fn wait_until_listening(&mut self, log_path: &Path) -> Result<(), Error> {
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if read_lossy(log_path).contains(STARTED_LINE) {
                return Ok(());
            }
            let failure = |reason: String| Error::DriverFailed {
                reason,
                log_tail: tail(&read_lossy(log_path)),
            };
            if let Some(status) = self
                .0
                .try_wait()
                .map_err(io_error("waiting for chromedriver"))?
            {
                return Err(failure(format!("exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(failure(format!(
                    "not listening after {DRIVER_START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        // The group's id is the leader's pid (`process_group(0)`).
        if let Some(pid) = Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_driver(chromedriver: &Path, port: u16, log: File) -> Result<Child, Error> {
    use std::os::unix::process::CommandExt;

    let stderr = log
        .try_clone()
        .map_err(io_error("duplicating the log file"))?;
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(io_error(format!(
            "starting {} through setpriv (util-linux)",
            chromedriver.display()
        )))
}

/// A loopback port that was free a moment ago (chromedriver cannot listen on port 0).
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("finding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("finding a free loopback port"))?
        .port();
    Ok(port)
}

fn port_taken(log_path: &Path) -> bool {
    let log = read_lossy(log_path);
    log.contains("Address already in use") || log.contains("port not available")
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_what_to_install() {
        let error = binary(
            "chromium",
            "HEADLESS_CHROMIUM_TEST_UNSET",
            "/nonexistent/chromium",
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("apt-get install chromium chromium-driver"),
            "{message}"
        );
        assert!(message.contains("/nonexistent/chromium"), "{message}");
    }

    #[test]
    fn chromium_stays_off_the_network() {
        let args = chromium_args(Path::new("/tmp/p"), &BrowserOptions::default());
        for flag in [
            "--headless",
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--user-data-dir=/tmp/p",
            "--window-size=1280,800",
        ] {
            assert!(
                args.iter().any(|a| a == flag),
                "{flag} missing from {args:?}"
            );
        }
    }
}
