//! The `wallet` binary as a process that is expected to exit on its own.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets to exit.
const DEADLINE: Duration = Duration::from_secs(30);

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
        .env("RUST_LOG", "info");
    command
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
