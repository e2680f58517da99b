//! The runtime around the pure engine: one task per active saga executes the engine's
//! commands (log appends, branch calls, timers) and feeds results back as events.
//!
//! Durability (DESIGN.md): a submission is acknowledged after its first event is flushed; a
//! round that records a decision or a terminal state flushes before it sends the calls that
//! follow or tells anyone; other events (call started/ended) are written lazily. After a crash
//! every active saga resumes from its log, and calls that were outstanding are sent again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use sagas::WorkflowError;
use sagas::api::SubmitSaga;

mod operator;
mod slot;
mod wakeups;

pub use operator::Refusal;
use operator::{Operator, OperatorRequest};
use slot::{Parked, SagaSlot};
use wakeups::Wakeups;

use crate::clock::Clock;
use crate::dispatch::{BranchCall, Dispatcher};
use crate::engine::{
    CALLBACK_MAX_ATTEMPTS, CallbackStatus, Command, Created, EngineError, Event, Lifecycle, Millis,
    Saga, decide,
};
use crate::registry::{Registry, Store};
use crate::store::{Creation, SNAPSHOT_EVERY, SagaPage, StoreError};
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("unknown workflow {0:?}")]
    UnknownWorkflow(String),
    #[error("workflow cannot run: {0}")]
    Unrunnable(WorkflowError),
    #[error("idempotency key {0:?} was used for a different request")]
    KeyReused(String),
    #[error("unknown saga {0:?}")]
    UnknownSaga(String),
    #[error(transparent)]
    Illegal(#[from] EngineError),
    /// An operator request the saga's state does not allow, or that no task can take now.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// The saga log could not make a submission durable, so it was not accepted.
    #[error("the saga log could not be flushed ({0}); the submission was not accepted")]
    NotDurable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a saga's task begins.
enum TaskStart {
    /// A new submission: flush, tell the submitter it is durable, then run.
    Created(oneshot::Sender<Result<(), RuntimeError>>),
    /// Found in the log at start-up (or orphaned): record `Resumed`, then run.
    Resumed,
    /// Parked (see [`wakeups`]) and now due, or asked for by an operator: run on.
    Unparked,
}

/// How a saga's task ended.
enum Exit {
    /// Settled, shutting down, or the runtime let go of it.
    Stopped,
    /// Nothing in flight and nothing to do before `wake` (never, when `None`): the saga waits
    /// without a task.
    Parked { wake: Option<Millis>, at: Parked },
}

/// Active sagas are found by the 128 bits of their id (a UUID the runtime made), not by
/// another copy of the string: with 100,000 sagas in flight every byte per saga counts.
pub(crate) type SagaKey = u128;

/// The key of a saga id in its canonical form (lowercase, hyphenated); `None` for anything
/// else, which names no saga this runtime made.
fn saga_key(id: &str) -> Option<SagaKey> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut canonical) == id).then_some(uuid.as_u128())
}

/// A saga idle for at least this long gives up its task until it is due.
const PARK_AFTER_MS: Millis = 1_000;

pub struct Runtime {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    dispatcher: Arc<Dispatcher>,
    clock: Clock,
    active: Mutex<HashMap<SagaKey, Arc<SagaSlot>>>,
    ready: AtomicBool,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    wakeups: Wakeups,
}

impl Runtime {
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>, clock: Clock) -> Arc<Runtime> {
        Arc::new(Runtime {
            dispatcher: Arc::new(Dispatcher::new(registry.clone(), clock)),
            store,
            registry,
            clock,
            active: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            wakeups: Wakeups::default(),
            tasks: TaskTracker::new(),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// True once every saga found active at start-up has been resumed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resumes every active saga from the log. Returns how many.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RuntimeError> {
        let ids = self.store.active_ids()?;
        let mut resumed = 0;
        for id in &ids {
            if self.resume(id)? {
                resumed += 1;
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(resumed)
    }

    /// Starts a task for a saga found in the log, unless one runs already or it is settled.
    fn resume(self: &Arc<Self>, id: &str) -> Result<bool, RuntimeError> {
        if self.is_active(id) {
            return Ok(false);
        }
        let Some((mut saga, seq)) = self.store.load(id)? else {
            tracing::error!(saga = %id, "active index names a saga with no snapshot; skipped");
            return Ok(false);
        };
        if saga.is_settled() {
            self.store.save_snapshot(&saga, seq)?;
            return Ok(false);
        }
        saga.plan = self.registry.intern_plan(&saga.workflow, saga.plan);
        Ok(self.spawn_saga(Arc::new(saga), seq, TaskStart::Resumed))
    }

    /// Starts a saga, or returns the one the idempotency key already names. `true` when new.
    /// The saga is durable when this returns.
    pub async fn submit(
        self: &Arc<Self>,
        request: SubmitSaga,
        key: Option<String>,
    ) -> Result<(Arc<Saga>, bool), RuntimeError> {
        if self.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        if let Some(key) = &key
            && let Some(id) = self.store.saga_for_key(key)?
        {
            return self.existing(&id, key, &request).await.map(|s| (s, false));
        }
        let (workflow_version, plan) = self
            .registry
            .resolve(&request.workflow)
            .map_err(RuntimeError::Unrunnable)?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(request.workflow.clone()))?;
        let created = Created {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: request.workflow.clone(),
            workflow_version,
            input: request.input.clone(),
            callback_url: request.callback_url.clone(),
            idempotency_key: key.clone(),
            plan,
            at: self.clock.now(),
        };
        let saga = Saga::create(&created)?;
        match self
            .store
            .create(&Event::Created(Box::new(created)), &saga.id, key.as_deref())?
        {
            Creation::Existing(id) => {
                let key = key.unwrap_or_default();
                self.existing(&id, &key, &request).await.map(|s| (s, false))
            }
            Creation::Created => {
                telemetry::saga_submitted(&saga.workflow);
                let saga = Arc::new(saga);
                let view = saga.clone();
                // The task makes the saga durable before its first call and then tells us.
                // Spawned before any await, so a client hanging up cannot orphan the saga.
                let (durable_tx, durable_rx) = oneshot::channel();
                if self.spawn_saga(saga, 0, TaskStart::Created(durable_tx)) {
                    durable_rx.await.map_err(|_| RuntimeError::ShuttingDown)??;
                } else {
                    // Recovery got to it first; it runs, but we still owe durability.
                    self.store.flush().await?;
                }
                Ok((view, true))
            }
        }
    }

    /// The saga an idempotency key already names, if the request is the same one.
    async fn existing(
        self: &Arc<Self>,
        id: &str,
        key: &str,
        request: &SubmitSaga,
    ) -> Result<Arc<Saga>, RuntimeError> {
        // The first submission may still be waiting for its flush: answer only once durable.
        self.store.flush().await?;
        if self.is_ready() && !self.is_shutting_down() {
            // Normally a no-op; restarts the task of a saga whose task stopped on an error.
            self.resume(id)?;
        }
        let saga = self
            .get(id)?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))?;
        let same = saga.workflow == request.workflow
            && saga.input == request.input
            && saga.callback_url == request.callback_url;
        if same {
            Ok(saga)
        } else {
            Err(RuntimeError::KeyReused(key.into()))
        }
    }

    /// The saga's current state: live if active, else from the store.
    pub fn get(&self, id: &str) -> Result<Option<Arc<Saga>>, RuntimeError> {
        if let Some(live) = self.live(id) {
            return Ok(Some(live));
        }
        Ok(self.store.load(id)?.map(|(saga, _)| Arc::new(saga)))
    }

    /// The live state of an active saga.
    fn live(&self, id: &str) -> Option<Arc<Saga>> {
        self.slot(id).map(|slot| slot.state())
    }

    fn is_active(&self, id: &str) -> bool {
        self.slot(id).is_some()
    }

    /// The slot of an active saga.
    fn slot(&self, id: &str) -> Option<Arc<SagaSlot>> {
        let key = saga_key(id)?;
        self.slot_of(key)
    }

    fn slot_of(&self, key: SagaKey) -> Option<Arc<SagaSlot>> {
        self.active
            .lock()
            .expect("active map poisoned")
            .get(&key)
            .cloned()
    }

    /// Waits up to `wait` for the saga to become terminal, then returns its state.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<Arc<Saga>>, RuntimeError> {
        let slot = self.slot(id);
        if let Some(slot) = slot {
            // The task may stop meanwhile; its last state is still here.
            return Ok(Some(slot.wait_terminal(wait).await));
        }
        self.get(id)
    }

    pub fn events(&self, id: &str) -> Result<Vec<(u64, Event)>, RuntimeError> {
        Ok(self.store.events(id)?)
    }

    /// A page of sagas; active ones show their live state.
    pub fn list(
        &self,
        filter: &dyn Fn(&Saga) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, RuntimeError> {
        let mut page = self.store.list(
            &|stored| match self.live(&stored.id) {
                Some(live) => filter(&live),
                None => filter(stored),
            },
            cursor,
            limit,
        )?;
        for saga in &mut page.sagas {
            if let Some(live) = self.live(&saga.id) {
                *saga = (*live).clone();
            }
        }
        Ok(page)
    }

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
        let not_active = || -> Result<Arc<Saga>, RuntimeError> {
            // Unknown, or already terminal (which no operator request changes).
            let saga = self
                .get(id)?
                .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))?;
            Err(operator::refusal(op, id, saga.lifecycle).into())
        };
        let Some(slot) = self.slot(id) else {
            return not_active();
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if slot.request((op, reply_tx)).is_err() {
            // Its task just stopped for good: the saga settled (or the runtime is stopping).
            return match slot.state().lifecycle {
                lifecycle if lifecycle.is_terminal() => {
                    Err(operator::refusal(op, id, lifecycle).into())
                }
                _ => not_active(),
            };
        }
        // A parked saga needs its task back to answer.
        if let Some(key) = saga_key(id) {
            self.unpark(key);
        }
        // The sender is always answered or dropped (slot stopped, runtime gone).
        reply_rx.await.map_err(|_| RuntimeError::ShuttingDown)??;
        self.get(id)?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))
    }

    /// Starts the saga's task unless one runs already. Returns whether it started one.
    fn spawn_saga(self: &Arc<Self>, saga: Arc<Saga>, seq: u64, start: TaskStart) -> bool {
        let Some(key) = saga_key(&saga.id) else {
            tracing::error!(saga = %saga.id, "saga id is not a UUID this runtime made; not run");
            return false;
        };
        let slot = Arc::new(SagaSlot::new(saga.clone()));
        {
            let mut active = self.active.lock().expect("active map poisoned");
            if active.contains_key(&key) {
                return false;
            }
            active.insert(key, slot.clone());
        }
        telemetry::saga_started();
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
        self.tasks.spawn(async move {
            let id = saga.id.clone();
            let task = SagaTask {
                runtime: runtime.clone(),
                saga,
                seq: at.seq,
                snapshot_seq: at.snapshot_seq,
                unlogged: Vec::new(),
                slot: slot.clone(),
                replies: Vec::new(),
                must_flush: false,
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
                // The saga stays in the active index and resumes on the next start.
                Err(e) => tracing::error!(saga = %id, error = %e, "saga task stopped"),
            }
            let last = slot.state();
            answer_unserved(slot.stop(), &last, runtime.shutdown.is_cancelled());
            runtime
                .active
                .lock()
                .expect("active map poisoned")
                .remove(&key);
            telemetry::saga_stopped();
        });
    }

    /// Gives a parked saga its task back (a no-op unless it is parked). While shutting down
    /// no task starts, so requests waiting on a parked saga are answered here instead.
    fn unpark(self: &Arc<Self>, key: SagaKey) {
        let Some(slot) = self.slot_of(key) else {
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

    /// Wakes parked sagas when they are due, until shutdown.
    pub fn start_wakeups(self: &Arc<Self>) {
        let runtime = self.clone();
        self.tasks.spawn(async move {
            loop {
                let (due, next) = runtime.wakeups.take_due(runtime.clock.now());
                for key in due {
                    runtime.unpark(key);
                }
                let sleep = next.map(|at| tokio::time::sleep_until(runtime.clock.instant(at)));
                tokio::select! {
                    _ = runtime.wakeups.earlier_added() => {}
                    _ = async { sleep.expect("guarded").await }, if sleep.is_some() => {}
                    _ = runtime.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Deletes settled sagas older than `retention`, checking every `every`, until shutdown.
    pub fn start_retention(self: &Arc<Self>, retention: Duration, every: Duration) {
        let runtime = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = runtime.shutdown.cancelled() => return,
                }
                let cutoff = runtime
                    .clock
                    .now()
                    .saturating_sub(retention.as_millis() as Millis);
                // In slices, so a large backlog never holds up the log for long.
                loop {
                    match runtime.store.expire_finished(cutoff, 1_000) {
                        Ok(0) => break,
                        Ok(n) => {
                            tracing::debug!(expired = n, "finished sagas past retention removed")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "retention sweep failed");
                            break;
                        }
                    }
                    tokio::task::yield_now().await;
                }
            }
        });
    }

    /// Stops every saga task after in-flight calls finish (or `grace` passes), then flushes.
    /// Operator requests waiting on parked sagas (which get no task now) are answered `503`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        let slots: Vec<Arc<SagaSlot>> = self
            .active
            .lock()
            .expect("active map poisoned")
            .values()
            .cloned()
            .collect();
        for slot in slots.iter().filter(|slot| slot.is_parked()) {
            answer_unserved(slot.take_requests(false), &slot.state(), true);
        }
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over with saga tasks still running; they resume on restart"
            );
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Answers operator requests that no task will take: with a plain-words refusal when the
/// saga is terminal, else `503` (shutting down, or its task stopped on an error).
fn answer_unserved(requests: Vec<OperatorRequest>, last: &Saga, shutting_down: bool) {
    for (op, reply) in requests {
        let refusal = if last.lifecycle.is_terminal() {
            operator::refusal(op, &last.id, last.lifecycle)
        } else if shutting_down {
            Refusal::ShuttingDown
        } else {
            Refusal::Stopped(last.id.clone())
        };
        let _ = reply.send(Err(refusal));
    }
}

/// One active saga's driver.
struct SagaTask {
    runtime: Arc<Runtime>,
    /// Shared with the published view until the next change (copy on write), so a
    /// waiting saga is held once.
    saga: Arc<Saga>,
    /// The last event in the log (appended, not necessarily durable).
    seq: u64,
    /// The last event a snapshot includes (or the task started from).
    snapshot_seq: u64,
    /// Events applied but not yet appended; they go to the log as one record.
    unlogged: Vec<Event>,
    slot: Arc<SagaSlot>,
    /// Operator requests answered once the round that applied them is durable.
    replies: Vec<oneshot::Sender<Result<(), Refusal>>>,
    /// An event recorded since the last flush must be durable before anything is sent.
    must_flush: bool,
}

impl SagaTask {
    /// Applies an event and queues it for the next log record.
    fn record(&mut self, event: Event) -> Result<(), RuntimeError> {
        Arc::make_mut(&mut self.saga).apply(&event)?;
        self.unlogged.push(event);
        Ok(())
    }

    /// Appends the unlogged events as one record, and a snapshot when the saga settled or
    /// its log grew long since the last one.
    fn append_unlogged(&mut self) -> Result<(), RuntimeError> {
        if self.unlogged.is_empty() {
            return Ok(());
        }
        let store = &self.runtime.store;
        store.append(&self.saga.id, self.seq + 1, &self.unlogged)?;
        self.seq += self.unlogged.len() as u64;
        // Not `clear`: a waiting saga should not keep the capacity of its busiest round.
        self.unlogged = Vec::new();
        if self.saga.is_settled() || self.seq - self.snapshot_seq >= SNAPSHOT_EVERY {
            store.save_snapshot(&self.saga, self.seq)?;
            self.snapshot_seq = self.seq;
        }
        Ok(())
    }

    /// Applies the operator requests the saga's state allows (answered once durable) and
    /// refuses the others at once.
    fn handle_operator_requests(&mut self, requests: Vec<OperatorRequest>, now: Millis) {
        for (op, reply) in requests {
            let event = match op.event(&self.saga, now) {
                Ok(event) => event,
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                    continue;
                }
            };
            match Arc::make_mut(&mut self.saga).apply(&event) {
                Ok(()) => {
                    self.must_flush |= event.must_be_durable();
                    self.unlogged.push(event);
                    if op == Operator::Retry {
                        tracing::info!(saga = %self.saga.id, "operator retry of a stuck saga");
                    }
                    self.replies.push(reply);
                }
                // `event` checked the state, so this is a bug; say so rather than hang.
                Err(e) => {
                    tracing::error!(saga = %self.saga.id, error = %e, "operator request refused by the engine");
                    let refusal = operator::refusal(op, &self.saga.id, self.saga.lifecycle);
                    let _ = reply.send(Err(refusal));
                }
            }
        }
    }

    async fn run(mut self, start: TaskStart) -> Result<Exit, RuntimeError> {
        let exit = self.drive(start).await?;
        // A graceful stop keeps what the last rounds recorded.
        self.append_unlogged()?;
        Ok(exit)
    }

    /// Runs rounds until the saga settles, the runtime stops, or the saga parks.
    async fn drive(&mut self, start: TaskStart) -> Result<Exit, RuntimeError> {
        match start {
            // Rule 1: durable before acknowledged, and before any participant hears of it.
            TaskStart::Created(durable) => {
                if let Err(e) = self.runtime.store.flush().await {
                    let _ = durable.send(Err(RuntimeError::NotDurable(e.to_string())));
                    return Err(e.into());
                }
                let _ = durable.send(Ok(()));
            }
            // Calls outstanding before the restart may or may not have arrived.
            TaskStart::Resumed => {
                let now = self.runtime.clock.now();
                self.record(Event::Resumed { at: now })?;
            }
            TaskStart::Unparked => {}
        }
        let mut in_flight: FuturesUnordered<Pin<Box<dyn Future<Output = Event> + Send>>> =
            FuturesUnordered::new();
        loop {
            let now = self.runtime.clock.now();
            let lifecycle_before = self.saga.lifecycle;
            let callback_before = self.saga.callback;
            let was_terminal = lifecycle_before.is_terminal();
            let mut calls = Vec::new();
            let mut notify = None;
            let wake = loop {
                let mut progressed = false;
                let mut wake = None;
                for command in decide(&self.saga, now) {
                    match command {
                        Command::Record(event) => {
                            self.must_flush |= event.must_be_durable();
                            self.record(event)?;
                            progressed = true;
                        }
                        Command::Call(call) => {
                            self.record(Event::CallStarted { call, at: now })?;
                            calls.push(call);
                            progressed = true;
                        }
                        Command::Notify { attempt } => {
                            self.record(Event::CallbackStarted { attempt, at: now })?;
                            notify = Some(attempt);
                            progressed = true;
                        }
                        Command::WakeAt(at) => wake = Some(at),
                    }
                }
                if !progressed {
                    break wake;
                }
            };
            // Rule 4: rounds in between may stay in memory, which after a crash is the same as
            // an unflushed tail. They are logged with the next durable round, or when the saga
            // goes idle (a retry backoff, stuck), so a waiting saga's log is complete.
            let idle = in_flight.is_empty() && calls.is_empty() && notify.is_none();
            if self.must_flush || idle || self.saga.is_settled() {
                self.append_unlogged()?;
            }
            if self.must_flush {
                // Rules 2 and 3: the decision before the calls it leads to, the outcome before
                // anyone hears of it.
                self.runtime.store.flush().await?;
                self.must_flush = false;
            }
            self.slot.publish(self.saga.clone());
            for reply in self.replies.drain(..) {
                let _ = reply.send(Ok(()));
            }
            if matches!(self.saga.lifecycle, Lifecycle::Stuck { .. })
                && !matches!(lifecycle_before, Lifecycle::Stuck { .. })
            {
                let reason = self.saga.error.as_deref().unwrap_or_default();
                tracing::error!(saga = %self.saga.id, %reason, "ALERT: saga is stuck and needs an operator");
                telemetry::saga_stuck(&self.saga.workflow);
            }
            if self.saga.callback == CallbackStatus::Abandoned
                && callback_before != CallbackStatus::Abandoned
            {
                tracing::error!(saga = %self.saga.id, url = ?self.saga.callback_url,
                    "ALERT: completion callback abandoned after {CALLBACK_MAX_ATTEMPTS} attempts");
            }
            if self.saga.lifecycle.is_terminal() && !was_terminal {
                tracing::debug!(saga = %self.saga.id, state = self.saga.lifecycle.name(), "saga finished");
                let age = self
                    .runtime
                    .clock
                    .now()
                    .saturating_sub(self.saga.created_at);
                telemetry::saga_finished(
                    &self.saga.workflow,
                    self.saga.lifecycle.name(),
                    Duration::from_millis(age),
                );
            }
            if self.saga.is_settled() {
                return Ok(Exit::Stopped);
            }
            if self.runtime.shutdown.is_cancelled() {
                // Calls recorded as started but not sent are sent again after the restart.
                if in_flight.is_empty() {
                    return Ok(Exit::Stopped);
                }
                calls.clear();
                notify = None;
            }
            // Idle for a while (its round is logged, see above): wait without a task.
            if idle
                && !self.slot.has_requests()
                && wake.is_none_or(|at| at.saturating_sub(now) >= PARK_AFTER_MS)
            {
                debug_assert!(self.unlogged.is_empty(), "an idle round is logged");
                return Ok(Exit::Parked {
                    wake,
                    at: Parked {
                        seq: self.seq,
                        snapshot_seq: self.snapshot_seq,
                    },
                });
            }
            // Calls run inside this task rather than as tasks of their own: no spawn and no
            // channel per call, and one wake-up when an answer arrives.
            if let (Some(attempt), Some(url)) = (notify, self.saga.callback_url.clone()) {
                let body = crate::views::saga_view(&self.saga);
                let dispatcher = self.runtime.dispatcher.clone();
                in_flight.push(Box::pin(async move {
                    dispatcher.callback(&url, &body, attempt).await
                }));
            }
            for call in calls {
                let branch = BranchCall::new(&self.saga, call);
                let dispatcher = self.runtime.dispatcher.clone();
                in_flight.push(Box::pin(async move { dispatcher.send(branch).await }));
            }
            let sleep =
                wake.map(|at: Millis| tokio::time::sleep_until(self.runtime.clock.instant(at)));
            let slot = self.slot.clone();
            tokio::select! {
                Some(event) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(e) = self.record(event) {
                        tracing::error!(saga = %self.saga.id, error = %e, "call result dropped");
                    }
                }
                requests = slot.next_requests() => self.handle_operator_requests(requests, now),
                _ = async { sleep.expect("guarded").await }, if sleep.is_some() => {}
                _ = self.runtime.shutdown.cancelled(), if in_flight.is_empty() => return Ok(Exit::Stopped),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::saga_key;

    #[test]
    fn only_canonical_uuid_ids_have_a_key() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            saga_key(&id),
            Some(uuid::Uuid::parse_str(&id).unwrap().as_u128())
        );
        assert_eq!(saga_key(&id.to_uppercase()), None);
        assert_eq!(saga_key(&format!("{{{id}}}")), None);
        assert_eq!(saga_key(&id.replace('-', "")), None);
        assert_eq!(saga_key("s1"), None);
    }
}
