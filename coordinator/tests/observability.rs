//! What operators see of a coordinator, in process on port 0: the spans it exports over
//! OTLP/HTTP (to a receiver in the test), the alerts it POSTs to a webhook (a receiver in the
//! test that fails its first requests), and the Prometheus series of retries, circuits,
//! bulkheads, alerts and sagas by state.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use coordinator::CoordinatorOptions;
use fake_participant::{FakeParticipant, eventually, wait_for as poll};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use sagas::api::{SagaState, SubmitSaga};
use sagas::{CoordinatorClient, Phase, WorkflowBuilder};
use serde_json::{Value, json};
use setup::{fast_retry, metric, metrics_text, one_step_workflow, register, wait_for};

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------------------------

/// One exported span, as the receiver decoded it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    /// The exporting coordinator's `service.instance.id`.
    instance: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
#[derive(Clone, Default)]
struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

async fn receive_traces(
    State(receiver): State<OtlpReceiver>,
    body: axum::body::Bytes,
) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = receiver.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let instance = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.instance.id")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(ReceivedSpan {
                instance: instance.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect(),
            });
        }
    }
    StatusCode::OK
}

impl OtlpReceiver {
    /// Serves on a free port; returns the receiver and the endpoint to configure.
    async fn start() -> (OtlpReceiver, String) {
        let receiver = OtlpReceiver::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(receive_traces))
            .with_state(receiver.clone());
        (receiver, serve(app).await)
    }

    /// Every span received so far, once `done` holds for them (polled for at most 30 s).
    async fn spans_when(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        poll(Duration::from_secs(30), async || {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                Ok(spans)
            } else {
                Err(format!("waiting for {what}; received {spans:#?}"))
            }
        })
        .await
    }
}

/// Workflow `w`: `s1` (SAGA action `s`) then `t1` (TCC action `t`), both on participant `p`.
async fn two_step_workflow(client: &CoordinatorClient) {
    let workflow = WorkflowBuilder::new()
        .step("s1", "p", "s")
        .step("t1", "p", "t")
        .build()
        .unwrap();
    client.put_workflow("w", &workflow).await.unwrap();
}

on_both_stores! {
    async fn a_saga_is_one_trace_under_its_callers_span_across_a_restart() {
        let (receiver, endpoint) = OtlpReceiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let configure = |c: &mut CoordinatorOptions| {
            c.otlp.endpoint = Some(endpoint.clone());
            c.otlp.export_interval = Duration::from_millis(50);
        };
        let coordinator = setup::start_with(dir.path(), configure).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (p, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({
            "circuit_breaker": {"failure_threshold": 1000, "open_ms": 1000},
            "retry": fast_retry(3, 1000)
        }))
        .await;
        two_step_workflow(&client).await;
        p.answer(Phase::Confirm, 503);

        let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller_span = "00f067aa0ba902b7";
        let response = reqwest::Client::new()
            .post(format!("{}/v1/sagas", coordinator.url()))
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
            .json(&json!({"workflow": "w", "input": {"n": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

        // Spans go out in batches while the coordinator runs.
        let spans = receiver.spans_when("the submission span", |spans| {
            spans.iter().any(|s| s.name == "saga.submit")
        })
        .await;
        let submit = spans.iter().find(|s| s.name == "saga.submit").unwrap().clone();
        assert_eq!(submit.trace_id, caller_trace, "the saga joins the caller's trace");
        assert_eq!(submit.parent_span_id, caller_span, "under the caller's span");
        assert_eq!(submit.attribute("saga.id"), id);
        assert_eq!(submit.attribute("saga.workflow"), "w");

        // Restarted while its confirm keeps failing: the new process continues the same trace.
        eventually("a retried confirm", || async { p.count(Phase::Confirm) >= 2 }).await;
        coordinator.shutdown().await;
        p.answer(Phase::Confirm, 200);
        let coordinator = setup::start_with(dir.path(), configure).await;
        let client = CoordinatorClient::new(coordinator.url());
        let saga = wait_for(&client, &id, |s| s.state.is_terminal()).await;
        assert_eq!(saga.state, SagaState::Committed);
        // A saga submitted without a traceparent is a trace of its own.
        let own = client.submit("w", json!({"n": 2}), None, Some(10_000)).await.unwrap().saga;
        assert_eq!(own.state, SagaState::Committed);
        coordinator.shutdown().await;

        let calls = p.traced_calls();
        let in_callers_trace =
            |tp: &Option<String>| tp.as_deref().is_some_and(|tp| tp.contains(caller_trace));
        let first_calls = calls.iter().filter(|(_, _, tp)| in_callers_trace(tp)).count();
        let own_calls = calls.len() - first_calls;
        let branch_spans = |spans: &[ReceivedSpan], saga: &str| -> Vec<ReceivedSpan> {
            spans
                .iter()
                .filter(|s| s.name == "saga.branch_call" && s.attribute("saga.id") == saga)
                .cloned()
                .collect()
        };
        let spans = receiver.spans_when("a span per branch call", |spans| {
            branch_spans(spans, &id).len() == first_calls
                && branch_spans(spans, &own.id).len() == own_calls
                && spans.iter().any(|s| s.name == "saga.submit" && s.attribute("saga.id") == own.id)
        })
        .await;

        // One trace for the saga: every call's span under the submission span, with its facts.
        let first = branch_spans(&spans, &id);
        for span in &first {
            assert_eq!(span.trace_id, caller_trace, "{span:?}");
            assert_eq!(span.parent_span_id, submit.span_id, "{span:?}");
            assert_eq!(span.attribute("saga.participant"), "p");
            assert!(["s1", "t1"].contains(&span.attribute("saga.step")), "{span:?}");
            assert!(["action", "try", "confirm"].contains(&span.attribute("saga.phase")), "{span:?}");
            assert!(span.attribute("saga.attempt").parse::<u32>().unwrap() >= 1, "{span:?}");
            assert!(["ok", "transient"].contains(&span.attribute("saga.call.status")), "{span:?}");
        }
        let confirm_spans = first.iter().filter(|s| s.attribute("saga.phase") == "confirm");
        assert!(confirm_spans.clone().any(|s| s.attribute("saga.attempt") == "2"));
        assert!(confirm_spans.clone().any(|s| s.attribute("http.response.status_code") == "503"));
        let instances: HashSet<&str> = first.iter().map(|s| s.instance.as_str()).collect();
        assert_eq!(instances.len(), 2, "both processes sent calls of the saga: {instances:?}");

        // The participant got each call's own span as its parent, in the saga's trace.
        let sent: HashSet<String> = calls
            .iter()
            .filter(|(_, _, tp)| in_callers_trace(tp))
            .filter_map(|(_, _, tp)| tp.clone())
            .collect();
        let exported: HashSet<String> = first
            .iter()
            .map(|s| format!("00-{}-{}-01", s.trace_id, s.span_id))
            .collect();
        assert_eq!(sent, exported);

        // Without a caller: the submission span is the root of the saga's own trace.
        let own_submit = spans
            .iter()
            .find(|s| s.name == "saga.submit" && s.attribute("saga.id") == own.id)
            .unwrap();
        assert_eq!(own_submit.parent_span_id, "");
        assert_ne!(own_submit.trace_id, caller_trace);
        for span in branch_spans(&spans, &own.id) {
            assert_eq!(span.trace_id, own_submit.trace_id, "{span:?}");
            assert_eq!(span.parent_span_id, own_submit.span_id, "{span:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

/// An alert webhook that answers `503` to its first `failures` requests, then `200`.
#[derive(Clone)]
struct Webhook {
    failures: usize,
    /// Every request: the status it answered and the body.
    received: Arc<Mutex<Vec<(u16, Value)>>>,
}

async fn receive_alert(State(webhook): State<Webhook>, body: String) -> StatusCode {
    let mut received = webhook.received.lock().unwrap();
    let status = if received.len() < webhook.failures {
        503
    } else {
        200
    };
    received.push((status, serde_json::from_str(&body).unwrap()));
    StatusCode::from_u16(status).unwrap()
}

impl Webhook {
    async fn start(failures: usize) -> (Webhook, String) {
        let webhook = Webhook {
            failures,
            received: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/alerts", post(receive_alert))
            .with_state(webhook.clone());
        let url = format!("{}/alerts", serve(app).await);
        (webhook, url)
    }

    /// The alert of `kind` that the webhook took (answered `200`) and `matches`, once there is one.
    async fn delivered(&self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        poll(Duration::from_secs(30), async || {
            let received = self.received.lock().unwrap().clone();
            received
                .iter()
                .find(|(status, alert)| *status == 200 && alert["kind"] == kind && matches(alert))
                .map(|(_, alert)| alert.clone())
                .ok_or_else(|| format!("waiting for a {kind} alert; received {received:#?}"))
        })
        .await
    }
}

on_both_stores! {
    async fn stuck_sagas_open_circuits_and_abandoned_callbacks_are_alerted() {
        let (webhook, url) = Webhook::start(2).await;
        let dir = tempfile::tempdir().unwrap();
        let coordinator = setup::start_with(dir.path(), |c| {
            c.alerts.webhook = Some(url.clone());
            c.alerts.initial_backoff = Duration::from_millis(10);
            c.alerts.max_backoff = Duration::from_millis(50);
            c.engine.callback_max_attempts = 2;
            c.callbacks.retry.initial_ms = 10;
            c.callbacks.retry.max_ms = 50;
        })
        .await;
        let client = CoordinatorClient::new(coordinator.url());
        let port = coordinator.local_addr().port().to_string();

        // Stuck: the try is rejected and the compensation of s1 keeps failing.
        let (p, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({
            "circuit_breaker": {"failure_threshold": 1000, "open_ms": 1000},
            "retry": fast_retry(1, 2)
        }))
        .await;
        two_step_workflow(&client).await;
        p.answer(Phase::Try, 409);
        p.answer(Phase::Compensate, 500);
        let stuck = client.submit("w", json!({"n": 1}), None, None).await.unwrap().saga;
        let alert = webhook.delivered("saga_stuck", |a| a["saga_id"] == stuck.id.as_str()).await;
        assert_eq!(alert["workflow"], "w");
        assert_eq!(alert["step"], "s1");
        assert_eq!(alert["participant"], "p");
        assert!(alert["instance"].as_str().unwrap().ends_with(&format!(":{port}")), "{alert}");
        assert!(alert["message"].as_str().unwrap().contains("stuck"), "{alert}");
        let at = alert["at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z'), "RFC 3339 with milliseconds: {at}");
        // The webhook failed twice: the same alert was retried until it took it.
        let first: Vec<(u16, Value)> = webhook.received.lock().unwrap()[..3].to_vec();
        assert_eq!(
            first.iter().map(|(status, _)| *status).collect::<Vec<_>>(),
            vec![503, 503, 200]
        );
        assert!(first.iter().all(|(_, a)| *a == alert), "{first:#?}");

        // Circuit open: two consecutive failures (the action, then its compensation).
        let (flaky, flaky_addr) = FakeParticipant::start().await;
        register(&client, "flaky", flaky_addr, json!({
            "circuit_breaker": {"failure_threshold": 2, "open_ms": 600000},
            "retry": fast_retry(1, 1000)
        }))
        .await;
        one_step_workflow(&client, "wf_flaky", "flaky", "s").await;
        flaky.answer(Phase::Action, 500);
        flaky.answer(Phase::Compensate, 500);
        client.submit("wf_flaky", json!({}), None, None).await.unwrap();
        let alert = webhook.delivered("circuit_open", |a| a["participant"] == "flaky").await;
        assert!(alert.get("saga_id").is_none(), "{alert}");
        assert!(alert["message"].as_str().unwrap().contains("flaky"), "{alert}");

        // Callback abandoned: the receiver keeps failing past the saga's two attempts.
        let (cb, cb_addr) = FakeParticipant::start().await;
        register(&client, "cb", cb_addr, json!({})).await;
        one_step_workflow(&client, "wf_cb", "cb", "s").await;
        cb.answer_callbacks(500);
        let body = SubmitSaga {
            workflow: "wf_cb".into(),
            input: json!({}).into(),
            callback_url: Some(format!("http://{cb_addr}/callback")),
            business_key: None,
        };
        let told = client.submit_body(&body, None, Some(10_000)).await.unwrap().saga;
        let alert = webhook
            .delivered("callback_abandoned", |a| a["saga_id"] == told.id.as_str())
            .await;
        assert_eq!(alert["workflow"], "wf_cb");
        assert!(alert["message"].as_str().unwrap().contains("2 attempts"), "{alert}");
        assert_eq!(cb.callbacks().len(), 2);

        // Each once.
        coordinator.shutdown().await;
        let received = webhook.received.lock().unwrap().clone();
        let delivered: Vec<&Value> = received.iter().filter(|(s, _)| *s == 200).map(|(_, a)| a).collect();
        for kind in ["saga_stuck", "circuit_open", "callback_abandoned"] {
            assert_eq!(
                delivered.iter().filter(|a| a["kind"] == kind).count(),
                1,
                "{kind}: {delivered:#?}"
            );
        }
    }
}

#[tokio::test]
async fn a_webhook_that_never_answers_costs_a_bounded_queue_and_drops_the_oldest() {
    let hung =
        serve(axum::Router::new().route("/alerts", post(std::future::pending::<StatusCode>))).await;
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start_with(dir.path(), |c| {
        c.alerts.webhook = Some(format!("{hung}/alerts"));
        c.alerts.queue_capacity = 1;
        c.alerts.timeout = Duration::from_secs(600);
    })
    .await;
    let client = CoordinatorClient::new(coordinator.url());
    let (p, addr) = FakeParticipant::start().await;
    register(&client, "p", addr, json!({"retry": fast_retry(1, 1)})).await;
    two_step_workflow(&client).await;
    p.answer(Phase::Try, 409);
    p.answer(Phase::Compensate, 500);
    // The first alert hangs in delivery; of the others, only the newest waits.
    for n in 0..3 {
        let saga = client
            .submit("w", json!({ "n": n }), None, None)
            .await
            .unwrap()
            .saga;
        let saga = wait_for(&client, &saga.id, |s| s.state == SagaState::Stuck).await;
        assert_eq!(saga.state, SagaState::Stuck);
    }
    let dropped = "coordinator_alerts_dropped_total{kind=\"saga_stuck\"}";
    eventually("a dropped alert", || async {
        metric(&client, dropped).await >= 1.0
    })
    .await;
    // Shutdown gives the hung delivery its grace period, no more.
    coordinator.shutdown().await;
}

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
        "coordinator_alerts_sent_total",
        "coordinator_alerts_failed_total",
        "coordinator_alerts_dropped_total",
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
    // Declared at start (other tests of this process may have moved them already).
    for kind in ["saga_stuck", "circuit_open", "callback_abandoned"] {
        for metric in ["sent", "failed", "dropped"] {
            let series = format!("coordinator_alerts_{metric}_total{{kind=\"{kind}\"}} ");
            assert!(
                text.lines().any(|l| l.starts_with(&series)),
                "{series}: {text}"
            );
        }
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
