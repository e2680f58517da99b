//! Operator requests (abort, retry): which a saga's state allows, the event each becomes, and
//! a refusal in plain words otherwise.
//!
//! An operator request is not an engine event: it is checked here first, and only an allowed
//! request becomes one (`Decided { Abort }`, `RetryRequested`). A refusal says what the saga is
//! doing and what the operator can do instead, never an engine transition name.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::active::saga_key;
use super::slot::SagaSlot;
use super::{Runtime, RuntimeError};
use crate::engine::{Decision, Event, Lifecycle, Millis, Saga};

/// What an operator asks of one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    /// Roll back a saga that has not decided yet.
    Abort,
    /// Resume a stuck saga with a fresh attempt budget.
    Retry,
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
    /// The event that carries out this request on `saga` at `now`, or why it cannot.
    pub(crate) fn event(self, saga: &Saga, now: Millis) -> Result<Event, Refusal> {
        match (self, saga.lifecycle) {
            (Operator::Abort, Lifecycle::Running) => Ok(Event::Decided {
                decision: Decision::Abort {
                    reason: "aborted by operator".into(),
                },
                at: now,
            }),
            (Operator::Retry, Lifecycle::Stuck { .. }) => Ok(Event::RetryRequested { at: now }),
            (op, lifecycle) => Err(refusal(op, &saga.id, lifecycle)),
        }
    }
}

/// Why `op` cannot apply to saga `id` while it is `lifecycle`, in plain words.
pub(crate) fn refusal(op: Operator, id: &str, lifecycle: Lifecycle) -> Refusal {
    let why = match (op, lifecycle) {
        (_, Lifecycle::Stuck { .. }) => format!(
            "saga {id} is stuck: a confirm, cancel or compensate call keeps failing after its \
             decision, so it can no longer be aborted; fix the participant and retry it, or \
             resolve its steps"
        ),
        (Operator::Abort, Lifecycle::Confirming) => format!(
            "saga {id} has already decided to commit and is confirming its steps; it can no \
             longer be aborted"
        ),
        (Operator::Abort, Lifecycle::Compensating) => {
            format!("saga {id} is already rolling back; there is nothing more to abort")
        }
        (Operator::Abort, Lifecycle::Committed) => {
            format!("saga {id} has committed; a finished saga cannot be aborted")
        }
        (Operator::Abort, Lifecycle::Aborted) => format!("saga {id} is already aborted"),
        (Operator::Abort, Lifecycle::Running) => {
            format!("saga {id} is running and can be aborted; ask again")
        }
        (Operator::Retry, Lifecycle::Committed | Lifecycle::Aborted) => format!(
            "saga {id} has {}; a finished saga cannot be retried",
            lifecycle.name()
        ),
        (Operator::Retry, _) => format!(
            "saga {id} is not stuck (it is {}): it retries failed calls by itself; only a stuck \
             saga needs an operator's retry",
            lifecycle.name()
        ),
    };
    Refusal::NotNow(why)
}

impl Runtime {
    /// Rolls back a saga that has not decided yet.
    pub async fn abort(self: &Arc<Self>, id: &str) -> Result<Arc<Saga>, RuntimeError> {
        self.operate(id, Operator::Abort).await
    }

    /// Resumes a stuck saga with a fresh attempt budget.
    pub async fn retry(self: &Arc<Self>, id: &str) -> Result<Arc<Saga>, RuntimeError> {
        self.operate(id, Operator::Retry).await
    }

    /// Hands an operator request to the saga's task and waits for its answer. Every request
    /// is answered: by the task once the round that applied it is durable, or with a refusal
    /// when the saga's state does not allow it or no task will ever take it (the saga settled,
    /// the coordinator is stopping).
    async fn operate(self: &Arc<Self>, id: &str, op: Operator) -> Result<Arc<Saga>, RuntimeError> {
        if self.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        let slot = match self.active.get(id) {
            Some(slot) => slot,
            None => match self.take_over(id).await? {
                Some(slot) => slot,
                None => return self.refuse_inactive(id, op).await,
            },
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if slot.request((op, reply_tx)).is_err() {
            // Its task just stopped for good: the saga settled (or the runtime is stopping).
            return match slot.state().lifecycle {
                lifecycle if lifecycle.is_terminal() => Err(refusal(op, id, lifecycle).into()),
                _ => self.refuse_inactive(id, op).await,
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
    async fn refuse_inactive(&self, id: &str, op: Operator) -> Result<Arc<Saga>, RuntimeError> {
        let saga = self
            .get(id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))?;
        Err(refusal(op, id, saga.lifecycle).into())
    }

    /// Takes over an active saga another instance of the cluster drives, so that an operator
    /// request on any instance reaches a task: the lease moves here (fencing the old owner's
    /// writes) and the saga resumes from its log. `None` when the saga is not active.
    async fn take_over(self: &Arc<Self>, id: &str) -> Result<Option<Arc<SagaSlot>>, RuntimeError> {
        if self.is_shutting_down() || !self.store.take_over(id).await? {
            return Ok(None);
        }
        self.resume(id).await?;
        Ok(self.active.get(id))
    }
}

/// Answers operator requests that no task will take: with a plain-words refusal when the
/// saga is terminal, else `503` (shutting down, or its task stopped on an error).
pub(super) fn answer_unserved(requests: Vec<OperatorRequest>, last: &Saga, shutting_down: bool) {
    for (op, reply) in requests {
        let refusal = if last.lifecycle.is_terminal() {
            refusal(op, &last.id, last.lifecycle)
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

    fn saga(lifecycle: Lifecycle) -> Saga {
        let mut saga = Saga::create(&crate::engine::fixtures::one_step("s1", None)).unwrap();
        saga.lifecycle = lifecycle;
        saga
    }

    #[test]
    fn allowed_requests_become_events_and_others_are_refused_in_plain_words() {
        assert!(matches!(
            Operator::Abort.event(&saga(Lifecycle::Running), 7),
            Ok(Event::Decided { at: 7, .. })
        ));
        assert_eq!(
            Operator::Retry.event(&saga(Lifecycle::Stuck { committing: false }), 7),
            Ok(Event::RetryRequested { at: 7 })
        );
        let stuck = Operator::Abort
            .event(&saga(Lifecycle::Stuck { committing: true }), 7)
            .unwrap_err()
            .to_string();
        assert!(stuck.starts_with("saga s1 is stuck:"), "{stuck}");
        assert!(stuck.contains("retry it, or resolve its steps"), "{stuck}");
        for lifecycle in [
            Lifecycle::Confirming,
            Lifecycle::Compensating,
            Lifecycle::Committed,
            Lifecycle::Aborted,
        ] {
            let why = Operator::Abort.event(&saga(lifecycle), 7).unwrap_err();
            assert!(!why.to_string().contains("not allowed while"), "{why}");
        }
        let why = Operator::Retry
            .event(&saga(Lifecycle::Running), 7)
            .unwrap_err()
            .to_string();
        assert!(why.contains("is not stuck (it is running)"), "{why}");
    }
}
