//! The `wallet` binary as a process: started on a free port, found through its one
//! `listening on` log line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a process gets to start or to stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// A wallet binary on a free port, logging JSON lines; killed when dropped.
pub struct WalletProcess {
    child: Child,
    pub url: String,
    /// Every stderr line so far, the `listening on` one included.
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// `wallet` with `extra` flags, listening on a free port with its data in `{dir}/db` and
/// nothing at the coordinator's address. Those defaults are set through `WALLET_LISTEN`,
/// `WALLET_DATA_DIR` and `WALLET_COORDINATOR`, so a flag in `extra` overrides them; other
/// `WALLET_*` variables that would change the outcome are removed.
pub fn wallet_command(dir: &tempfile::TempDir, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wallet"));
    command
        .args(extra)
        .env("WALLET_LISTEN", "127.0.0.1:0")
        .env("WALLET_DATA_DIR", dir.path().join("db"))
        .env("WALLET_COORDINATOR", super::NO_COORDINATOR)
        .env_remove("WALLET_ADVERTISE_URL")
        .env_remove("WALLET_FAULTS")
        .env_remove("WALLET_NO_WORK")
        .env_remove("WALLET_POLICY")
        .env_remove("WALLET_LOG_FORMAT")
        .env("RUST_LOG", "info");
    command
}

impl WalletProcess {
    /// Starts `wallet --log-format json` with `extra` flags and waits (up to 30 s) for its
    /// `listening on ADDR` log line, whose `addr` field gives the URL.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = wallet_command(&dir, &[&["--log-format", "json"], extra].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        // Drains stderr for the process's whole life, so that logging never blocks on a full
        // pipe; hands over the address once it is logged.
        let reader = {
            let (pipe, lines) = (child.stderr.take().unwrap(), stderr.clone());
            std::thread::spawn(move || {
                let mut addr_tx = Some(addr_tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line)
                        && let Some(tx) = addr_tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let addr = tokio::time::timeout(DEADLINE, addr_rx)
            .await
            .expect("the wallet logs where it listens within 30 s")
            .expect("the wallet logged where it listens before exiting");
        WalletProcess {
            child,
            url: format!("http://{addr}"),
            stderr,
            stderr_reader: Some(reader),
            _dir: dir,
        }
    }

    /// Sends SIGTERM, waits (up to 30 s) for the exit and returns its status and every line
    /// it wrote to stderr.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the wallet stops within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closed with the process: the reader has seen every line.
        self.stderr_reader.take().unwrap().join().unwrap();
        let lines = self.stderr.lock().unwrap().clone();
        (status, lines)
    }
}

impl Drop for WalletProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr` field of a JSON `listening on` log line.
fn listening_addr(line: &str) -> Option<String> {
    let event: Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    let message = fields.get("message")?.as_str()?;
    message.starts_with("listening on ").then_some(())?;
    fields.get("addr")?.as_str().map(str::to_string)
}

/// Runs `command` to its end (it is expected to exit on its own within 30 s, else it is
/// killed and the test fails) and returns its status and stderr.
pub fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after 30 s; stderr: {}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}
