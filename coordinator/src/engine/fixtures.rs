//! Sagas for unit tests outside the engine (store, runtime).

use sagas::{RetryPolicy, StepKind};

use super::{Created, Plan, PlanStep};

/// The first event of a one-step SAGA workflow `w` on participant `p`, created at 1,000.
pub(crate) fn one_step(id: &str, key: Option<&str>) -> Created {
    Created {
        id: id.into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({"n": 1}).into(),
        callback_url: None,
        idempotency_key: key.map(Into::into),
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
