//! The `wallet` binary as a process: its log output and its start-up checks.

mod support;

use serde_json::Value;
use support::process::{WalletProcess, run_to_exit, wallet_command};

/// One start, one stop: every stderr line is a JSON object, and exactly one says where the
/// wallet listens (the address the test found it by).
#[tokio::test]
async fn json_logs_say_once_where_it_listens() {
    let wallet = WalletProcess::start(&[]).await;
    let addr = wallet.url.trim_start_matches("http://").to_string();
    assert_eq!(
        reqwest::get(format!("{}/healthz", wallet.url))
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, lines) = wallet.terminate();
    assert!(status.success(), "{status}: {lines:#?}");

    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let listening: Vec<&Value> = events
        .iter()
        .filter(|event| {
            event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening"))
        })
        .collect();
    assert_eq!(listening.len(), 1, "{lines:#?}");
    assert_eq!(
        listening[0]["fields"]["message"],
        format!("listening on {addr}")
    );
    assert_eq!(listening[0]["fields"]["participant"], "wallet");
    assert_eq!(listening[0]["level"], "INFO");
    assert!(
        events
            .iter()
            .any(|event| event["fields"]["message"] == "shutting down"),
        "{lines:#?}"
    );
}

/// Plain text, by default: one `listening on` line, no colours when stderr is not a
/// terminal, and nothing at all on stdout.
#[test]
fn text_logs_have_no_colours_off_a_terminal_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    // An address already taken: the wallet starts its logging, fails to bind, and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut command = wallet_command(&dir, &["--listen", &addr]);
    command.env("WALLET_LOG_FORMAT", "text");
    let (status, stderr) = run_to_exit(command);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes: {stderr:?}");
    assert!(
        !stderr.trim_start().starts_with('{'),
        "text, not JSON: {stderr}"
    );

    // A wallet that does start: its text log names the address once; stdout is silent.
    let dir = tempfile::tempdir().unwrap();
    let mut child = wallet_command(&dir, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (listening_tx, listening_rx) = std::sync::mpsc::channel();
    // Drains stderr until the process ends, saying when the address is logged.
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on") {
                let _ = listening_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    listening_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the wallet logs where it listens within 30 s");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let output = child.wait_with_output().unwrap();
    let lines = reader.join().unwrap();
    assert!(output.status.success(), "{:?}: {lines:#?}", output.status);
    assert!(
        output.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    let listening: Vec<&String> = lines.iter().filter(|l| l.contains("listening")).collect();
    assert_eq!(listening.len(), 1, "{lines:#?}");
    assert!(listening[0].contains(" INFO "), "{}", listening[0]);
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}

/// A `--policy` file (or `WALLET_POLICY`) is checked before anything starts: a broken rule
/// exits 2 with a message that names the file and the field.
#[test]
fn a_bad_policy_file_stops_the_start_with_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "retry:\n  max_attempts: 0\n").unwrap();

    let (status, stderr) = run_to_exit(wallet_command(
        &dir,
        &["--policy", policy.to_str().unwrap()],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field retry.max_attempts"), "{stderr}");
    assert!(stderr.contains("policy.yaml"), "{stderr}");

    let mut from_env = wallet_command(&dir, &[]);
    from_env.env("WALLET_POLICY", &policy);
    let (status, stderr) = run_to_exit(from_env);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field retry.max_attempts"), "{stderr}");

    let unknown = dir.path().join("policy.json");
    std::fs::write(&unknown, r#"{"timeout": 5}"#).unwrap();
    let (status, stderr) = run_to_exit(wallet_command(
        &dir,
        &["--policy", unknown.to_str().unwrap()],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `timeout`"), "{stderr}");
}
