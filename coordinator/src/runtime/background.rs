//! The runtime's background loops: waking parked sagas when they are due, removing settled
//! sagas past their retention, moving settled sagas to the store's archive, and keeping the
//! metrics recorder's memory bounded.

use std::sync::Arc;
use std::time::Duration;

use super::Runtime;
use crate::clock;
use crate::store::{Store, StoreError};

impl Runtime {
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
                let cutoff = runtime.clock.now().saturating_sub(clock::millis(retention));
                // In slices, so a large backlog never holds up the log for long; on a blocking
                // thread, since the embedded store's sweep reads and commits as it goes. The
                // store's future is awaited there with `Handle::block_on` (allowed on a
                // blocking thread; PostgreSQL's I/O is still driven by the runtime), and for
                // sled it has done its work by the time it is made.
                loop {
                    let handle = tokio::runtime::Handle::current();
                    let slice = runtime
                        .on_blocking_thread("retention sweep", move |store| {
                            handle.block_on(store.expire_finished(cutoff, 1_000))
                        })
                        .await;
                    match slice {
                        Some(0) | None => break,
                        Some(n) => {
                            tracing::debug!(expired = n, "finished sagas past retention removed")
                        }
                    }
                    if runtime.shutdown.is_cancelled() {
                        return;
                    }
                }
            }
        });
    }

    /// Moves settled sagas off the log's hot structures every `every`, until shutdown (see
    /// [`crate::store::SagaLog::archive_settled`]; a store without an archive does nothing).
    /// On a blocking thread: a move ends in a durable commit.
    pub fn start_archiving(self: &Arc<Self>, every: Duration) {
        /// Sagas moved per commit: enough that a commit's fsync is shared by many.
        const BATCH: usize = 10_000;
        let runtime = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = runtime.shutdown.cancelled() => return,
                }
                // Batch after batch while they come full (a backlog), unless shutting down.
                while !runtime.shutdown.is_cancelled() {
                    let moved = runtime
                        .on_blocking_thread("moving settled sagas to the archive", |store| {
                            store.archive_settled(BATCH)
                        })
                        .await;
                    let Some(moved) = moved else { break };
                    crate::telemetry::sagas_archived(moved);
                    if moved < BATCH {
                        break;
                    }
                }
            }
        });
    }

    /// Runs `work` on the store on a blocking thread (store work that waits on the disk);
    /// `None`, logged as `what` failing, when it fails.
    async fn on_blocking_thread<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || work(store.as_ref())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{what} failed");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "{what}: its task failed");
                None
            }
        }
    }

    /// Runs the Prometheus recorder's upkeep every `every`, until shutdown. The recorder keeps
    /// every histogram sample (a saga's duration, each branch call's latency) until upkeep or
    /// a scrape of `/metrics` folds them into buckets: without this loop a coordinator that
    /// nobody scrapes grows by every sample it ever recorded (a heap profile of a soak found
    /// about 90 bytes per saga, the largest share of its growth after sled's).
    pub fn start_metrics_upkeep(self: &Arc<Self>, every: Duration) {
        let Some(handle) = crate::telemetry::handle() else {
            return;
        };
        let runtime = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => handle.run_upkeep(),
                    _ = runtime.shutdown.cancelled() => return,
                }
            }
        });
    }
}
