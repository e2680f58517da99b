//! What operators see of a coordinator, in process on port 0: the Prometheus series of
//! retries, circuits, bulkheads and sagas by state.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use fake_participant::{FakeParticipant, eventually};
use sagas::api::SagaState;
use sagas::{CoordinatorClient, Phase};
use serde_json::json;
use setup::{fast_retry, metric, metrics_text, one_step_workflow, register, wait_for};

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Metrics are per process, and the tests of this binary run at once: a name of its own.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

#[tokio::test]
async fn retries_circuits_bulkheads_and_sagas_by_state_are_series_with_help() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(dir.path()).await;
    let client = CoordinatorClient::new(coordinator.url());
    let (p, addr) = FakeParticipant::start().await;
    let name = unique("m");
    let workflow = unique("wf");
    register(
        &client,
        &name,
        addr,
        json!({
            "max_concurrency": 1, "queue_capacity": 5, "timeout_ms": 10000,
            "circuit_breaker": {"failure_threshold": 3, "open_ms": 600000},
            "retry": fast_retry(2, 1000)
        }),
    )
    .await;
    one_step_workflow(&client, &workflow, &name, "t").await;

    let text = metrics_text(&client).await;
    for metric in [
        "coordinator_branch_call_retries_total",
        "coordinator_circuit_state",
        "coordinator_circuit_opened_total",
        "coordinator_bulkhead_queued",
        "coordinator_bulkhead_in_flight",
        "coordinator_sagas_in_state",
    ] {
        assert!(
            text.contains(&format!("# HELP {metric} ")),
            "{metric}: {text}"
        );
    }
    assert!(text.contains("# HELP coordinator_circuit_state Circuit breaker state per participant in this process: 0 closed, 1 half-open, 2 open."));
    // Declared at zero as soon as the participant and the workflow are known.
    let participant = format!("participant=\"{name}\"");
    let running =
        format!("coordinator_sagas_in_state{{workflow=\"{workflow}\",state=\"running\"}}");
    for series in [
        format!("coordinator_circuit_state{{{participant}}} 0"),
        format!("coordinator_circuit_opened_total{{{participant}}} 0"),
        format!("coordinator_bulkhead_queued{{{participant}}} 0"),
        format!("coordinator_bulkhead_in_flight{{{participant}}} 0"),
        format!("coordinator_branch_call_retries_total{{{participant},phase=\"try\"}} 0"),
        format!("{running} 0"),
    ] {
        assert!(text.lines().any(|l| l == series), "{series}: {text}");
    }
    // Bulkhead: one call in flight, the next waiting for its slot; both sagas running.
    p.hold(Phase::Try);
    let held: Vec<String> = futures::future::join_all(
        (0..2).map(|i| client.submit(&workflow, json!({"i": i}), None, None)),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().saga.id)
    .collect();
    let in_flight = format!("coordinator_bulkhead_in_flight{{{participant}}}");
    let queued = format!("coordinator_bulkhead_queued{{{participant}}}");
    eventually("one call in flight and one queued", || async {
        metric(&client, &in_flight).await == 1.0 && metric(&client, &queued).await == 1.0
    })
    .await;
    assert_eq!(metric(&client, &running).await, 2.0);
    p.release_all();
    for id in &held {
        let saga = wait_for(&client, id, |s| s.state.is_terminal()).await;
        assert_eq!(saga.state, SagaState::Committed);
    }
    eventually(
        "the bulkhead and the running sagas back to zero",
        || async {
            metric(&client, &in_flight).await == 0.0
                && metric(&client, &queued).await == 0.0
                && metric(&client, &running).await == 0.0
        },
    )
    .await;

    // Retries, then a circuit that opens: try, its retry and the cancel all fail.
    p.answer(Phase::Try, 503);
    p.answer(Phase::Cancel, 503);
    client
        .submit(&workflow, json!({"i": 3}), None, None)
        .await
        .unwrap();
    let state = format!("coordinator_circuit_state{{{participant}}}");
    eventually("the circuit to open", || async {
        metric(&client, &state).await == 2.0
    })
    .await;
    let retries = format!("coordinator_branch_call_retries_total{{{participant},phase=\"try\"}}");
    assert_eq!(metric(&client, &retries).await, 1.0);
    let opened = format!("coordinator_circuit_opened_total{{{participant}}}");
    assert_eq!(metric(&client, &opened).await, 1.0);
    // The saga waits for the circuit to half-open, compensating.
    let compensating =
        format!("coordinator_sagas_in_state{{workflow=\"{workflow}\",state=\"compensating\"}}");
    assert_eq!(metric(&client, &compensating).await, 1.0);
    coordinator.shutdown().await;
}
