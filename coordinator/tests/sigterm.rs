//! The real `coordinator` binary under SIGTERM during load: it exits 0, loses nothing, and
//! every unfinished saga resumes on the next start.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_participant::{FakeParticipant, wait_for};
use sagas::api::SagaState;
use sagas::{CoordinatorClient, ParticipantSpec, Phase, WorkflowBuilder};
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the process if the test ends early, so no coordinator outlives a failed test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(port: u16, dir: &Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args(["--shutdown-grace-ms", "5000"])
        .env("RUST_LOG", "info")
        .stdout(
            std::fs::File::create(dir.parent().unwrap_or(dir).join("coordinator.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("the coordinator binary starts");
    Guard(child)
}

async fn ready(client: &CoordinatorClient) {
    wait_for(Duration::from_secs(30), async || {
        match client.is_ready().await {
            true => Ok(()),
            false => Err("the coordinator never became ready".to_string()),
        }
    })
    .await;
}

#[tokio::test]
async fn sigterm_during_load_exits_zero_and_everything_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn(port, &dir.path().join("data"));
    let client = CoordinatorClient::new(format!("http://127.0.0.1:{port}"));
    ready(&client).await;

    let (p, addr) = FakeParticipant::start().await;
    let spec: ParticipantSpec = serde_json::from_value(json!({
        "base_url": format!("http://{addr}"),
        "actions": {"t": {"try": "/try", "confirm": "/confirm", "cancel": "/cancel"}},
        "policy": {"timeout_ms": 2000, "circuit_breaker": {"failure_threshold": 1000000, "open_ms": 1000}, "retry": {"initial_ms": 50, "max_ms": 200, "multiplier": 2.0,
                   "max_attempts": 10000, "settle_max_attempts": 10000}}
    }))
    .unwrap();
    client.put_participant("p", &spec).await.unwrap();
    client
        .put_workflow(
            "wf",
            &WorkflowBuilder::new()
                .step("only", "p", "t")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();

    // Load: some tries fail and are being retried, some are held in flight.
    p.answer(Phase::Try, 503);
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let submitted = futures::future::join_all(
        keys.iter()
            .map(|k| client.submit("wf", json!({"k": k}), Some(k), None)),
    )
    .await;
    let ids: Vec<String> = submitted.into_iter().map(|r| r.unwrap().saga.id).collect();
    wait_for(Duration::from_secs(30), async || {
        match p.count(Phase::Try) {
            60.. => Ok(()),
            n => Err(format!("the load never reached the participant: {n} tries")),
        }
    })
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for(Duration::from_secs(30), async || {
        child
            .0
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the coordinator did not exit after SIGTERM".to_string())
    })
    .await;
    assert!(exit.success(), "SIGTERM must exit 0, got {exit:?}");

    p.answer(Phase::Try, 200);
    let _restarted = spawn(port, &dir.path().join("data"));
    ready(&client).await;
    // Nothing lost: every acknowledged saga is there, resumes and commits; resubmitting a key
    // returns the same saga.
    for (key, id) in keys.iter().zip(&ids) {
        wait_for(Duration::from_secs(30), async || {
            let saga = client.get_saga(id).await.unwrap();
            match saga.state {
                SagaState::Committed => Ok(()),
                state => Err(format!("saga {id} stayed {state:?}")),
            }
        })
        .await;
        let again = client
            .submit("wf", json!({"k": key}), Some(key), None)
            .await
            .unwrap();
        assert_eq!(&again.saga.id, id);
    }
    assert_eq!(p.count(Phase::Confirm), 60, "each saga confirmed once");
}
