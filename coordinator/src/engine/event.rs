//! Events: the facts a saga's log records. Each is applied by [`super::Saga::apply`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sagas::Phase;
use sagas::api::Resolution;
use sagas::wire::TraceParent;

use super::{Input, Millis, Plan};

/// One call of one phase of one step. `attempt` counts calls of that phase since the phase
/// started (or since an operator's retry gave it a fresh budget), from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallRef {
    /// Index of the step in the saga's plan.
    pub step: usize,
    /// Which phase of the step is called.
    pub phase: Phase,
    /// Attempt of that phase, from 1.
    pub attempt: u32,
}

impl std::fmt::Display for CallRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {} {} attempt {}",
            self.step, self.phase, self.attempt
        )
    }
}

/// How a call ended, as the runtime classified the participant's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// `2xx`.
    Ok,
    /// `409`/`422`: a business rejection. Only `try`/`action` may be rejected; for the
    /// phases that must settle it counts as a transient failure.
    Rejected,
    /// Any other answer, a connection error or a timeout: the call may have been applied.
    Transient,
    /// Never sent (the connection could not be opened, the participant is not registered):
    /// never applied, and retried like a transient failure.
    NotSent,
    /// Refused locally by resilience policy (open circuit, full bulkhead queue): never sent.
    /// A forward phase fails fast and the saga rolls back; a settle phase waits without
    /// spending its attempt budget.
    Refused,
}

impl CallOutcome {
    /// The name in the audit trail and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Transient => "transient",
            CallOutcome::NotSent => "not_sent",
            CallOutcome::Refused => "refused",
        }
    }
}

/// Which way a saga settles, decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every forward phase succeeded: confirm the TCC steps.
    Commit,
    /// Roll back: undo every step that may have been applied.
    Abort {
        /// Why, for operators (the saga's `error`).
        reason: String,
    },
}

/// The first event of every saga: everything needed to run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Created {
    /// The saga's id: a UUID v7 in canonical form, made by the runtime.
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// The workflow version its plan was resolved from.
    pub workflow_version: u32,
    /// The submitted input, exactly as submitted.
    pub input: Input,
    /// Where the final state is POSTed once terminal, if anywhere.
    pub callback_url: Option<String>,
    /// The submitter's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// What support staff search the saga by (given, or read from the input).
    pub business_key: Option<String>,
    /// Attempts to deliver the completion callback before it is abandoned.
    pub callback_max_attempts: u32,
    /// Shared by every saga of one workflow version (serialised in full in each log).
    pub plan: Arc<Plan>,
    /// The saga's place in a distributed trace: its trace id and the span every branch call
    /// descends from (the submission span), kept so that a restarted coordinator or another
    /// instance continues the same trace. `None` when the submitter sent no `traceparent` and
    /// no span was exported (and in sagas recorded before it existed): the saga id is then the
    /// trace id.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_text")]
    pub trace: Option<TraceParent>,
    /// When the saga was submitted.
    pub at: Millis,
}

/// A trace context in debugging output, as its header text.
fn as_text<S: serde::Serializer>(
    trace: &Option<TraceParent>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match trace {
        Some(trace) => serializer.collect_str(trace),
        None => serializer.serialize_none(),
    }
}

/// Serialised only for traces and debugging; the log's format is `store::format`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The saga's first event: everything needed to run it.
    Created(Box<Created>),
    /// The runtime is about to send this call; from here on it may have been applied.
    CallStarted {
        /// The call.
        call: CallRef,
        /// When it was started.
        at: Millis,
    },
    /// A call's answer, as the dispatcher classified it.
    CallEnded {
        /// The call, as started.
        call: CallRef,
        /// How it ended.
        outcome: CallOutcome,
        /// The participant's HTTP status, when it answered.
        http_status: Option<u16>,
        /// How long the call took, in milliseconds (bulkhead wait included).
        latency_ms: u64,
        /// What went wrong, for operators (`None` on success).
        error: Option<String>,
        /// When to try again if the engine decides to retry (backoff with jitter, chosen by
        /// the runtime so the engine stays deterministic).
        retry_at: Millis,
        /// When the answer arrived.
        at: Millis,
    },
    /// Commit or roll back. Durable before the first confirm, cancel or compensate.
    Decided {
        /// Which way.
        decision: Decision,
        /// When.
        at: Millis,
    },
    /// A settle phase exhausted its attempts; the saga waits for an operator.
    Stuck {
        /// The step whose settle phase gave up.
        step: usize,
        /// Why, for operators (the saga's `error`).
        reason: String,
        /// When.
        at: Millis,
    },
    /// The coordinator restarted: calls that were outstanding may or may not have arrived.
    Resumed {
        /// When the saga was resumed.
        at: Millis,
    },
    /// An operator asked a stuck saga to continue with a fresh budget.
    RetryRequested {
        /// When.
        at: Millis,
    },
    /// An operator asked for an action; the events it causes follow in the same record.
    Operated {
        /// `abort`, `retry`, `retry_now` or `resolve`.
        action: String,
        /// Who asked (an API token's name, or what the request said).
        by: String,
        /// Why, as they said.
        reason: Option<String>,
        /// When.
        at: Millis,
    },
    /// An operator asked that every call waiting on its backoff (and a waiting callback) be
    /// made now.
    RetryNow {
        /// When: the new due time.
        at: Millis,
    },
    /// A person settled a stuck or waiting step by hand; the saga goes on from there.
    StepResolved {
        /// The step.
        step: usize,
        /// What they did.
        resolution: Resolution,
        /// When.
        at: Millis,
    },
    /// Every step settled; the saga is committed or aborted according to its decision.
    Finished {
        /// When.
        at: Millis,
    },
    /// The runtime is about to POST the final state to the saga's `callback_url`.
    CallbackStarted {
        /// Attempt, from 1.
        attempt: u32,
        /// When.
        at: Millis,
    },
    /// A callback attempt's answer.
    CallbackEnded {
        /// Attempt, as started.
        attempt: u32,
        /// The receiver answered `2xx`.
        delivered: bool,
        /// The receiver's HTTP status, when it answered.
        http_status: Option<u16>,
        /// What went wrong (`None` when delivered).
        error: Option<String>,
        /// When to try again if not delivered.
        retry_at: Millis,
        /// When the answer arrived.
        at: Millis,
    },
    /// The callback budget is spent; nobody will be told (an alert is logged).
    CallbackAbandoned {
        /// Why, for operators.
        reason: String,
        /// When.
        at: Millis,
    },
}

impl Event {
    /// When the event happened.
    pub fn at(&self) -> Millis {
        match self {
            Event::Created(c) => c.at,
            Event::CallStarted { at, .. }
            | Event::CallEnded { at, .. }
            | Event::Decided { at, .. }
            | Event::Stuck { at, .. }
            | Event::Resumed { at }
            | Event::RetryRequested { at }
            | Event::Operated { at, .. }
            | Event::RetryNow { at }
            | Event::StepResolved { at, .. }
            | Event::Finished { at }
            | Event::CallbackStarted { at, .. }
            | Event::CallbackEnded { at, .. }
            | Event::CallbackAbandoned { at, .. } => *at,
        }
    }

    /// The name used in errors and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Created(_) => "created",
            Event::CallStarted { .. } => "call_started",
            Event::CallEnded { .. } => "call_ended",
            Event::Decided { .. } => "decided",
            Event::Stuck { .. } => "stuck",
            Event::Resumed { .. } => "resumed",
            Event::RetryRequested { .. } => "retry_requested",
            Event::Operated { .. } => "operated",
            Event::RetryNow { .. } => "retry_now",
            Event::StepResolved { .. } => "step_resolved",
            Event::Finished { .. } => "finished",
            Event::CallbackStarted { .. } => "callback_started",
            Event::CallbackEnded { .. } => "callback_ended",
            Event::CallbackAbandoned { .. } => "callback_abandoned",
        }
    }

    /// Events after which the runtime must reach disk before acting or answering: the
    /// submission, the decision and the outcome (durability rules 1-3 of
    /// `docs/ARCHITECTURE.md`), and the states operators act on: a saga turning stuck (it is
    /// alerted and listed) and an operator's retry (answered once recorded).
    pub fn must_be_durable(&self) -> bool {
        matches!(
            self,
            Event::Created(_)
                | Event::Decided { .. }
                | Event::Finished { .. }
                | Event::Stuck { .. }
                | Event::RetryRequested { .. }
                | Event::Operated { .. }
                | Event::StepResolved { .. }
        )
    }
}
