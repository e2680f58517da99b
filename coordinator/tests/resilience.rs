//! Resilience, in process on port 0 against scripted participants: circuit breaker, bulkhead,
//! ingress rate limit, retry schedules and callbacks across restarts, graceful shutdown.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::path::Path;
use std::time::Duration;

use coordinator::RunningCoordinator;
use fake_participant::{FakeParticipant, eventually};
use sagas::api::{SagaState, StepStatus, SubmitSaga};
use sagas::{CoordinatorClient, Phase, WorkflowBuilder};
use serde_json::{Value, json};
use setup::{circuit, fast_retry, metric, one_step_workflow, register, wait_for};

/// Starts a coordinator on `dir`, with an ingress limit of `submit_rate_limit` per second.
async fn start(dir: &Path, submit_rate_limit: Option<u32>) -> RunningCoordinator {
    setup::start_with(dir, |config| {
        config.submit_rate_limit = submit_rate_limit.and_then(std::num::NonZeroU32::new)
    })
    .await
}

on_both_stores! {
    async fn an_open_circuit_fails_forward_steps_fast_and_a_probe_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (flaky, addr) = FakeParticipant::start().await;
        register(
            &client,
            "flaky",
            addr,
            json!({
                "timeout_ms": 1000,
                "circuit_breaker": {"failure_threshold": 3, "open_ms": 300},
                "retry": fast_retry(1, 1000)
            }),
        )
        .await;
        one_step_workflow(&client, "wf", "flaky", "t").await;
        flaky.answer(Phase::Try, 500);
        flaky.answer(Phase::Cancel, 500);

        // A fails its try, then its cancel keeps failing until the circuit opens.
        let a = client
            .submit("wf", json!({"n": "a"}), None, None)
            .await
            .unwrap()
            .saga;
        eventually("the circuit to open", || async {
            circuit(&client, "flaky").await == "open"
        })
        .await;

        // B's try is refused without reaching the participant; B rolls back with nothing to undo.
        let tries_before = flaky.count(Phase::Try);
        let b = client
            .submit("wf", json!({"n": "b"}), None, Some(10_000))
            .await
            .unwrap()
            .saga;
        assert_eq!(b.state, SagaState::Aborted);
        assert!(
            b.error
                .as_deref()
                .unwrap_or_default()
                .contains("circuit open"),
            "{:?}",
            b.error
        );
        assert_eq!(b.steps[0].status, StepStatus::Skipped);
        assert_eq!(
            flaky.count(Phase::Try),
            tries_before,
            "B never called the participant"
        );
        assert_ne!(
            client.get_saga(&a.id).await.unwrap().state,
            SagaState::Stuck,
            "waiting for an open circuit spends no attempts"
        );

        // Healed: the next probe (A's cancel) closes the circuit, A finishes, new sagas commit.
        flaky.answer(Phase::Try, 200);
        flaky.answer(Phase::Cancel, 200);
        let a = wait_for(&client, &a.id, |s| s.state.is_terminal()).await;
        assert_eq!(a.state, SagaState::Aborted);
        eventually("the circuit to close", || async {
            circuit(&client, "flaky").await == "closed"
        })
        .await;
        let c = client
            .submit("wf", json!({"n": "c"}), None, Some(10_000))
            .await
            .unwrap()
            .saga;
        assert_eq!(c.state, SagaState::Committed);
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_hung_participant_ties_up_only_its_own_bulkhead() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (slow, slow_addr) = FakeParticipant::start().await;
        let (fast, fast_addr) = FakeParticipant::start().await;
        register(
            &client,
            "slow",
            slow_addr,
            json!({
                "timeout_ms": 300, "max_concurrency": 2, "queue_capacity": 2,
                "circuit_breaker": {"failure_threshold": 1000, "open_ms": 1000},
                "retry": fast_retry(1, 50)
            }),
        )
        .await;
        register(
            &client,
            "fast",
            fast_addr,
            json!({"retry": fast_retry(1, 50)}),
        )
        .await;
        one_step_workflow(&client, "uses_slow", "slow", "s").await;
        one_step_workflow(&client, "fast_only", "fast", "s").await;
        slow.hold(Phase::Action);

        let stuck_behind_slow: Vec<String> = futures::future::join_all(
            (0..10).map(|i| client.submit("uses_slow", json!({"i": i}), None, None)),
        )
        .await
        .into_iter()
        .map(|r| r.unwrap().saga.id)
        .collect();
        // Sagas that never touch `slow` are not held up by it.
        for i in 0..20 {
            let saga = client
                .submit("fast_only", json!({"i": i}), None, Some(10_000))
                .await
                .unwrap()
                .saga;
            assert_eq!(saga.state, SagaState::Committed);
        }
        assert_eq!(fast.count(Phase::Action), 20);
        // The sagas on `slow` time out or are refused, and roll back instead of piling up.
        let mut errors = Vec::new();
        for id in &stuck_behind_slow {
            let saga = wait_for(&client, id, |s| s.state.is_terminal()).await;
            assert_eq!(saga.state, SagaState::Aborted, "{saga:?}");
            errors.push(saga.error.unwrap_or_default());
        }
        assert!(errors.iter().any(|e| e.contains("timed out")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("bulkhead")), "{errors:?}");
        assert!(slow.count(Phase::Action) <= 10);
        slow.release_all();
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn submissions_over_the_rate_limit_get_429_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), Some(5)).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_p, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        one_step_workflow(&client, "wf", "p", "s").await;
        let http = reqwest::Client::new();
        let url = format!("{}/v1/sagas", coordinator.url());
        let responses = futures::future::join_all((0..40).map(|i| {
            http.post(&url)
                .json(&SubmitSaga {
                    workflow: "wf".into(),
                    input: json!({"i": i}).into(),
                    callback_url: None,
                business_key: None,
                })
                .send()
        }))
        .await;
        let (mut accepted, mut limited) = (Vec::new(), 0);
        for response in responses {
            let response = response.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = response.json().await.unwrap();
            match status {
                200 | 202 => accepted.push(body["id"].as_str().unwrap().to_string()),
                429 => {
                    limited += 1;
                    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
                    assert_eq!(body["error"]["code"], "rate_limited");
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(limited > 0, "40 at once must exceed 5/s");
        assert!(!accepted.is_empty());
        // Everything acknowledged was logged.
        for id in accepted {
            client.get_saga(&id).await.unwrap();
        }
        coordinator.shutdown().await;
    }
}

/// Participant `p` behind workflow `wf` (one TCC step), answering `try` with 503, retried
/// every 1.5 s (a fixed delay: the ceiling caps the jitter; long enough for a saga to park).
async fn failing_with_slow_retries(client: &CoordinatorClient) -> FakeParticipant {
    let (p, addr) = FakeParticipant::start().await;
    register(
        client,
        "p",
        addr,
        json!({"retry": {"initial_ms": 1500, "max_ms": 1500, "multiplier": 1.0,
        "max_attempts": 3, "settle_max_attempts": 5}}),
    )
    .await;
    one_step_workflow(client, "wf", "p", "t").await;
    p.answer(Phase::Try, 503);
    p
}

on_both_stores! {
    async fn a_retry_schedule_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let p = failing_with_slow_retries(&client).await;
        let saga = client
            .submit("wf", json!({}), None, None)
            .await
            .unwrap()
            .saga;
        eventually("the first try", || async { p.count(Phase::Try) == 1 }).await;
        let first = p.arrivals(Phase::Try)[0];
        coordinator.shutdown().await;

        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        p.answer(Phase::Try, 200);
        let done = wait_for(&client, &saga.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Committed);
        let tries = p.arrivals(Phase::Try);
        assert_eq!(tries.len(), 2, "no burst of retries after the restart");
        let gap = tries[1] - first;
        assert!(
            gap >= Duration::from_millis(1_400),
            "the persisted retry time was kept: {gap:?}"
        );
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn callbacks_are_delivered_at_least_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (p, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        one_step_workflow(&client, "wf", "p", "s").await;
        p.answer_callbacks(500);
        let body = SubmitSaga {
            workflow: "wf".into(),
            input: json!({"x": 1}).into(),
            callback_url: Some(format!("http://{addr}/callback")),
        business_key: None,
        };
        let saga = client
            .submit_body(&body, None, Some(10_000))
            .await
            .unwrap()
            .saga;
        assert_eq!(
            saga.state,
            SagaState::Committed,
            "the saga's outcome does not wait for its callback"
        );
        eventually("a failed callback attempt", || async {
            !p.callbacks().is_empty()
        })
        .await;
        coordinator.shutdown().await;

        p.answer_callbacks(200);
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        eventually("the callback to be delivered", || async {
            p.callbacks().iter().any(|(s, _)| *s == 200)
        })
        .await;
        let delivered: Vec<Value> = p
            .callbacks()
            .into_iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(delivered[0]["id"], saga.id.as_str());
        assert_eq!(delivered[0]["state"], "committed");
        // A delivery is recorded without a flush of its own (nothing depends on it), so the
        // store may show it a moment after the participant got it.
        let recorded = |outcome: &'static str| {
            let client = &client;
            let id = saga.id.clone();
            async move {
                let events = client.saga_events(&id).await.unwrap().events;
                events
                    .iter()
                    .any(|e| e.kind == "callback_ended" && e.outcome.as_deref() == Some(outcome))
            }
        };
        assert!(recorded("failed").await, "the failed attempt was recorded before the stop");
        eventually("the delivery to be recorded", || recorded("delivered")).await;
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn shutdown_refuses_new_sagas_and_resumes_unfinished_ones_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (p, addr) = FakeParticipant::start().await;
        register(
            &client,
            "p",
            addr,
            json!({"timeout_ms": 500, "retry": {"initial_ms": 100, "max_ms": 200, "multiplier": 2.0, "max_attempts": 1000, "settle_max_attempts": 1000}}),
        )
        .await;
        one_step_workflow(&client, "wf", "p", "t").await;
        p.answer(Phase::Try, 503);
        let ids: Vec<String> = futures::future::join_all(
            (0..20).map(|i| client.submit("wf", json!({"i": i}), None, None)),
        )
        .await
        .into_iter()
        .map(|r| r.unwrap().saga.id)
        .collect();
        eventually("every saga to have tried", || async {
            p.count(Phase::Try) >= 20
        })
        .await;
        let stopping = tokio::spawn(coordinator.shutdown());
        // Not ready from the moment shutdown begins (or unreachable once the listener closed).
        eventually("shutdown to begin", || async { !client.is_ready().await }).await;
        let refused = client.submit("wf", json!({"late": true}), None, None).await;
        match refused {
            Err(sagas::ClientError::Api {
                status: 503, code, ..
            }) => assert_eq!(code, "shutting_down"),
            // The listener may already be closed: refused either way, never accepted.
            Err(sagas::ClientError::Transport(_)) => {}
            other => panic!("a submission during shutdown must be refused, got {other:?}"),
        }
        stopping.await.unwrap();

        p.answer(Phase::Try, 200);
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        for id in &ids {
            let saga = wait_for(&client, id, |s| s.state.is_terminal()).await;
            assert_eq!(saga.state, SagaState::Committed);
        }
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_saga_past_its_workflow_deadline_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (p, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({"timeout_ms": 60_000})).await;
        let spec = WorkflowBuilder::new()
            .step("first", "p", "s")
            .step("second", "p", "t")
            .timeout_ms(300)
            .build()
            .unwrap();
        client.put_workflow("deadline", &spec).await.unwrap();
        p.hold(Phase::Try);
        let saga = client
            .submit("deadline", json!({}), None, None)
            .await
            .unwrap()
            .saga;
        eventually("the try to be in flight", || async {
            p.count(Phase::Try) == 1
        })
        .await;
        // The deadline decides the rollback; the outstanding try is undone once it settles.
        let rolling_back = wait_for(&client, &saga.id, |s| s.state == SagaState::Compensating).await;
        assert!(
            rolling_back
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("deadline"),
            "{:?}",
            rolling_back.error
        );
        p.release_all();
        let done = wait_for(&client, &saga.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Aborted);
        assert_eq!(p.count(Phase::Cancel), 1);
        assert_eq!(p.count(Phase::Compensate), 1);
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_saga_on_a_long_backoff_waits_without_a_task_and_wakes_on_time_or_for_an_operator() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path(), None).await;
        let client = CoordinatorClient::new(coordinator.url());
        let p = failing_with_slow_retries(&client).await;
        let waiting = client
            .submit("wf", json!({"n": 1}), None, None)
            .await
            .unwrap()
            .saga;
        let aborted = client
            .submit("wf", json!({"n": 2}), None, None)
            .await
            .unwrap()
            .saga;
        // The metrics are the whole test binary's: other tests may park sagas too.
        eventually("both sagas parked", || async {
            metric(&client, "coordinator_sagas_parked").await >= 2.0
        })
        .await;

        // An operator request brings a parked saga back at once.
        p.answer(Phase::Cancel, 200);
        let view = client.abort(&aborted.id).await.unwrap();
        assert!(matches!(
            view.state,
            SagaState::Compensating | SagaState::Aborted
        ));
        let done = wait_for(&client, &aborted.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Aborted);

        // The other wakes when its retry is due.
        p.answer(Phase::Try, 200);
        let done = wait_for(&client, &waiting.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Committed);
        assert_eq!(
            p.count(Phase::Try),
            3,
            "a failed try each, then one after the wake-up"
        );
        coordinator.shutdown().await;
    }
}

/// A crash can leave a submission's idempotency key on disk without its first event (sled
/// persists its trees independently; the submission was never acknowledged). The key must
/// stay usable: the next submission with it starts the saga, instead of a `404` for good.
#[tokio::test]
async fn a_key_left_without_its_saga_by_a_crash_starts_a_new_saga() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start(dir.path(), None).await;
    let client = CoordinatorClient::new(coordinator.url());
    let (fake, addr) = FakeParticipant::start().await;
    register(&client, "p", addr, json!({})).await;
    one_step_workflow(&client, "w", "p", "s").await;
    coordinator.shutdown().await;
    // What the crash left: the key, naming a saga that is nowhere in the log.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    db.open_tree("idempotency")
        .unwrap()
        .insert("order-7", "01a22cbe-0000-7000-8000-000000000000")
        .unwrap();
    db.flush().unwrap();
    drop(db);

    let coordinator = start(dir.path(), None).await;
    let client = CoordinatorClient::new(coordinator.url());
    let first = client
        .submit("w", json!({"n": 1}), Some("order-7"), Some(10_000))
        .await
        .expect("the key starts a saga");
    assert_eq!(first.saga.state, SagaState::Committed);
    assert_ne!(first.saga.id, "01a22cbe-0000-7000-8000-000000000000");
    let again = client
        .submit("w", json!({"n": 1}), Some("order-7"), Some(10_000))
        .await
        .unwrap();
    assert_eq!(again.saga.id, first.saga.id, "and names it from then on");
    assert_eq!(fake.count(Phase::Action), 1);
    coordinator.shutdown().await;
}
