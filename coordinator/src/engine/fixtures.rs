//! Sagas for unit tests outside the engine (store, runtime).

use sagas::{RetryPolicy, StepKind};

use super::{CallOutcome, CallRef, Created, Event, Millis, Plan, PlanStep};

/// The first event of a one-step SAGA workflow `w` on participant `p`, created at 1,000.
pub(crate) fn one_step(id: &str, key: Option<&str>) -> Created {
    Created {
        id: id.into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({"n": 1}).into(),
        callback_url: None,
        idempotency_key: key.map(Into::into),
        business_key: None,
        callback_max_attempts: super::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan: Plan {
            steps: vec![PlanStep {
                name: "only".into(),
                participant: "p".into(),
                action: "a".into(),
                kind: StepKind::Saga,
                deps: vec![],
                timeout_ms: None,
                retry: RetryPolicy::default(),
            }],
            timeout_ms: None,
        }
        .into(),
        at: 1_000,
    }
}

/// A successful answer (HTTP 200) to `call`.
pub(crate) fn ended_ok(call: CallRef, at: Millis) -> Event {
    Event::CallEnded {
        call,
        outcome: CallOutcome::Ok,
        http_status: Some(200),
        latency_ms: 1,
        error: None,
        retry_at: 0,
        at,
    }
}
