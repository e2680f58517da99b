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

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use sagas::WorkflowError;

mod active;
mod background;
mod operator;
mod slot;
mod submission;
mod task;
mod wakeups;

use active::ActiveSagas;
pub use operator::Refusal;
use operator::answer_unserved;
use task::TaskStart;
use wakeups::Wakeups;

use crate::clock::Clock;
use crate::config::CoordinatorOptions;
use crate::dispatch::Dispatcher;
use crate::engine::{EngineError, EngineOptions, Event, Saga};
use crate::registry::{Registry, Store};
use crate::store::{SagaPage, StoreError};

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
    /// Every saga task and background loop, so shutdown can wait for them.
    tasks: TaskTracker,
    wakeups: Wakeups,
}

impl Runtime {
    /// A runtime over `store` and `registry`, reading time from `clock`, with the runtime,
    /// engine and callback parts of `options`.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        clock: Clock,
        options: &CoordinatorOptions,
    ) -> Arc<Runtime> {
        Arc::new(Runtime {
            dispatcher: Arc::new(Dispatcher::new(
                registry.clone(),
                clock,
                options.callbacks.clone(),
            )),
            store,
            registry,
            clock,
            options: options.runtime,
            engine: options.engine,
            active: ActiveSagas::default(),
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
        if self.active.get(id).is_some() {
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

    /// The saga's current state: live if active, else from the store.
    pub fn get(&self, id: &str) -> Result<Option<Arc<Saga>>, RuntimeError> {
        if let Some(live) = self.live(id) {
            return Ok(Some(live));
        }
        Ok(self.store.load(id)?.map(|(saga, _)| Arc::new(saga)))
    }

    /// The live state of an active saga.
    fn live(&self, id: &str) -> Option<Arc<Saga>> {
        self.active.get(id).map(|slot| slot.state())
    }

    /// Waits up to `wait` for the saga to become terminal, then returns its state.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<Arc<Saga>>, RuntimeError> {
        if let Some(slot) = self.active.get(id) {
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
        }
    }
}
