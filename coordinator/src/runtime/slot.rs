//! What the runtime and one saga's task share: the saga's latest published state (for reads
//! and `wait_ms`) and the operator requests waiting for the task.
//!
//! One small allocation per active saga. A channel per saga preallocates room for 32 messages
//! and a watch channel carries eight wait lists; with 100,000 sagas in flight those were a
//! third of the coordinator's memory, for requests that almost never come.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::operator::OperatorRequest;
use crate::engine::Saga;

/// Where a parked saga's log stands; its state is the slot's published state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parked {
    pub seq: u64,
    pub snapshot_seq: u64,
}

/// Operator requests waiting for the task, and whether any task will take them.
#[derive(Default)]
struct Requests {
    waiting: Vec<OperatorRequest>,
    /// The task stopped for good (settled, shutdown, error): new requests are refused at
    /// once instead of waiting for a task that will never come.
    closed: bool,
}

pub(super) struct SagaSlot {
    state: Mutex<Arc<Saga>>,
    /// The task stopped; its last published state is final for this process.
    stopped: AtomicBool,
    /// Wakes `wait_terminal` callers when the saga turns terminal or its task stops.
    finished: Notify,
    requests: Mutex<Requests>,
    /// Wakes the task; keeps a permit when the task is busy, so no request is missed.
    request_added: Notify,
    /// Set while the saga has no task (see `wakeups`); taken by whoever restarts it.
    parked: Mutex<Option<Parked>>,
}

impl SagaSlot {
    pub(super) fn new(saga: Arc<Saga>) -> SagaSlot {
        SagaSlot {
            state: Mutex::new(saga),
            stopped: AtomicBool::new(false),
            finished: Notify::new(),
            requests: Mutex::new(Requests::default()),
            request_added: Notify::new(),
            parked: Mutex::new(None),
        }
    }

    pub(super) fn park(&self, parked: Parked) {
        *self.parked.lock().expect("saga slot poisoned") = Some(parked);
    }

    /// Whether the saga waits without a task right now.
    pub(super) fn is_parked(&self) -> bool {
        self.parked.lock().expect("saga slot poisoned").is_some()
    }

    /// The parked position, once: of two callers racing to restart the saga, one wins.
    pub(super) fn take_parked(&self) -> Option<Parked> {
        self.parked.lock().expect("saga slot poisoned").take()
    }

    pub(super) fn has_requests(&self) -> bool {
        !self
            .requests
            .lock()
            .expect("saga slot poisoned")
            .waiting
            .is_empty()
    }

    /// The latest published state.
    pub(super) fn state(&self) -> Arc<Saga> {
        self.state.lock().expect("saga slot poisoned").clone()
    }

    pub(super) fn publish(&self, saga: Arc<Saga>) {
        let terminal = saga.lifecycle.is_terminal();
        let to = saga.lifecycle;
        let previous =
            std::mem::replace(&mut *self.state.lock().expect("saga slot poisoned"), saga);
        crate::telemetry::saga_moved(&previous.workflow, previous.lifecycle, to);
        if terminal {
            self.finished.notify_waiters();
        }
    }

    /// The task is gone for good: wake every waiter, and hand back the requests no task will
    /// take (the caller answers them); later requests are refused by [`SagaSlot::request`].
    pub(super) fn stop(&self) -> Vec<OperatorRequest> {
        self.stopped.store(true, Ordering::Release);
        self.finished.notify_waiters();
        self.take_requests(true)
    }

    /// The waiting requests, taken (answer them); with `close`, later ones are refused too.
    pub(super) fn take_requests(&self, close: bool) -> Vec<OperatorRequest> {
        let mut requests = self.requests.lock().expect("saga slot poisoned");
        requests.closed |= close;
        std::mem::take(&mut requests.waiting)
    }

    /// The state once terminal (or the task stopped), or the latest after `within`.
    pub(super) async fn wait_terminal(&self, within: Duration) -> Arc<Saga> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            // Registered before the check, so a publish between the two is not missed.
            notified.as_mut().enable();
            let state = self.state();
            if state.lifecycle.is_terminal() || self.stopped.load(Ordering::Acquire) {
                return state;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.state();
            }
        }
    }

    /// Queues a request for the task; hands it back when the task stopped for good.
    pub(super) fn request(&self, request: OperatorRequest) -> Result<(), OperatorRequest> {
        let mut requests = self.requests.lock().expect("saga slot poisoned");
        if requests.closed {
            return Err(request);
        }
        requests.waiting.push(request);
        drop(requests);
        self.request_added.notify_one();
        Ok(())
    }

    /// The requests waiting, once there is at least one. Cancel-safe: requests are taken
    /// only by a poll that returns them.
    pub(super) async fn next_requests(&self) -> Vec<OperatorRequest> {
        loop {
            let taken = self.take_requests(false);
            if !taken.is_empty() {
                return taken;
            }
            self.request_added.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::engine::{Event, Lifecycle};
    use crate::runtime::operator::{Action, Operator};

    fn ask(action: Action) -> Operator {
        Operator {
            action,
            by: "test".into(),
            reason: None,
        }
    }

    fn running() -> Arc<Saga> {
        Arc::new(Saga::create(&crate::engine::fixtures::one_step("s1", None)).unwrap())
    }

    fn aborted() -> Arc<Saga> {
        let mut saga = (*running()).clone();
        saga.apply(&Event::Decided {
            decision: crate::engine::Decision::Abort {
                reason: "test".into(),
            },
            at: 1,
        })
        .unwrap();
        saga.apply(&Event::Finished { at: 2 }).unwrap();
        assert_eq!(saga.lifecycle, Lifecycle::Aborted);
        Arc::new(saga)
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_when_the_saga_turns_terminal() {
        let slot = Arc::new(SagaSlot::new(running()));
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait_terminal(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        // A non-terminal publish does not end the wait.
        slot.publish(running());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        slot.publish(aborted());
        let state = waiter.await.unwrap();
        assert_eq!(state.lifecycle, Lifecycle::Aborted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_latest_state_on_timeout_or_when_the_task_stops() {
        let slot = Arc::new(SagaSlot::new(running()));
        let state = slot.wait_terminal(Duration::from_millis(50)).await;
        assert_eq!(state.lifecycle, Lifecycle::Running);

        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait_terminal(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        slot.stop();
        let state = waiter.await.unwrap();
        assert_eq!(state.lifecycle, Lifecycle::Running);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_made_while_the_task_is_busy_are_all_delivered() {
        let slot = SagaSlot::new(running());
        let (abort_tx, _abort_rx) = oneshot::channel();
        let (retry_tx, _retry_rx) = oneshot::channel();
        slot.request((ask(Action::Abort), abort_tx)).unwrap();
        slot.request((ask(Action::Retry), retry_tx)).unwrap();
        let ops: Vec<Action> = slot
            .next_requests()
            .await
            .into_iter()
            .map(|r| r.0.action)
            .collect();
        assert_eq!(ops, vec![Action::Abort, Action::Retry]);
        // Nothing left: the next wait blocks until another request.
        let next = tokio::time::timeout(Duration::from_millis(10), slot.next_requests()).await;
        assert!(next.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_slot_hands_back_waiting_requests_and_refuses_new_ones() {
        let slot = SagaSlot::new(running());
        let (waiting_tx, _waiting_rx) = oneshot::channel();
        slot.request((ask(Action::Abort), waiting_tx)).unwrap();
        let handed_back = slot.stop();
        assert_eq!(
            handed_back.len(),
            1,
            "the waiting request comes back to be answered"
        );
        let (late_tx, _late_rx) = oneshot::channel();
        let refused = slot.request((ask(Action::Abort), late_tx));
        assert!(
            refused.is_err(),
            "no task will ever take a request after stop"
        );
        assert!(!slot.has_requests());
    }
}
