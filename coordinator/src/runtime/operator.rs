//! Operator requests (abort, retry, retry now, resolve a step by hand): which a saga's state
//! allows, the events each becomes, and a refusal in plain words otherwise.
//!
//! An operator request is not an engine event: it is checked here first, and only an allowed
//! request becomes events: `Operated` (who asked and why, for the audit trail), then its
//! effect (`Decided { Abort }`, `RetryRequested`, `RetryNow`, `StepResolved`). A refusal says
//! what the saga is doing and what the operator can do instead, never an engine transition.

use std::sync::Arc;

use tokio::sync::oneshot;

use sagas::api::{BulkRetry, BulkSkip, Resolution};

use super::active::saga_key;
use super::slot::SagaSlot;
use super::{Runtime, RuntimeError};
use crate::engine::{Decision, Event, Lifecycle, Millis, Saga, StepStatus};
use crate::store::SagaFilter;

/// What an operator asks of one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Roll back a saga that has not decided yet.
    Abort,
    /// Resume a stuck saga with a fresh attempt budget.
    Retry,
    /// Make every call waiting on its backoff now.
    RetryNow,
    /// A person settled step `step` by hand.
    Resolve {
        /// The step's index in the plan.
        step: usize,
        /// What they did.
        resolution: Resolution,
    },
}

impl Action {
    /// The name in the audit trail.
    fn name(self) -> &'static str {
        match self {
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::RetryNow => "retry_now",
            Action::Resolve { .. } => "resolve",
        }
    }
}

/// An operator's request: the action, who asks and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operator {
    /// What they ask.
    pub action: Action,
    /// Who asks (an API token's name, or what the request said; `anonymous` otherwise).
    pub by: String,
    /// Why, as they said.
    pub reason: Option<String>,
}

/// Why an operator request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The saga's state does not allow it (`409`); the message says why in plain words.
    #[error("{0}")]
    NotNow(String),
    /// The coordinator is stopping (`503`); the saga resumes on the next start.
    #[error("the coordinator is shutting down; ask again once it is back")]
    ShuttingDown,
    /// The saga's task stopped on a storage error (`503`); it resumes on the next start.
    #[error("saga {0} stopped on a storage error and resumes on the next start; ask again then")]
    Stopped(String),
    /// Another coordinator of the cluster took the saga over meanwhile (`503`); ask again.
    #[error("saga {0} moved to another coordinator of the cluster; ask again")]
    Moved(String),
}

/// An operator request and where to answer it.
pub(crate) type OperatorRequest = (Operator, oneshot::Sender<Result<(), Refusal>>);

impl Operator {
    /// The events that carry out this request on `saga` at `now` (who asked first, then the
    /// effect), or why it cannot.
    pub(crate) fn events(&self, saga: &Saga, now: Millis) -> Result<Vec<Event>, Refusal> {
        let effect = match (self.action, saga.lifecycle) {
            (Action::Abort, Lifecycle::Running) => Event::Decided {
                decision: Decision::Abort {
                    reason: match &self.reason {
                        Some(reason) => format!("aborted by {}: {reason}", self.by),
                        None => format!("aborted by {}", self.by),
                    },
                },
                at: now,
            },
            (Action::Retry, Lifecycle::Stuck { .. }) => Event::RetryRequested { at: now },
            (Action::RetryNow, _) => {
                let effect = Event::RetryNow { at: now };
                saga.clone()
                    .apply(&effect)
                    .map_err(|_| refusal(self.action, saga))?;
                effect
            }
            (Action::Resolve { step, resolution }, _) => {
                let effect = Event::StepResolved {
                    step,
                    resolution,
                    at: now,
                };
                saga.clone()
                    .apply(&effect)
                    .map_err(|_| refusal(self.action, saga))?;
                effect
            }
            _ => return Err(refusal(self.action, saga)),
        };
        let operated = Event::Operated {
            action: self.action.name().into(),
            by: self.by.clone(),
            reason: self.reason.clone(),
            at: now,
        };
        Ok(vec![operated, effect])
    }
}

/// Why `action` cannot apply to `saga` as it stands, in plain words.
pub(crate) fn refusal(action: Action, saga: &Saga) -> Refusal {
    let id = &saga.id;
    let lifecycle = saga.lifecycle;
    let why = match (action, lifecycle) {
        (Action::Resolve { step, resolution }, _) => resolve_refusal(saga, step, resolution),
        (_, Lifecycle::Stuck { .. }) if action != Action::Retry => format!(
            "saga {id} is stuck: a confirm, cancel or compensate call keeps failing after its \
             decision, so it can no longer be aborted or hurried; fix the participant and retry \
             it, or resolve its steps"
        ),
        (Action::Abort, Lifecycle::Confirming) => format!(
            "saga {id} has already decided to commit and is confirming its steps; it can no \
             longer be aborted"
        ),
        (Action::Abort, Lifecycle::Compensating) => {
            format!("saga {id} is already rolling back; there is nothing more to abort")
        }
        (_, Lifecycle::Committed | Lifecycle::Aborted) => format!(
            "saga {id} has {}; a finished saga cannot be changed",
            lifecycle.name()
        ),
        (Action::Abort, _) => format!("saga {id} is running and can be aborted; ask again"),
        (Action::Retry, _) => format!(
            "saga {id} is not stuck (it is {}): it retries failed calls by itself; only a stuck \
             saga needs an operator's retry",
            lifecycle.name()
        ),
        (Action::RetryNow, _) => format!(
            "saga {id} has no call waiting for a retry (it is {}); retry-now hurries a call \
             that failed and waits on its backoff",
            lifecycle.name()
        ),
    };
    Refusal::NotNow(why)
}

/// Why step `step` of `saga` cannot be resolved as `resolution`, in plain words.
fn resolve_refusal(saga: &Saga, step: usize, resolution: Resolution) -> String {
    let id = &saga.id;
    let Some(state) = saga.steps.get(step) else {
        return format!("saga {id} has no such step");
    };
    let name = &saga.plan.steps[step].name;
    if saga.lifecycle.is_terminal() {
        return format!(
            "saga {id} has {}; its steps can no longer be resolved",
            saga.lifecycle.name()
        );
    }
    let StepStatus::Waiting { phase, .. } = state.status else {
        return format!(
            "step {name} of saga {id} is {}: only a step that is stuck or waiting for a retry \
             can be resolved by hand",
            saga.api_step_status(step).as_str()
        );
    };
    let fits = match resolution {
        Resolution::Succeeded => "its forward call (try or action) while the saga runs",
        Resolution::Confirmed => "its confirm while the saga commits",
        Resolution::Compensated => "its cancel or compensate while the saga rolls back",
    };
    format!(
        "step {name} of saga {id} waits on its {phase} while the saga is {}: a step can be \
         resolved as {} only for {fits}",
        saga.lifecycle.name(),
        resolution.as_str()
    )
}

impl Runtime {
    /// Carries out an operator's request on saga `id` and returns the saga afterwards: once
    /// the events it became are durable, or refused in plain words (`409`).
    pub(crate) async fn operator_request(
        self: &Arc<Self>,
        id: &str,
        op: Operator,
    ) -> Result<Arc<Saga>, RuntimeError> {
        self.operate(id, op).await
    }

    /// Resumes every stuck saga `filter` matches (its `state` is stuck), with `operator`'s
    /// name and reason recorded in each: how many were resumed, and which could not be.
    pub(crate) async fn bulk_retry(
        self: &Arc<Self>,
        filter: &SagaFilter,
        operator: &Operator,
    ) -> Result<BulkRetry, RuntimeError> {
        let mut resumed = 0;
        let mut skipped = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list(filter, cursor.as_deref(), 100).await?;
            let ids: Vec<String> = page.sagas.iter().map(|s| s.id.clone()).collect();
            let outcomes =
                futures::future::join_all(ids.iter().map(|id| self.operate(id, operator.clone())))
                    .await;
            for (id, outcome) in ids.into_iter().zip(outcomes) {
                match outcome {
                    Ok(_) => resumed += 1,
                    Err(e) if skipped.len() < 100 => skipped.push(BulkSkip {
                        id,
                        reason: e.to_string(),
                    }),
                    Err(_) => {}
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(BulkRetry { resumed, skipped })
    }

    /// Hands an operator request to the saga's task and waits for its answer. Every request
    /// is answered: by the task once the round that applied it is durable, or with a refusal
    /// when the saga's state does not allow it or no task will ever take it (the saga settled,
    /// the coordinator is stopping).
    async fn operate(self: &Arc<Self>, id: &str, op: Operator) -> Result<Arc<Saga>, RuntimeError> {
        if self.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        let action = op.action;
        let slot = match self.active.get(id) {
            Some(slot) => slot,
            None => match self.take_over(id).await? {
                Some(slot) => slot,
                None => return self.refuse_inactive(id, action).await,
            },
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if slot.request((op, reply_tx)).is_err() {
            // Its task just stopped for good: the saga settled (or the runtime is stopping).
            let last = slot.state();
            return if last.lifecycle.is_terminal() {
                Err(refusal(action, &last).into())
            } else {
                self.refuse_inactive(id, action).await
            };
        }
        // A parked saga needs its task back to answer.
        if let Some(key) = saga_key(id) {
            self.unpark(key);
        }
        // The sender is always answered or dropped (slot stopped, runtime gone).
        reply_rx.await.map_err(|_| RuntimeError::ShuttingDown)??;
        self.get(id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))
    }

    /// A saga no task of this instance drives: unknown, terminal (which no operator request
    /// changes), or stopped.
    async fn refuse_inactive(&self, id: &str, action: Action) -> Result<Arc<Saga>, RuntimeError> {
        let saga = self
            .get(id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))?;
        Err(refusal(action, &saga).into())
    }

    /// Takes over an active saga another instance of the cluster drives, so that an operator
    /// request on any instance reaches a task: the lease moves here (fencing the old owner's
    /// writes) and the saga resumes from its log. `None` when the saga is not active.
    async fn take_over(self: &Arc<Self>, id: &str) -> Result<Option<Arc<SagaSlot>>, RuntimeError> {
        if self.is_shutting_down() || !self.store.take_over(id).await? {
            return Ok(None);
        }
        // Its participants may have been registered through another instance only.
        self.registry.refresh().await?;
        self.resume(id).await?;
        Ok(self.active.get(id))
    }
}

/// Answers operator requests that no task will take: with a plain-words refusal when the
/// saga is terminal, else `503` (shutting down, or its task stopped on an error).
pub(super) fn answer_unserved(requests: Vec<OperatorRequest>, last: &Saga, shutting_down: bool) {
    for (op, reply) in requests {
        let refusal = if last.lifecycle.is_terminal() {
            refusal(op.action, last)
        } else if shutting_down {
            Refusal::ShuttingDown
        } else {
            Refusal::Stopped(last.id.clone())
        };
        let _ = reply.send(Err(refusal));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CallRef;
    use crate::engine::fixtures::one_step;
    use sagas::Phase;

    fn saga(lifecycle: Lifecycle) -> Saga {
        let mut saga = Saga::create(&one_step("s1", None)).unwrap();
        saga.lifecycle = lifecycle;
        saga
    }

    fn by_alice(action: Action) -> Operator {
        Operator {
            action,
            by: "alice".into(),
            reason: Some("ticket 7".into()),
        }
    }

    /// A one-step saga whose only call failed and waits on its backoff.
    fn waiting() -> Saga {
        let mut saga = saga(Lifecycle::Running);
        let call = CallRef {
            step: 0,
            phase: Phase::Action,
            attempt: 1,
        };
        saga.apply(&Event::CallStarted { call, at: 1 }).unwrap();
        saga.apply(&Event::CallEnded {
            call,
            outcome: crate::engine::CallOutcome::Transient,
            http_status: Some(503),
            latency_ms: 1,
            error: None,
            retry_at: 10_000,
            at: 2,
        })
        .unwrap();
        saga
    }

    #[test]
    fn allowed_requests_become_who_asked_then_the_effect() {
        let events = by_alice(Action::Abort)
            .events(&saga(Lifecycle::Running), 7)
            .unwrap();
        assert!(matches!(&events[0], Event::Operated { by, reason, .. }
            if by == "alice" && reason.as_deref() == Some("ticket 7")));
        assert!(
            matches!(&events[1], Event::Decided { decision: Decision::Abort { reason }, .. }
            if reason == "aborted by alice: ticket 7")
        );
        let events = by_alice(Action::Retry)
            .events(&saga(Lifecycle::Stuck { committing: false }), 7)
            .unwrap();
        assert_eq!(events[1], Event::RetryRequested { at: 7 });
        let events = by_alice(Action::RetryNow).events(&waiting(), 7).unwrap();
        assert_eq!(events[1], Event::RetryNow { at: 7 });
        let resolve = Action::Resolve {
            step: 0,
            resolution: Resolution::Succeeded,
        };
        let events = by_alice(resolve).events(&waiting(), 7).unwrap();
        assert!(matches!(events[1], Event::StepResolved { step: 0, .. }));
    }

    #[test]
    fn refusals_say_why_in_plain_words() {
        let text = |op: Action, saga: &Saga| by_alice(op).events(saga, 7).unwrap_err().to_string();
        let stuck = text(Action::Abort, &saga(Lifecycle::Stuck { committing: true }));
        assert!(stuck.starts_with("saga s1 is stuck:"), "{stuck}");
        assert!(stuck.contains("retry it, or resolve its steps"), "{stuck}");
        for lifecycle in [
            Lifecycle::Confirming,
            Lifecycle::Compensating,
            Lifecycle::Committed,
            Lifecycle::Aborted,
        ] {
            let why = text(Action::Abort, &saga(lifecycle));
            assert!(!why.contains("not allowed while"), "{why}");
        }
        let why = text(Action::Retry, &saga(Lifecycle::Running));
        assert!(why.contains("is not stuck (it is running)"), "{why}");
        let why = text(Action::RetryNow, &saga(Lifecycle::Running));
        assert!(why.contains("has no call waiting for a retry"), "{why}");
        let compensated = Action::Resolve {
            step: 0,
            resolution: Resolution::Compensated,
        };
        let why = text(compensated, &waiting());
        assert!(
            why.contains("only for its cancel or compensate while the saga rolls back"),
            "{why}"
        );
        let why = text(compensated, &saga(Lifecycle::Running));
        assert!(
            why.contains("is pending: only a step that is stuck or waiting"),
            "{why}"
        );
    }
}
