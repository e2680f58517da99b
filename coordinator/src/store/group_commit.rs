//! Group commit: one flusher task serves every waiter. Writers that ask for durability while a
//! flush is running are batched into the next one, so the number of fsyncs per second is
//! bounded by the disk, not by the number of sagas.
//!
//! Batches form by time and by count ([`FlushPolicy`]): while the log is busy (the last flush
//! served more than one waiter) the flusher waits up to `linger` for more waiters, or until
//! `max_batch` have arrived, before it flushes. A lone waiter on a quiet log is flushed at
//! once, so a single client never pays the linger. Fewer flushes matter beyond the disk: on a
//! virtual disk each fsync is a VM exit, paid in CPU. tokio's timer ticks every millisecond,
//! so the linger is rounded up to the next tick.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// How the flusher batches waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Longest wait for more waiters once a busy log has one.
    pub linger: Duration,
    /// A batch this large is flushed without lingering further.
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

#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher on the current tokio runtime.
    pub fn start(db: sled::Db, policy: FlushPolicy) -> GroupCommit {
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
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                crate::telemetry::log_flushed(batch.len(), started.elapsed());
                for waiter in batch.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        GroupCommit { tx }
    }

    /// Returns once every write issued before this call is on disk.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| "flusher stopped".to_string())?;
        rx.await.map_err(|_| "flusher stopped".to_string())?
    }
}
