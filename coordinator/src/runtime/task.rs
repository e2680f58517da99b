//! One active saga's task: runs the engine's [`Driver`] round after round, carrying out each
//! [`Ready`] in the driver's order (append, flush, then send), and waits for whatever comes
//! next: a call's answer, an operator request, a timer, shutdown. Each `select!` arm calls a
//! named `handle_*` method.
//!
//! A saga idle for a while (a long backoff, stuck) gives up its task and parks: its slot stays
//! in the active map and its wake-up in [`super::wakeups`]; a due time or an operator request
//! starts a new task from where it parked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::oneshot;

use super::active::{SagaKey, saga_key};
use super::operator::{OperatorRequest, Refusal, answer_unserved, refusal};
use super::slot::{Parked, SagaSlot};
use super::{Runtime, RuntimeError};
use crate::alerts::{AlertFacts, AlertKind};
use crate::dispatch::BranchCall;
use crate::engine::{Driver, Event, Millis, Ready, Saga};
use crate::store::StoreError;
use crate::telemetry;

/// How a saga's task begins.
pub(super) enum TaskStart {
    /// A new submission, durable already: run.
    New,
    /// Found in the log at start-up (or orphaned): record `Resumed`, then run.
    Resumed,
    /// Parked and now due, or asked for by an operator: run on.
    Unparked,
}

/// How a saga's task ended.
enum Exit {
    /// Settled, shutting down, or the runtime let go of it.
    Stopped,
    /// Another instance drives the saga now (its lease moved): leave it without writing.
    Lost,
    /// Nothing in flight and nothing to do before `wake` (never, when `None`): the saga waits
    /// without a task.
    Parked { wake: Option<Millis>, at: Parked },
}

/// A call or callback on its way; resolves to the event that records its answer.
type InFlight = Pin<Box<dyn Future<Output = Event> + Send>>;

impl Runtime {
    /// Starts the saga's task unless one runs already. Returns whether it started one.
    pub(super) fn spawn_saga(
        self: &Arc<Self>,
        saga: Arc<Saga>,
        seq: u64,
        start: TaskStart,
    ) -> bool {
        let Some(key) = saga_key(&saga.id) else {
            tracing::error!(saga = %saga.id, "saga id is not a UUID this runtime made; not run");
            return false;
        };
        let slot = Arc::new(SagaSlot::new(saga.clone()));
        if !self.active.insert(key, slot.clone()) {
            return false;
        }
        telemetry::saga_started(&saga.workflow, saga.lifecycle);
        let at = Parked {
            seq,
            snapshot_seq: seq,
        };
        self.spawn_task(key, slot, saga, at, start);
        true
    }

    /// Runs an active saga's task. When the task parks, the saga stays active (its slot in
    /// the map, its wake-up in `wakeups`); otherwise it leaves.
    fn spawn_task(
        self: &Arc<Self>,
        key: SagaKey,
        slot: Arc<SagaSlot>,
        saga: Arc<Saga>,
        at: Parked,
        start: TaskStart,
    ) {
        let runtime = self.clone();
        let incarnation = self.incarnation();
        self.tasks.spawn(async move {
            let id = saga.id.clone();
            let task = SagaTask {
                incarnation,
                runtime: runtime.clone(),
                driver: Driver::new(saga, at.seq, at.snapshot_seq)
                    .with_snapshot_every(runtime.engine.snapshot_every),
                slot: slot.clone(),
                in_flight: FuturesUnordered::new(),
                replies: Vec::new(),
            };
            match task.run(start).await {
                Ok(Exit::Parked { wake, at }) => {
                    slot.park(at);
                    telemetry::saga_parked(true);
                    if let Some(wake) = wake {
                        runtime.wakeups.add(wake, key);
                    }
                    // A request that came while the task was leaving would wait for nothing.
                    if slot.has_requests() {
                        runtime.unpark(key);
                    }
                    return;
                }
                Ok(Exit::Stopped) => {}
                Ok(Exit::Lost) => {
                    tracing::info!(saga = %id, "saga taken over by another coordinator");
                    for (_, reply) in slot.stop() {
                        let _ = reply.send(Err(Refusal::Moved(id.clone())));
                    }
                    runtime.active.remove(key, &slot);
                    let last = slot.state();
                    telemetry::saga_stopped(&last.workflow, last.lifecycle);
                    return;
                }
                // The saga stays in the active index and resumes on the next start.
                Err(e) => tracing::error!(saga = %id, error = %e, "saga task stopped"),
            }
            let last = slot.state();
            answer_unserved(slot.stop(), &last, runtime.shutdown.is_cancelled());
            runtime.active.remove(key, &slot);
            telemetry::saga_stopped(&last.workflow, last.lifecycle);
        });
    }

    /// Gives a parked saga its task back (a no-op unless it is parked). While shutting down
    /// no task starts, so requests waiting on a parked saga are answered here instead.
    pub(super) fn unpark(self: &Arc<Self>, key: SagaKey) {
        let Some(slot) = self.active.get_key(key) else {
            return;
        };
        if self.shutdown.is_cancelled() {
            if slot.is_parked() {
                answer_unserved(slot.take_requests(false), &slot.state(), true);
            }
            return;
        }
        if let Some(at) = slot.take_parked() {
            telemetry::saga_parked(false);
            let saga = slot.state();
            self.spawn_task(key, slot, saga, at, TaskStart::Unparked);
        }
    }
}

/// One active saga's driver, with what is in flight for it.
struct SagaTask {
    runtime: Arc<Runtime>,
    /// Cancelled when this instance gives up all its sagas (its lease ran out).
    incarnation: tokio_util::sync::CancellationToken,
    driver: Driver,
    slot: Arc<SagaSlot>,
    /// Calls and callbacks sent and not yet answered. They run inside this task rather than
    /// as tasks of their own: no spawn and no channel per call, one wake-up per answer.
    in_flight: FuturesUnordered<InFlight>,
    /// Operator requests answered once the round that applied them is durable.
    replies: Vec<oneshot::Sender<Result<(), Refusal>>>,
}

impl SagaTask {
    async fn run(mut self, start: TaskStart) -> Result<Exit, RuntimeError> {
        let exit = match self.drive(start).await {
            // Another instance drives the saga now: nothing more is written or sent here.
            Err(RuntimeError::Store(StoreError::Fenced(_))) => return Ok(Exit::Lost),
            Ok(Exit::Lost) => return Ok(Exit::Lost),
            other => other?,
        };
        // A graceful stop keeps what the last rounds recorded.
        let (first_seq, events, snapshot) = self.driver.take_unlogged();
        self.persist(first_seq, &events, snapshot)?;
        Ok(exit)
    }

    /// Runs rounds until the saga settles, the runtime stops, or the saga parks.
    async fn drive(&mut self, start: TaskStart) -> Result<Exit, RuntimeError> {
        match start {
            TaskStart::New => {}
            // Calls outstanding before the restart may or may not have arrived.
            TaskStart::Resumed => {
                let (seq, _) = self.driver.position();
                let saga = self.driver.saga().clone();
                self.driver = Driver::resumed(saga, seq, self.runtime.clock.now())?
                    .with_snapshot_every(self.runtime.engine.snapshot_every);
            }
            TaskStart::Unparked => {}
        }
        loop {
            let now = self.runtime.clock.now();
            let ready = self.driver.step(now, self.in_flight.len())?;
            let wake = ready.wake;
            let idle = ready.idle;
            if let Some(exit) = self.handle_ready(ready, now).await? {
                return Ok(exit);
            }
            // Idle for a while (its round is logged, see the driver): wait without a task.
            let park_after = self.runtime.options.park_after;
            if idle
                && !self.slot.has_requests()
                && wake.is_none_or(|at| at.saturating_sub(now) >= crate::clock::millis(park_after))
            {
                debug_assert!(self.driver.unlogged().is_empty(), "an idle round is logged");
                let (seq, snapshot_seq) = self.driver.position();
                return Ok(Exit::Parked {
                    wake,
                    at: Parked { seq, snapshot_seq },
                });
            }
            let sleep = wake.map(|at| tokio::time::sleep_until(self.runtime.clock.instant(at)));
            let slot = self.slot.clone();
            tokio::select! {
                Some(answer) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.handle_answer(answer);
                }
                requests = slot.next_requests() => self.handle_operator_requests(requests, now),
                _ = async { sleep.expect("guarded").await }, if sleep.is_some() => {}
                _ = self.runtime.shutdown.cancelled(), if self.in_flight.is_empty() => {
                    return Ok(Exit::Stopped);
                }
                _ = self.incarnation.cancelled() => return Ok(Exit::Lost),
            }
        }
    }

    /// Carries out one [`Ready`]: persist, flush if it must be durable, publish, report, and
    /// only then send. Returns how the task ends, if it does.
    async fn handle_ready(
        &mut self,
        ready: Ready,
        now: Millis,
    ) -> Result<Option<Exit>, RuntimeError> {
        self.persist(ready.first_seq, &ready.append, ready.snapshot)?;
        if ready.must_flush {
            // Rules 2 and 3: the decision before the calls it leads to, the outcome before
            // anyone hears of it.
            self.runtime.store.flush().await?;
        }
        // A write of this saga was refused (another instance took it over), or this
        // instance's lease may have run out: nothing more is sent from here.
        if self.runtime.store.lost(&self.driver.saga().id)
            || self.incarnation.is_cancelled()
            || !self.runtime.may_send()
        {
            return Ok(Some(Exit::Lost));
        }
        self.slot.publish(self.driver.saga().clone());
        for reply in self.replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
        self.report(&ready, now);
        let saga = self.driver.saga().clone();
        if saga.is_settled() {
            return Ok(Some(Exit::Stopped));
        }
        if self.runtime.shutdown.is_cancelled() {
            // Calls recorded as started but not sent are sent again after the restart.
            return Ok(self.in_flight.is_empty().then_some(Exit::Stopped));
        }
        if let (Some(attempt), Some(url)) = (ready.notify, saga.callback_url.clone()) {
            let body = crate::views::saga_view(&saga);
            let dispatcher = self.runtime.dispatcher.clone();
            let trace = crate::trace_context::saga_trace(&saga.id, saga.trace);
            self.in_flight.push(Box::pin(async move {
                dispatcher.callback(&url, &body, attempt, trace).await
            }));
        }
        for call in ready.calls {
            let branch = BranchCall::new(&saga, call);
            let dispatcher = self.runtime.dispatcher.clone();
            self.in_flight
                .push(Box::pin(async move { dispatcher.send(branch).await }));
        }
        Ok(None)
    }

    /// Appends a round's events as one record and writes the snapshot the driver asked for.
    fn persist(
        &self,
        first_seq: u64,
        events: &[Event],
        snapshot: Option<u64>,
    ) -> Result<(), RuntimeError> {
        let store = &self.runtime.store;
        let saga = self.driver.saga();
        store.append(saga, first_seq, events)?;
        if let Some(seq) = snapshot {
            store.save_snapshot(saga, seq)?;
        }
        Ok(())
    }

    /// Alerts, logs and metrics for what the round changed.
    fn report(&self, ready: &Ready, now: Millis) {
        let saga = self.driver.saga();
        if ready.changes.stuck {
            let reason = saga.error.as_deref().unwrap_or_default();
            tracing::error!(saga = %saga.id, %reason, "ALERT: saga is stuck and needs an operator");
            telemetry::saga_stuck(&saga.workflow);
            self.runtime
                .alerts
                .raise(AlertKind::SagaStuck, stuck_alert(saga, ready));
        }
        if ready.changes.callback_abandoned {
            tracing::error!(saga = %saga.id, url = ?saga.callback_url,
                "ALERT: completion callback abandoned after {} attempts", saga.callback_max_attempts);
            let message = format!(
                "completion callback of saga {} ({}) abandoned after {} attempts: {} was not told \
                 that the saga is {}",
                saga.id,
                saga.workflow,
                saga.callback_max_attempts,
                saga.callback_url.as_deref().unwrap_or("the callback URL"),
                saga.lifecycle.name(),
            );
            self.runtime.alerts.raise(
                AlertKind::CallbackAbandoned,
                AlertFacts {
                    saga_id: Some(saga.id.clone()),
                    workflow: Some(saga.workflow.clone()),
                    message,
                    ..AlertFacts::default()
                },
            );
        }
        if ready.changes.terminal {
            tracing::debug!(saga = %saga.id, state = saga.lifecycle.name(), "saga finished");
            let age = now.saturating_sub(saga.created_at);
            telemetry::saga_finished(
                &saga.workflow,
                saga.lifecycle.name(),
                Duration::from_millis(age),
            );
        }
    }

    /// Records the answer to a call or callback.
    fn handle_answer(&mut self, answer: Event) {
        if let Err(e) = self.driver.record_result(answer) {
            tracing::error!(saga = %self.driver.saga().id, error = %e, "call result dropped");
        }
    }

    /// Applies the operator requests the saga's state allows (answered once durable) and
    /// refuses the others at once.
    fn handle_operator_requests(&mut self, requests: Vec<OperatorRequest>, now: Millis) {
        for (op, reply) in requests {
            let events = match op.events(self.driver.saga(), now) {
                Ok(events) => events,
                Err(refused) => {
                    let _ = reply.send(Err(refused));
                    continue;
                }
            };
            // `events` checked the state, so a refusal here is a bug: say so rather than hang.
            let recorded = events
                .into_iter()
                .try_for_each(|event| self.driver.record_operator(event));
            match recorded {
                Ok(()) => {
                    tracing::info!(saga = %self.driver.saga().id, action = ?op.action, by = %op.by,
                        reason = ?op.reason, "operator request carried out");
                    self.replies.push(reply);
                }
                Err(e) => {
                    let saga = self.driver.saga();
                    tracing::error!(saga = %saga.id, error = %e, "operator request refused by the engine");
                    let _ = reply.send(Err(refusal(op.action, saga)));
                }
            }
        }
    }
}

/// What the alert of a saga that turned stuck this round says: the step whose settle phase
/// gave up (from the round's `Stuck` event), its participant, and why.
fn stuck_alert(saga: &Saga, ready: &Ready) -> AlertFacts {
    let step = ready.append.iter().find_map(|event| match event {
        Event::Stuck { step, .. } => saga.plan.steps.get(*step),
        _ => None,
    });
    let reason = saga.error.as_deref().unwrap_or("no reason recorded");
    let message = match step {
        Some(step) => format!(
            "saga {} ({}) is stuck: step {} at participant {} exhausted its attempts ({reason}); \
             it needs an operator: fix the participant and retry, or resolve the step by hand",
            saga.id, saga.workflow, step.name, step.participant
        ),
        None => format!(
            "saga {} ({}) is stuck ({reason}); it needs an operator: retry it, or resolve the \
             step by hand",
            saga.id, saga.workflow
        ),
    };
    AlertFacts {
        saga_id: Some(saga.id.clone()),
        workflow: Some(saga.workflow.clone()),
        step: step.map(|s| s.name.clone()),
        participant: step.map(|s| s.participant.clone()),
        message,
    }
}
