//! The runtime around the pure engine: one task per active saga runs the engine's round
//! driver ([`crate::engine::Driver`]), carrying out what each round asks (log appends, flushes,
//! branch calls, timers) and feeding the answers back as events.
//!
//! By job:
//! - [`active`]: the map of active sagas and their slots ([`slot`]);
//! - [`submission`]: new sagas and idempotency keys;
//! - [`operator`]: operator requests (abort, retry), answered whatever the saga does;
//! - [`background`]: waking parked sagas ([`wakeups`]) and retention;
//! - [`task`]: the per-saga task;
//! - here: recovery, reads, shutdown.
//!
//! Durability (`docs/ARCHITECTURE.md`): a submission is acknowledged after its first event is
//! flushed; a round that records a decision or a terminal state flushes before it sends the
//! calls that follow or tells anyone; other events are written lazily. After a crash every
//! active saga resumes from its log, and calls that were outstanding are sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use sagas::WorkflowError;

mod active;
mod background;
mod lease;
mod operator;
mod slot;
mod submission;
mod task;
mod wakeups;

use active::ActiveSagas;
pub use operator::Refusal;
use operator::answer_unserved;
pub(crate) use operator::{Action, Operator};
use task::TaskStart;
use wakeups::Wakeups;

use crate::alerts::Alerts;
use crate::clock::Clock;
use crate::config::CoordinatorOptions;
use crate::dispatch::{Dispatcher, Reporting};
use crate::engine::{EngineError, EngineOptions, Event, Millis, Saga};
use crate::otlp::SpanExport;
use crate::outbound::Outbound;
use crate::registry::Registry;
use crate::store::Store;
use crate::store::{SagaFilter, SagaPage, StoreError};

/// Sagas claimed (and loaded) at a time.
const CLAIM_BATCH: usize = 1_000;
/// Sagas of a claim read from the store at once.
const CLAIM_READS: usize = 16;

/// How often `wait_ms` reads the store for a saga another instance drives.
const REMOTE_WAIT_POLL: Duration = Duration::from_millis(20);

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
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry could not be read from the store.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// How the runtime runs sagas (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// A saga with nothing in flight and nothing due for at least this long gives up its task
    /// until it is due (parks), so 100,000 waiting sagas hold a few bytes each instead of a
    /// task each. Default 1 s; 1 ms to an hour.
    pub park_after: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            park_after: Duration::from_secs(1),
        }
    }
}

/// The active sagas of one coordinator and everything that drives them.
pub struct Runtime {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    dispatcher: Arc<Dispatcher>,
    clock: Clock,
    options: RuntimeOptions,
    engine: EngineOptions,
    active: ActiveSagas,
    /// Every saga found active at start-up has been resumed (`/readyz`).
    ready: AtomicBool,
    shutdown: CancellationToken,
    /// Cancelled (and replaced) when this instance gives up all its sagas; see [`lease`].
    incarnation: std::sync::Mutex<CancellationToken>,
    /// Until when (clock milliseconds) this instance's lease is valid by the local clock.
    lease_valid_until: std::sync::atomic::AtomicU64,
    /// The lease loop must join the cluster again as a new incarnation.
    rejoining: AtomicBool,
    /// How long a lease lasts without renewal (clusters only).
    lease: Duration,
    /// Every saga task and background loop, so shutdown can wait for them.
    tasks: TaskTracker,
    wakeups: Wakeups,
    /// Stuck sagas and abandoned callbacks are alerted here.
    alerts: Alerts,
    /// Submissions get spans here, when span export is on.
    spans: Option<SpanExport>,
}

impl Runtime {
    /// A runtime over `store` and `registry`, reading time from `clock`, with the runtime,
    /// engine and callback parts of `options`, alerting and exporting spans as `reporting`
    /// says, calling out as `outbound` allows. `joined`: when (by `clock`) the request that joined a clustered
    /// store was sent; its lease counts from then, however long start-up took since.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        clock: Clock,
        joined: Millis,
        options: &CoordinatorOptions,
        reporting: Reporting,
        outbound: Outbound,
    ) -> Arc<Runtime> {
        let Reporting { alerts, spans } = reporting;
        // A single instance holds its lease forever.
        let lease_valid_until = if store.clustered() {
            crate::clock::later(joined, options.lease.mul_f64(lease::TRUSTED_SHARE))
        } else {
            crate::engine::Millis::MAX
        };
        Arc::new(Runtime {
            dispatcher: Arc::new(Dispatcher::new(
                registry.clone(),
                clock,
                options.callbacks.clone(),
                outbound,
                Reporting {
                    alerts: alerts.clone(),
                    spans: spans.clone(),
                },
            )),
            store,
            registry,
            clock,
            options: options.runtime,
            engine: options.engine,
            active: ActiveSagas::default(),
            ready: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            incarnation: std::sync::Mutex::new(CancellationToken::new()),
            lease_valid_until: std::sync::atomic::AtomicU64::new(lease_valid_until),
            rejoining: AtomicBool::new(false),
            lease: options.lease,
            wakeups: Wakeups::default(),
            tasks: TaskTracker::new(),
            alerts,
            spans,
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

    /// Resumes every active saga this instance is to drive (at start-up: every active saga
    /// of a single instance, the orphans of a cluster). Returns how many; ready afterwards.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RuntimeError> {
        let resumed = self.claim_orphans().await?;
        self.ready.store(true, Ordering::Release);
        Ok(resumed)
    }

    /// Claims and resumes the sagas the store hands this instance. Returns how many.
    pub(crate) async fn claim_orphans(self: &Arc<Self>) -> Result<usize, RuntimeError> {
        let incarnation = self.incarnation();
        let ids = self.store.claim_orphans(CLAIM_BATCH).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // Their participants may have been registered through another instance only.
        self.registry.refresh().await?;
        // Each resume reads the saga from the store: a few at a time, so a large claim
        // (an instance with thousands of sagas died) takes round trips, not their sum.
        let mut resumes = futures::stream::iter(ids)
            .map(|id| {
                let runtime = self.clone();
                async move { runtime.resume(&id).await }
            })
            .buffer_unordered(CLAIM_READS);
        let mut resumed = 0;
        while let Some(outcome) = resumes.next().await {
            // The lease ran out meanwhile: these claims belong to the lost incarnation, and
            // the instance claims again once it rejoined.
            if incarnation.is_cancelled() {
                break;
            }
            if outcome? {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Starts a task for a saga found in the log, unless one runs already or it is settled.
    pub(crate) async fn resume(self: &Arc<Self>, id: &str) -> Result<bool, RuntimeError> {
        if self.active.get(id).is_some() {
            return Ok(false);
        }
        let Some((mut saga, seq)) = self.store.load(id).await? else {
            tracing::warn!(saga = %id, "saga not in the log (a submission lost in a crash before it was acknowledged); skipped");
            return Ok(false);
        };
        if saga.is_settled() {
            self.store.save_snapshot(&saga, seq)?;
            return Ok(false);
        }
        saga.plan = self.registry.intern_plan(&saga.workflow, saga.plan);
        Ok(self.spawn_saga(Arc::new(saga), seq, TaskStart::Resumed))
    }

    /// The saga's current state: live if this instance drives it, else from the store.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<Saga>>, RuntimeError> {
        if let Some(live) = self.live(id) {
            return Ok(Some(live));
        }
        Ok(self.store.load(id).await?.map(|(saga, _)| Arc::new(saga)))
    }

    /// The live state of an active saga.
    fn live(&self, id: &str) -> Option<Arc<Saga>> {
        self.active.get(id).map(|slot| slot.state())
    }

    /// Waits up to `wait` for the saga to become terminal, then returns its state. A saga
    /// another instance drives is read from the store until then.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<Arc<Saga>>, RuntimeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let saga = match self.active.get(id) {
                // Until it is terminal or its task stops: the saga may move to another
                // instance meanwhile (an operator's request through it, this instance's lease
                // running out), and is followed through the store from then on.
                Some(slot) => Some(
                    slot.wait_terminal(
                        deadline.saturating_duration_since(tokio::time::Instant::now()),
                    )
                    .await,
                ),
                None => self.get(id).await?,
            };
            let done = saga.as_ref().is_none_or(|s| s.lifecycle.is_terminal());
            // A stopping instance answers with what it has rather than hold up its shutdown.
            if done || tokio::time::Instant::now() >= deadline || self.shutdown.is_cancelled() {
                return Ok(saga);
            }
            tokio::select! {
                _ = tokio::time::sleep(REMOTE_WAIT_POLL.min(deadline - tokio::time::Instant::now())) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// Every event of the saga in the log.
    pub async fn events(&self, id: &str) -> Result<Vec<(u64, Event)>, RuntimeError> {
        Ok(self.store.events(id).await?)
    }

    /// A page of sagas that pass `filter`; those this instance drives show their live state.
    pub async fn list(
        &self,
        filter: &SagaFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, RuntimeError> {
        let mut page = self.store.list(filter, cursor, limit).await?;
        for saga in &mut page.sagas {
            if let Some(live) = self.live(&saga.id) {
                *saga = (*live).clone();
            }
        }
        Ok(page)
    }

    /// Stops every saga task after in-flight calls finish (or `grace` passes), then flushes.
    /// Operator requests waiting on parked sagas (which get no task now) are answered `503`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        for slot in self.active.all().iter().filter(|slot| slot.is_parked()) {
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
            return;
        }
        // Everything is written: other instances may take the sagas over now.
        if let Err(e) = self.store.leave().await {
            tracing::warn!(error = %e, "could not give up the lease; others wait for it to expire");
        }
    }
}
