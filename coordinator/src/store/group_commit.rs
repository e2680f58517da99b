//! Group commit: one flusher task serves every waiter. Writers that ask for durability while a
//! flush is running are batched into the next one, so the number of fsyncs per second is
//! bounded by the disk, not by the number of sagas.

use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher on the current tokio runtime.
    pub fn start(db: sled::Db) -> GroupCommit {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while let Ok(next) = rx.try_recv() {
                    batch.push(next);
                }
                // Every waiter wrote before enqueueing, so this flush covers all of them.
                let started = std::time::Instant::now();
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
