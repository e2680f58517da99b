//! One service binary running as a child process.
//!
//! A [`ServiceProcess`] owns a temporary directory holding the service's data directory and a
//! log file that receives the child's stdout and stderr (appended across restarts, with a
//! marker line per start), so a failing test can print the tail. It is started as
//! `BINARY --listen ADDR --data-dir DIR EXTRA_ARGS...`, the contract every binary of the
//! workspace follows. Dropping it SIGKILLs the child, so a failing test leaves no orphans.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};
use tempfile::TempDir;

/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Begins the line the log gets at every start of the process (`... #N of NAME on ADDR`), so
/// that a reader can find what the latest start logged.
pub const START_MARKER: &str = "===== chaos-tests: start #";

/// `RUST_LOG` of the services when the environment sets none.
const DEFAULT_LOG_FILTER: &str = "info";

/// Set by a tool ([`use_log_filter`]); wins over [`DEFAULT_LOG_FILTER`].
static CHOSEN_LOG_FILTER: OnceLock<String> = OnceLock::new();

/// Makes `filter` the services' `RUST_LOG` for the rest of the process when the environment
/// sets none: the `chaos` and `bench` tools use `warn` (an `info` line per saga would fill the
/// logs of long runs and be part of what a benchmark measures). Fails if one was chosen
/// already.
pub fn use_log_filter(filter: &str) -> anyhow::Result<()> {
    CHOSEN_LOG_FILTER
        .set(filter.to_string())
        .map_err(|chosen| anyhow::anyhow!("the services' log filter is chosen already ({chosen})"))
}

/// The `RUST_LOG` services get: the environment's, else the one given to [`use_log_filter`],
/// else `info`.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| {
        CHOSEN_LOG_FILTER
            .get()
            .map_or(DEFAULT_LOG_FILTER, String::as_str)
            .to_string()
    })
}

/// What to start: a binary, where it listens, what URL says it is healthy, extra arguments.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Short name used in messages and for the log file (`coordinator`, `wallet`, ...).
    pub name: String,
    /// The executable.
    pub binary: PathBuf,
    /// Its `--listen` address (a free loopback port).
    pub listen: SocketAddr,
    /// Path polled by [`ServiceProcess::wait_healthy`], e.g. `/healthz` or `/readyz`.
    pub health_path: String,
    /// Arguments after `--listen ADDR --data-dir DIR`.
    pub extra_args: Vec<OsString>,
    /// Its `RUST_LOG`; `None`: [`log_filter`].
    pub log_filter: Option<String>,
}

/// One service as a child process (`BIN --listen ADDR --data-dir DIR ARGS...`), with its data
/// directory and log file; SIGKILLed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    config: ServiceConfig,
    /// Holds the data directory and the log; removed on drop unless the thread is panicking or
    /// `CHAOS_KEEP_DIRS` is set (then kept for a post-mortem, and its path printed).
    root: Option<TempDir>,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
    http: reqwest::Client,
    /// Keep the temporary directory when dropped (see [`ServiceProcess::keep_dir`]).
    keep: bool,
}

impl ServiceProcess {
    /// Creates a fresh data directory and starts the binary. Does not wait for it; see
    /// [`ServiceProcess::wait_healthy`].
    pub fn spawn(config: ServiceConfig) -> anyhow::Result<ServiceProcess> {
        let mut process = ServiceProcess::prepare(config)?;
        process.start()?;
        Ok(process)
    }

    /// Creates a fresh, empty data directory without starting the binary, so the caller can
    /// fill [`ServiceProcess::data_dir`] first (a seeded saga log, say) and then
    /// [`ServiceProcess::start`] it.
    pub fn prepare(config: ServiceConfig) -> anyhow::Result<ServiceProcess> {
        let root = tempfile::Builder::new()
            .prefix(&format!("chaos-{}-", config.name))
            .tempdir()
            .context("cannot create a temporary directory")?;
        let data_dir = root.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let log_path = root.path().join(format!("{}.log", config.name));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(ServiceProcess {
            config,
            root: Some(root),
            data_dir,
            log_path,
            child: None,
            starts: 0,
            http,
            keep: false,
        })
    }

    /// Its name, as in [`ServiceConfig`] (`coordinator`, `wallet`, ...).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    /// Its data directory, kept across restarts.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary directory holding the data directory and the log.
    pub fn root(&self) -> &Path {
        self.root
            .as_ref()
            .expect("the root directory lives as long as the process handle")
            .path()
    }

    /// Keep the data directory and log when this handle is dropped (and print where).
    pub fn keep_dir(&mut self) {
        self.keep = true;
    }

    /// The OS process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child has not exited (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts the binary on the configured port and data directory. Fails if it is running.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running (pid {:?})", self.name(), self.pid());
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        writeln!(
            log,
            "{START_MARKER}{} of {} on {} =====",
            self.starts, self.config.name, self.config.listen
        )?;
        let stderr = log.try_clone()?;
        let mut command = service_command(&self.config.binary);
        command
            .arg("--listen")
            .arg(self.config.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.config.extra_args)
            .env(
                "RUST_LOG",
                self.config.log_filter.clone().unwrap_or_else(log_filter),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.config.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and reap. A no-op if the child is not running.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on unix; it fails only if the child was already reaped.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("cannot reap {}", self.config.name))?;
            self.note("killed with SIGKILL");
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; SIGKILL after that.
    /// Returns the exit status, or `None` if the child had to be killed or was not running.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal(Signal::TERM)?;
        let deadline = Instant::now() + grace;
        loop {
            let child = self.child.as_mut().expect("checked above");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                self.note(&format!("exited after SIGTERM: {status}"));
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Ok(None);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGSTOP: the process stops where it is (every thread, at once) until
    /// [`ServiceProcess::resume`]; its sockets stay open and the kernel keeps accepting on
    /// them. A stopped process can still be killed.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::STOP)?;
        self.note("paused with SIGSTOP");
        Ok(())
    }

    /// SIGCONT: a paused process runs on.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::CONT)?;
        self.note("resumed with SIGCONT");
        Ok(())
    }

    /// Sends `signal` to the running child.
    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .with_context(|| format!("{} is not running", self.config.name))?;
        // Not reaped yet (we own the `Child`), so the pid is still this child's.
        rustix::process::kill_process(Pid::from_child(child), signal)
            .with_context(|| format!("{signal:?} to {} failed", self.config.name))
    }

    /// Kills the child if it still runs, then starts it again on the same port and data
    /// directory. Does not wait for health.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.start()
    }

    /// Polls `GET {url}{health_path}` until it answers 2xx. Fails early if the child exits and
    /// at `timeout` otherwise, with the log tail in the error.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}{}", self.url(), self.config.health_path);
        self.wait_for_url(&url, timeout).await
    }

    /// Polls `url` until it answers 2xx while checking the child is alive.
    pub async fn wait_for_url(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for_any_url(&[url.to_string()], timeout).await
    }

    /// Polls each of `urls` in turn until one answers 2xx while checking the child is alive.
    pub async fn wait_for_any_url(
        &mut self,
        urls: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        let shown = urls.join(" or ");
        loop {
            for url in urls {
                if !self.is_running() {
                    bail!(
                        "{} exited while waiting for {shown} (last: {last})\n{}",
                        self.config.name,
                        self.log_tail(30)
                    );
                }
                match self.http.get(url).send().await {
                    Ok(resp) if resp.status().is_success() => return Ok(()),
                    Ok(resp) => last = format!("{url}: HTTP {}", resp.status()),
                    Err(e) => last = format!("{url}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer 2xx on {shown} within {timeout:?} (last: {last})\n{}",
                    self.config.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The last `lines` lines of the log, framed with the service name.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = read_tail(&self.log_path, 256 * 1024)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()));
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "----- {} log ({}), last {} lines -----\n{}\n",
            self.config.name,
            self.log_path.display(),
            all.len() - from,
            all[from..].join("\n")
        )
    }

    /// The whole log (for searching it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn note(&self, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(log, "===== chaos-tests: {} {what} =====", self.config.name);
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let keep =
            self.keep || std::thread::panicking() || std::env::var_os("CHAOS_KEEP_DIRS").is_some();
        if keep && let Some(root) = self.root.take() {
            eprintln!(
                "kept the data directory and log of {} in {}",
                self.config.name,
                root.keep().display()
            );
        }
    }
}

/// Reads at most the last `max` bytes of a file, as lossy UTF-8.
fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The command that starts `binary`: on Linux through `setpriv --pdeathsig KILL` (util-linux)
/// when it is installed, which asks the kernel to SIGKILL the service when the thread that
/// spawned it dies, so children do not outlive a test process killed before its destructors
/// run; `setpriv` then execs the binary, so the child's pid is the service's. The destructor
/// of [`ServiceProcess`] covers every ordinary exit.
fn service_command(binary: &Path) -> Command {
    match setpriv() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// `setpriv` on `PATH`, looked up once (Linux only).
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            if !cfg!(target_os = "linux") {
                return None;
            }
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("setpriv"))
                .find(|candidate| candidate.is_file())
        })
        .as_deref()
}
