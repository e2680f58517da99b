//! Group commit: many writers that need their writes durable share one flush.
//!
//! A store that buffers writes (sled, a file) makes them durable with a flush, and a flush
//! costs an fsync: on a virtual disk hundreds of microseconds and a VM exit. Writers that ask
//! for durability while a flush runs are batched into the next one, so the number of flushes
//! per second is bounded by the disk, not by the number of writers. The coordinator's saga
//! log and the participants' barrier both use this one mechanism.
//!
//! One flusher task serves every waiter. Batches form by time and by count ([`FlushPolicy`]):
//! while the store is busy (the last flush served more than one waiter) the flusher waits up
//! to `linger` for more waiters, or until `max_batch` have arrived. A lone waiter on a quiet
//! store is flushed at once, so a single client never pays the linger. tokio's timer ticks
//! every millisecond, so a non-zero linger is rounded up to the next tick.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use group_commit::{FlushPolicy, GroupCommit};
//! let commit = GroupCommit::start(FlushPolicy::default(), || async { Ok::<(), std::io::Error>(()) });
//! // ... write, then:
//! commit.flush().await.unwrap();
//! # }
//! ```

#![deny(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// Why a writer's data is not known durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupCommitError {
    /// The flush covering this writer failed; the store's own error is the source.
    #[error("flush failed: {0}")]
    Flush(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The flusher task is gone (its runtime shut down): nothing was flushed for this writer.
    #[error("the flusher has stopped")]
    Stopped,
}

/// How the flusher batches waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Longest wait for more waiters once a busy store has one. Default 1 ms; zero flushes as
    /// soon as the previous flush ended.
    pub linger: Duration,
    /// A batch this large is flushed without lingering further. Default 64.
    pub max_batch: usize,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            linger: Duration::from_millis(1),
            max_batch: 64,
        }
    }
}

/// What one flush did, for metrics: how many waiters it served and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Waiters this flush made durable.
    pub waiters: usize,
    /// Time the flush itself took (not the linger before it).
    pub took: Duration,
}

type Waiter = oneshot::Sender<Result<(), GroupCommitError>>;

/// A handle to the flusher; cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher on the current tokio runtime. `flush` makes every write issued
    /// before it was called durable; it is called once per batch.
    pub fn start<F, Fut, E>(policy: FlushPolicy, flush: F) -> GroupCommit
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::start_observed(policy, flush, |_| {})
    }

    /// [`GroupCommit::start`], with `observe` called after every flush (metrics).
    pub fn start_observed<F, Fut, E, O>(policy: FlushPolicy, flush: F, observe: O) -> GroupCommit
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
        O: Fn(Batch) + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut busy = false;
            while let Some(first) = rx.recv().await {
                batch.push(first);
                if busy && !policy.linger.is_zero() {
                    let until = tokio::time::Instant::now() + policy.linger;
                    while batch.len() < policy.max_batch {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(next)) => batch.push(next),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                while let Ok(next) = rx.try_recv() {
                    batch.push(next);
                }
                busy = batch.len() > 1;
                // Every waiter wrote before enqueueing, so this flush covers all of them.
                let started = Instant::now();
                let result = flush()
                    .await
                    .map_err(|e| GroupCommitError::Flush(Arc::new(e)));
                observe(Batch {
                    waiters: batch.len(),
                    took: started.elapsed(),
                });
                for waiter in batch.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        GroupCommit { tx }
    }

    /// Returns once every write issued before this call is durable.
    pub async fn flush(&self) -> Result<(), GroupCommitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| GroupCommitError::Stopped)?;
        rx.await.map_err(|_| GroupCommitError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes_and_all_complete() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(Vec::new()));
        let commit = {
            let (flushes, served) = (flushes.clone(), served.clone());
            GroupCommit::start_observed(
                FlushPolicy::default(),
                move || {
                    let flushes = flushes.clone();
                    async move {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok::<(), std::io::Error>(())
                    }
                },
                move |batch| served.lock().unwrap().push(batch.waiters),
            )
        };
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let commit = commit.clone();
                tokio::spawn(async move { commit.flush().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let served = served.lock().unwrap().clone();
        assert_eq!(served.iter().sum::<usize>(), 64, "every waiter served once");
        assert_eq!(served.len(), flushes.load(Ordering::SeqCst));
        assert!(served.len() < 64, "some flushes were shared: {served:?}");
    }

    #[tokio::test]
    async fn a_failed_flush_is_every_waiters_typed_error() {
        let commit = GroupCommit::start(FlushPolicy::default(), || async {
            Err::<(), _>(std::io::Error::other("disk full"))
        });
        let err = commit.flush().await.unwrap_err();
        assert!(matches!(err, GroupCommitError::Flush(_)));
        assert_eq!(err.to_string(), "flush failed: disk full");
    }
}
