//! The coordinator's HTTP API, in process on port 0, against scripted participants.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::time::Duration;

use coordinator::CoordinatorOptions;
use fake_participant::{FakeParticipant, wait_for};
use sagas::api::{
    OperatorNote, Resolution, ResolveStep, SagaQuery, SagaState, SagaView, StepStatus, SubmitSaga,
};
use sagas::client::Submitted;
use sagas::{ClientError, CoordinatorClient, ParticipantSpec, Phase, WorkflowBuilder};
use serde_json::{Value, json};

struct Setup {
    _dir: tempfile::TempDir,
    coordinator: coordinator::RunningCoordinator,
    client: CoordinatorClient,
    fake: FakeParticipant,
}

/// A coordinator and one fake participant `p` with a TCC action `t` and a SAGA action `s`;
/// workflow `w` runs s1 (SAGA) then t1 (TCC).
async fn setup(settle_max_attempts: u32) -> Setup {
    setup_with(settle_max_attempts, |_| {}).await
}

/// `setup`, with the coordinator's configuration changed by `configure` first.
async fn setup_with(
    settle_max_attempts: u32,
    configure: impl FnOnce(&mut CoordinatorOptions),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = setup::options(&dir.path().join("c"));
    configure(&mut config);
    let coordinator = coordinator::start(config).await.unwrap();
    let client = CoordinatorClient::new(coordinator.url());
    let (fake, addr) = FakeParticipant::start().await;
    let mut spec: ParticipantSpec = serde_json::from_value(json!({
        "base_url": format!("http://{addr}"),
        "actions": {
            "t": {"try": "/try", "confirm": "/confirm", "cancel": "/cancel"},
            "s": {"action": "/action", "compensate": "/compensate"}
        },
        "policy": {"timeout_ms": 2000}
    }))
    .unwrap();
    let policy = spec.policy.as_mut().expect("the spec sets a policy");
    policy.retry.initial_ms = 5;
    policy.retry.max_ms = 20;
    policy.retry.max_attempts = 2;
    policy.retry.settle_max_attempts = settle_max_attempts;
    client.put_participant("p", &spec).await.unwrap();
    let workflow = WorkflowBuilder::new()
        .step("s1", "p", "s")
        .step("t1", "p", "t")
        .build()
        .unwrap();
    client.put_workflow("w", &workflow).await.unwrap();
    Setup {
        _dir: dir,
        coordinator,
        client,
        fake,
    }
}

impl Setup {
    /// Submits `input` to workflow `w`, waiting up to `wait_ms` for the outcome.
    async fn submit(&self, input: Value, key: Option<&str>, wait_ms: Option<u64>) -> Submitted {
        let submitted = self.client.submit("w", input, key, wait_ms).await;
        submitted.unwrap_or_else(|e| panic!("submitting to w: {e}"))
    }

    /// Submits `input` to workflow `w` without a key and waits (up to 10 s) for the outcome.
    async fn run(&self, input: Value) -> Submitted {
        self.submit(input, None, Some(10_000)).await
    }

    async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.coordinator.url());
        let response = reqwest::get(url).await.unwrap().error_for_status().unwrap();
        response.text().await.unwrap()
    }
}

async fn wait_terminal(client: &CoordinatorClient, id: &str) -> SagaView {
    wait_for(Duration::from_secs(20), async || {
        let saga = client.get_saga(id).await.unwrap();
        if saga.state.is_terminal() || saga.state == SagaState::Stuck {
            Ok(saga)
        } else {
            Err(format!("saga {id} still {:?}", saga.state))
        }
    })
    .await
}

fn api_error(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

on_both_stores! {
    async fn commits_with_confirm_and_records_an_audit_trail() {
        let s = setup(5).await;
        let done = s.submit(json!({"n": 1}), Some("k1"), Some(10_000)).await;
        assert_eq!(done.status, 200);
        assert_eq!(done.saga.state, SagaState::Committed);
        assert_eq!(done.saga.workflow_version, 1);
        assert!(
            done.saga
                .steps
                .iter()
                .all(|st| st.attempts == st.steps_expected())
        );
        assert_eq!(
            s.fake.calls(),
            vec![
                ("s1".into(), Phase::Action),
                ("t1".into(), Phase::Try),
                ("t1".into(), Phase::Confirm)
            ]
        );
        let events = s.client.saga_events(&done.saga.id).await.unwrap().events;
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"created"));
        assert_eq!(kinds.last(), Some(&"finished"));
        assert!(
            events.iter().any(|e| e.kind == "call_ended"
                && e.http_status == Some(200)
                && e.latency_ms.is_some())
        );
        assert!(
            events
                .iter()
                .any(|e| e.kind == "decided" && e.outcome.as_deref() == Some("commit"))
        );
        let metrics = s.metrics().await;
        for name in [
            "coordinator_sagas_finished_total",
            "coordinator_branch_calls_total",
            "coordinator_branch_call_duration_seconds",
            "coordinator_log_flushes_total",
        ] {
            assert!(
                metrics.contains(name),
                "{name} missing from /metrics:\n{metrics}"
            );
        }
        s.coordinator.shutdown().await;
    }
}

trait Expected {
    fn steps_expected(&self) -> u32;
}
impl Expected for sagas::api::StepView {
    fn steps_expected(&self) -> u32 {
        match self.kind {
            sagas::StepKind::Saga => 1,
            sagas::StepKind::Tcc => 2,
        }
    }
}

on_both_stores! {
    async fn a_rejected_try_aborts_and_undoes_in_reverse_order() {
        let s = setup(5).await;
        s.fake.answer(Phase::Try, 409);
        let done = s.run(json!({})).await;
        assert_eq!(done.saga.state, SagaState::Aborted);
        assert!(
            done.saga
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("t1"),
            "{:?}",
            done.saga.error
        );
        // The step that caused the rollback stays visible as rejected; its undo is shown apart.
        assert_eq!(done.saga.steps[1].status, StepStatus::Rejected);
        assert_eq!(done.saga.steps[1].undo, Some(StepStatus::Compensated));
        assert_eq!(done.saga.steps[0].status, StepStatus::Compensated);
        assert_eq!(done.saga.steps[0].undo, None);
        assert_eq!(
            s.fake.calls(),
            vec![
                ("s1".into(), Phase::Action),
                ("t1".into(), Phase::Try),
                ("t1".into(), Phase::Cancel),
                ("s1".into(), Phase::Compensate)
            ]
        );
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn transient_failures_are_retried_then_roll_back() {
        let s = setup(5).await;
        s.fake.answer(Phase::Try, 503);
        let done = s.run(json!({})).await;
        assert_eq!(done.saga.state, SagaState::Aborted);
        assert_eq!(s.fake.count(Phase::Try), 2, "max_attempts = 2");
        assert_eq!(
            s.fake.count(Phase::Cancel),
            1,
            "a try that may have applied is cancelled"
        );
        // What operators see of it: action ok, two tries failed, cancel and compensate ok.
        let recent = s.client.get_participant("p").await.unwrap().recent;
        assert_eq!((recent.calls, recent.failed), (5, 2), "{recent:?}");
        assert!((recent.error_rate - 0.4).abs() < 1e-9, "{recent:?}");
        assert!(recent.latency_p50_ms.is_some_and(|ms| ms > 0.0), "{recent:?}");
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn failing_compensation_gets_stuck_and_retry_finishes_it() {
        let s = setup(2).await;
        s.fake.answer(Phase::Try, 409);
        s.fake.answer(Phase::Compensate, 500);
        let first = s.submit(json!({}), None, Some(0)).await;
        let stuck = wait_terminal(&s.client, &first.saga.id).await;
        assert_eq!(stuck.state, SagaState::Stuck);
        assert_eq!(stuck.steps[0].status, StepStatus::Stuck);
        let listed = s
            .client
            .list_sagas(Some("stuck"), None, None, None)
            .await
            .unwrap();
        assert_eq!(
            listed
                .sagas
                .iter()
                .map(|x| x.id.as_str())
                .collect::<Vec<_>>(),
            vec![stuck.id.as_str()]
        );
        // Counted (and alerted) as soon as it is stuck, not when an operator first touches it.
        let metrics = s.metrics().await;
        let stuck_count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"coordinator_sagas_stuck_total{workflow="w"} "#))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(stuck_count >= Some(1.0), "{metrics}");
        // Not before the participant is fixed... then the operator's retry finishes the rollback.
        s.fake.answer(Phase::Compensate, 200);
        s.client.retry(&stuck.id).await.unwrap();
        let done = wait_terminal(&s.client, &stuck.id).await;
        assert_eq!(done.state, SagaState::Aborted);
        // Retrying a finished saga is a conflict.
        assert_eq!(
            api_error(s.client.retry(&stuck.id).await.unwrap_err()),
            (409, "conflict".into())
        );
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn operator_abort_rolls_back_a_running_saga() {
        let s = setup(5).await;
        s.fake.hold(Phase::Try);
        let first = s.submit(json!({}), None, None).await;
        assert_eq!(first.status, 202);
        wait_for(Duration::from_secs(10), async || {
            match s.fake.count(Phase::Try) {
                0 => Err("the try never arrived".to_string()),
                _ => Ok(()),
            }
        })
        .await;
        let note = OperatorNote {
            reason: Some("customer cancelled".into()),
            by: Some("alice".into()),
        };
        let aborting = s.client.abort_with(&first.saga.id, &note).await.unwrap();
        assert_eq!(aborting.state, SagaState::Compensating);
        s.fake.release_all();
        let done = wait_terminal(&s.client, &first.saga.id).await;
        assert_eq!(done.state, SagaState::Aborted);
        assert_eq!(
            done.error.as_deref(),
            Some("aborted by alice: customer cancelled")
        );
        // Who asked and why, in the audit trail.
        let events = s.client.saga_events(&first.saga.id).await.unwrap().events;
        assert!(events.iter().any(|e| e.kind == "operated"
            && e.outcome.as_deref() == Some("abort")
            && e.by.as_deref() == Some("alice")
            && e.reason.as_deref() == Some("customer cancelled")));
        assert_eq!(s.fake.count(Phase::Cancel), 1);
        assert_eq!(s.fake.count(Phase::Compensate), 1);
        assert_eq!(
            api_error(s.client.abort(&first.saga.id).await.unwrap_err()),
            (409, "conflict".into())
        );
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn idempotency_key_returns_the_same_saga_and_rejects_another_body() {
        let s = setup(5).await;
        let a = s.submit(json!({"x": 1}), Some("key-1"), Some(10_000)).await;
        let b = s.submit(json!({"x": 1}), Some("key-1"), None).await;
        assert_eq!(a.saga.id, b.saga.id);
        assert_eq!(b.status, 200, "already terminal");
        assert_eq!(s.fake.count(Phase::Action), 1, "ran once");
        let err = s
            .client
            .submit("w", json!({"x": 2}), Some("key-1"), None)
            .await
            .unwrap_err();
        assert_eq!(api_error(err), (422, "idempotency_key_reused".into()));
        // Concurrent submissions with one key start one saga.
        let subs = (0..8).map(|_| {
            s.client
                .submit("w", json!({"y": 1}), Some("key-2"), Some(10_000))
        });
        let results = futures::future::join_all(subs).await;
        let ids: std::collections::BTreeSet<String> =
            results.into_iter().map(|r| r.unwrap().saga.id).collect();
        assert_eq!(ids.len(), 1);
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn bad_input_gets_json_errors_never_a_500() {
        let s = setup(5).await;
        let http = reqwest::Client::new();
        let url = s.coordinator.url();
        let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
            (
                http.post(format!("{url}/v1/sagas"))
                    .header("content-type", "application/json")
                    .body("{nope"),
                400,
            ),
            (
                http.post(format!("{url}/v1/sagas"))
                    .json(&json!({"workflow": 5})),
                400,
            ),
            (
                http.post(format!("{url}/v1/sagas"))
                    .json(&json!({"workflow": "w", "extra": 1})),
                400,
            ),
            (
                http.post(format!("{url}/v1/sagas"))
                    .json(&json!({"workflow": "missing"})),
                404,
            ),
            (
                http.post(format!("{url}/v1/sagas?wait_ms=-1"))
                    .json(&json!({"workflow": "w"})),
                400,
            ),
            (
                http.post(format!("{url}/v1/sagas"))
                    .json(&json!({"workflow": "w", "callback_url": "ftp://x"})),
                400,
            ),
            (http.get(format!("{url}/v1/sagas?limit=0")), 400),
            (http.get(format!("{url}/v1/sagas?state=done")), 400),
            (http.get(format!("{url}/v1/sagas/nope")), 404),
            (http.get(format!("{url}/v1/sagas/nope/events")), 404),
            (http.post(format!("{url}/v1/sagas/nope/abort")), 404),
            (http.get(format!("{url}/v1/workflows/nope")), 404),
            (http.get(format!("{url}/v1/participants/nope")), 404),
            (
                http.put(format!("{url}/v1/participants/p"))
                    .json(&json!({"base_url": "nope", "actions": {}})),
                400,
            ),
            (
                http.put(format!("{url}/v1/participants/a%2Fb"))
                    .json(&json!({"base_url": "http://x", "actions": {}})),
                400,
            ),
            (http.get(format!("{url}/v2/anything")), 404),
        ];
        for (request, expected) in cases {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, expected, "{body}");
            assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{body}"
            );
        }
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn workflows_are_validated_and_versioned() {
        let s = setup(5).await;
        let put = |body: serde_json::Value| {
            let http = reqwest::Client::new();
            let url = format!("{}/v1/workflows/w2", s.coordinator.url());
            async move {
                let r = http.put(url).json(&body).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        let step = |name: &str, participant: &str, action: &str, after: &[&str]| json!({"name": name, "participant": participant, "action": action, "after": after});
        let invalid = [
            (json!([step("a", "nobody", "s", &[])]), "nobody"),
            (json!([step("a", "p", "zzz", &[])]), "zzz"),
            (
                json!([step("a", "p", "s", &["b"]), step("b", "p", "s", &["a"])]),
                "cycle",
            ),
            (
                json!([step("a", "p", "s", &[]), step("a", "p", "t", &[])]),
                "duplicate",
            ),
        ];
        for (steps, reason) in invalid {
            let (status, body) = put(json!({ "steps": steps })).await;
            assert_eq!(status, 400, "{body}");
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no error message in {body}"));
            assert!(message.contains(reason), "{body}");
        }

        let v1 = json!({"steps": [step("a", "p", "s", &[])]});
        assert_eq!(put(v1.clone()).await.1["version"], 1);
        assert_eq!(
            put(v1).await.1["version"],
            1,
            "same definition, same version"
        );
        let (_, v2) =
            put(json!({"steps": [step("a", "p", "s", &[]), step("b", "p", "t", &["a"])]})).await;
        assert_eq!(v2["version"], 2);
        let saga = s
            .client
            .submit("w2", json!({}), None, Some(10_000))
            .await
            .unwrap()
            .saga;
        assert_eq!((saga.workflow_version, saga.steps.len()), (2, 2));
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn listing_filters_and_pages() {
        let s = setup(5).await;
        s.fake.answer(Phase::Try, 409);
        for i in 0..3 {
            s.run(json!({"i": i})).await;
        }
        s.fake.answer(Phase::Try, 200);
        for i in 0..2 {
            s.run(json!({"i": i})).await;
        }
        let aborted = s
            .client
            .list_sagas(Some("aborted"), Some("w"), None, None)
            .await
            .unwrap();
        assert_eq!(aborted.sagas.len(), 3);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = s
                .client
                .list_sagas(None, None, Some(2), cursor.as_deref())
                .await
                .unwrap();
            seen.extend(page.sagas.into_iter().map(|x| x.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages come in creation order");
        let body = SubmitSaga {
            workflow: "w".into(),
            input: json!({}).into(),
            callback_url: None,
        business_key: None,
        };
        let submitted = s.client.submit_body(&body, None, None).await.unwrap();
        assert!(!seen.contains(&submitted.saga.id), "a new saga");
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn finished_sagas_are_removed_after_their_retention() {
        let s = setup_with(5, |config| config.retention = Duration::from_secs(1)).await;
        let first = s.submit(json!({}), Some("k"), Some(10_000)).await.saga;
        assert_eq!(first.state, SagaState::Committed);
        wait_for(Duration::from_secs(20), async || {
            match s.client.get_saga(&first.id).await {
                Err(ClientError::Api { status: 404, .. }) => Ok(()),
                Ok(saga) => Err(format!("saga never expired: still {:?}", saga.state)),
                Err(other) => panic!("{other}"),
            }
        })
        .await;
        assert_eq!(
            api_error(s.client.saga_events(&first.id).await.unwrap_err()).0,
            404,
            "its events went with it"
        );
        // Its key is free again: the same request starts a new saga.
        let again = s.submit(json!({}), Some("k"), Some(10_000)).await.saga;
        assert_ne!(again.id, first.id);
        s.coordinator.shutdown().await;
    }
}

/// Makes every saga of `s` end stuck: the try is refused, so the rollback compensates `s1`,
/// which keeps failing.
async fn stuck_sagas(s: &Setup, n: usize) -> Vec<String> {
    s.fake.answer(Phase::Try, 409);
    s.fake.answer(Phase::Compensate, 500);
    let mut ids = Vec::new();
    for i in 0..n {
        let submitted = s.submit(json!({ "i": i }), None, Some(0)).await;
        let saga = wait_terminal(&s.client, &submitted.saga.id).await;
        assert_eq!(saga.state, SagaState::Stuck, "{saga:?}");
        ids.push(saga.id);
    }
    ids
}

on_both_stores! {
    async fn a_step_resolved_by_hand_ends_a_stuck_rollback() {
        let s = setup(2).await;
        let id = stuck_sagas(&s, 1).await.remove(0);
        let refund = |resolution: Resolution, reason: &str| ResolveStep {
            resolution,
            reason: reason.into(),
            by: Some("bob".into()),
        };
        // Only what fits the saga's direction, for a step that is stuck, with a reason.
        let (status, _) = api_error(
            s.client
                .resolve_step(&id, "s1", &refund(Resolution::Confirmed, "confirmed by hand"))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 409);
        let (status, _) = api_error(
            s.client
                .resolve_step(&id, "t1", &refund(Resolution::Compensated, "nothing to undo"))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 409);
        let (status, _) = api_error(
            s.client
                .resolve_step(&id, "s1", &refund(Resolution::Compensated, " "))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 400);
        let (status, _) = api_error(
            s.client
                .resolve_step(&id, "nope", &refund(Resolution::Compensated, "x"))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 404);
        let (status, _) = api_error(
            s.client
                .resolve_step("no-such-saga", "s1", &refund(Resolution::Compensated, "x"))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 404);

        let resolved = s
            .client
            .resolve_step(&id, "s1", &refund(Resolution::Compensated, "order cancelled in the shop admin"))
            .await
            .unwrap();
        assert_eq!(resolved.state, SagaState::Aborted, "{resolved:?}");
        assert_eq!(resolved.steps[0].resolved, Some(Resolution::Compensated));
        let events = s.client.saga_events(&id).await.unwrap().events;
        assert!(
            events.iter().any(|e| e.kind == "operated"
                && e.by.as_deref() == Some("bob")
                && e.reason.as_deref() == Some("order cancelled in the shop admin")),
            "{events:?}"
        );
        // The compensation was never made by the coordinator after the resolution.
        let compensations = s.fake.count(Phase::Compensate);
        assert_eq!(
            api_error(
                s.client
                    .resolve_step(&id, "s1", &refund(Resolution::Compensated, "again"))
                    .await
                    .unwrap_err()
            )
            .0,
            409
        );
        assert_eq!(s.fake.count(Phase::Compensate), compensations);
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn retry_now_makes_the_waiting_call_at_once() {
        let s = setup(5).await;
        // A backoff far longer than the test: only retry-now can make the second attempt.
        let mut spec = s.client.get_participant("p").await.unwrap().spec;
        let policy = spec.policy.as_mut().expect("set by setup");
        policy.retry.initial_ms = 600_000;
        policy.retry.max_ms = 600_000;
        policy.retry.max_attempts = 10;
        s.client.put_participant("p", &spec).await.unwrap();
        s.fake.answer(Phase::Action, 503);
        let submitted = s.submit(json!({}), None, Some(0)).await;
        let id = submitted.saga.id;
        wait_for(Duration::from_secs(10), async || match s.fake.count(Phase::Action) {
            0 => Err("the first action never arrived".to_string()),
            _ => Ok(()),
        })
        .await;
        let note = OperatorNote {
            reason: Some("order service redeployed".into()),
            by: Some("carol".into()),
        };
        // Waiting shows once the failure is recorded; poll until retry-now is accepted.
        wait_for(Duration::from_secs(10), async || {
            s.client.retry_now(&id, &note).await.map_err(|e| e.to_string())
        })
        .await;
        wait_for(Duration::from_secs(10), async || match s.fake.count(Phase::Action) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} action calls")),
        })
        .await;
        s.fake.answer(Phase::Action, 200);
        wait_for(Duration::from_secs(10), async || {
            s.client.retry_now(&id, &note).await.map_err(|e| e.to_string())
        })
        .await;
        let done = wait_terminal(&s.client, &id).await;
        assert_eq!(done.state, SagaState::Committed);
        let events = s.client.saga_events(&id).await.unwrap().events;
        let asked = events
            .iter()
            .filter(|e| e.kind == "operated" && e.outcome.as_deref() == Some("retry_now"))
            .count();
        assert_eq!(asked, 2, "{events:?}");
        // Nothing waits on a finished saga.
        assert_eq!(api_error(s.client.retry_now(&id, &note).await.unwrap_err()).0, 409);
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn bulk_retry_resumes_every_stuck_saga_the_filter_matches() {
        let s = setup(2).await;
        let ids = stuck_sagas(&s, 3).await;
        let query = |state: Option<&str>| SagaQuery {
            state: state.map(String::from),
            workflow: Some("w".into()),
            ..SagaQuery::default()
        };
        let note = OperatorNote {
            reason: Some("order service fixed".into()),
            by: None,
        };
        let (status, _) = api_error(
            s.client
                .bulk_retry(&query(Some("committed")), &note)
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 400);
        let other = SagaQuery {
            workflow: Some("other".into()),
            ..SagaQuery::default()
        };
        assert_eq!(s.client.bulk_retry(&other, &note).await.unwrap().resumed, 0);
        s.fake.answer(Phase::Compensate, 200);
        let answer = s.client.bulk_retry(&query(None), &note).await.unwrap();
        assert_eq!(answer.resumed, 3, "{answer:?}");
        for id in &ids {
            assert_eq!(wait_terminal(&s.client, id).await.state, SagaState::Aborted);
            let events = s.client.saga_events(id).await.unwrap().events;
            assert!(events.iter().any(|e| e.kind == "operated"
                && e.by.as_deref() == Some("anonymous")
                && e.reason.as_deref() == Some("order service fixed")));
        }
        assert_eq!(s.client.bulk_retry(&query(Some("stuck")), &note).await.unwrap().resumed, 0);
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn business_keys_and_time_ranges_find_sagas() {
        let s = setup(5).await;
        let keyed = WorkflowBuilder::new()
            .step("s1", "p", "s")
            .business_key("/order_id")
            .build()
            .unwrap();
        s.client.put_workflow("keyed", &keyed).await.unwrap();
        let by_pointer = s
            .client
            .submit("keyed", json!({"order_id": "A-42"}), None, Some(10_000))
            .await
            .unwrap();
        assert_eq!(by_pointer.saga.business_key.as_deref(), Some("A-42"));
        let numeric = s
            .client
            .submit("keyed", json!({"order_id": 43}), None, Some(10_000))
            .await
            .unwrap();
        assert_eq!(numeric.saga.business_key.as_deref(), Some("43"));
        let missing = s.client.submit("keyed", json!({}), None, Some(10_000)).await.unwrap();
        assert_eq!(missing.saga.business_key, None);
        let explicit = SubmitSaga {
            workflow: "keyed".into(),
            input: json!({"order_id": "A-42"}).into(),
            callback_url: None,
            business_key: Some("refund-7".into()),
        };
        let own = s.client.submit_body(&explicit, None, Some(10_000)).await.unwrap();
        assert_eq!(own.saga.business_key.as_deref(), Some("refund-7"));
        let bad = SubmitSaga {
            business_key: Some("bad\nkey".into()),
            ..explicit.clone()
        };
        assert_eq!(api_error(s.client.submit_body(&bad, None, None).await.unwrap_err()).0, 400);

        let find = async |query: SagaQuery| {
            let page = s.client.query_sagas(&query).await.unwrap();
            page.sagas.into_iter().map(|x| x.id).collect::<Vec<_>>()
        };
        let key = |k: &str| SagaQuery {
            business_key: Some(k.into()),
            ..SagaQuery::default()
        };
        assert_eq!(find(key("A-42")).await, vec![by_pointer.saga.id.clone()]);
        assert_eq!(find(key("refund-7")).await, vec![own.saga.id.clone()]);
        assert!(find(key("A-4")).await.is_empty(), "exact match only");

        // Time range: [created_after, created_before).
        let first = &by_pointer.saga.created_at;
        let all = find(SagaQuery {
            created_after: Some(first.clone()),
            ..SagaQuery::default()
        })
        .await;
        assert_eq!(all.len(), 4, "{all:?}");
        let none_before = find(SagaQuery {
            created_before: Some(first.clone()),
            ..SagaQuery::default()
        })
        .await;
        assert!(none_before.is_empty(), "{none_before:?}");
        let future = find(SagaQuery {
            created_after: Some("2999-01-01T00:00:00Z".into()),
            ..SagaQuery::default()
        })
        .await;
        assert!(future.is_empty());
        let both = find(SagaQuery {
            business_key: Some("A-42".into()),
            created_before: Some("2999-01-01T00:00:00+02:00".into()),
            ..SagaQuery::default()
        })
        .await;
        assert_eq!(both, vec![by_pointer.saga.id.clone()]);
        let bad_time = SagaQuery {
            created_after: Some("yesterday".into()),
            ..SagaQuery::default()
        };
        assert_eq!(api_error(s.client.query_sagas(&bad_time).await.unwrap_err()).0, 400);
        s.coordinator.shutdown().await;
    }
}

on_both_stores! {
    /// `POST /v1/sagas/states` answers every asked id in one request: committed, aborted,
    /// stuck, running as the saga views name them, `unknown` for an id the coordinator does
    /// not hold; more than 1000 ids is `400` naming the limit.
    async fn saga_states_answers_a_batch_of_ids() {
        let s = setup(2).await;
        let committed = s.run(json!({"n": 1})).await.saga;
        assert_eq!(committed.state, SagaState::Committed);
        s.fake.answer(Phase::Try, 409);
        let aborted = s.run(json!({"n": 2})).await.saga;
        assert_eq!(aborted.state, SagaState::Aborted);
        s.fake.answer(Phase::Compensate, 500);
        let stuck = s.submit(json!({"n": 3}), None, Some(0)).await.saga;
        let stuck = wait_terminal(&s.client, &stuck.id).await;
        assert_eq!(stuck.state, SagaState::Stuck);
        s.fake.answer(Phase::Try, 200);
        s.fake.hold(Phase::Try);
        let running = s.submit(json!({"n": 4}), None, Some(0)).await.saga;
        // The held try keeps it running while it is asked about.
        wait_for(Duration::from_secs(10), async || {
            if s.fake.count(Phase::Try) >= 1 { Ok(()) } else { Err("try not called yet".to_string()) }
        })
        .await;

        let ids: Vec<String> = [&committed.id, &aborted.id, &stuck.id, &running.id]
            .into_iter()
            .cloned()
            .chain(["no-such-saga".to_string(), committed.id.clone()])
            .collect();
        let answer = s.client.saga_states(&ids).await.unwrap();
        use sagas::api::ReportedState;
        let expected = [
            (committed.id.clone(), ReportedState::Committed),
            (aborted.id.clone(), ReportedState::Aborted),
            (stuck.id.clone(), ReportedState::Stuck),
            (running.id.clone(), ReportedState::Running),
            ("no-such-saga".to_string(), ReportedState::Unknown),
        ];
        assert_eq!(answer.states, expected.into_iter().collect(), "{answer:?}");
        // The names are the saga views' own.
        let raw: Value = reqwest::Client::new()
            .post(format!("{}/v1/sagas/states", s.coordinator.url()))
            .json(&json!({"ids": [committed.id, stuck.id]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            raw,
            json!({"states": {(committed.id.as_str()): "committed", (stuck.id.as_str()): "stuck"}})
        );

        assert!(s.client.saga_states(&[]).await.unwrap().states.is_empty());
        let many: Vec<String> = (0..1_000).map(|i| format!("id-{i}")).collect();
        assert_eq!(s.client.saga_states(&many).await.unwrap().states.len(), 1_000);
        let too_many: Vec<String> = (0..1_001).map(|i| format!("id-{i}")).collect();
        let (status, code) = api_error(s.client.saga_states(&too_many).await.unwrap_err());
        assert_eq!((status, code.as_str()), (400, "bad_request"));
        let err = s.client.saga_states(&too_many).await.unwrap_err().to_string();
        assert!(err.contains("at most 1000"), "{err}");
        s.fake.release_all();
        s.coordinator.shutdown().await;
    }
}
