//! Group commit: many concurrent requests share one `flush_async`.
//!
//! sled buffers writes and flushes on a timer, so a participant that replies before flushing
//! may forget a branch it acknowledged. Flushing per request costs one fsync each; here each
//! caller takes a ticket after its write committed, and one flush covers every ticket issued
//! before it started, so callers that queued behind a flush in progress usually find their
//! write already durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

/// Makes committed sled writes durable, batching concurrent callers into one flush.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    /// Tickets handed out; each is taken after its caller's write committed.
    issued: AtomicU64,
    /// The highest ticket known durable. Holding the lock means being the one flusher.
    durable: Mutex<u64>,
}

impl GroupCommit {
    pub fn new(db: &sled::Db) -> Self {
        GroupCommit {
            inner: Arc::new(Inner {
                db: db.clone(),
                issued: AtomicU64::new(0),
                durable: Mutex::new(0),
            }),
        }
    }

    /// Returns once every write this task committed before the call is on disk.
    pub async fn flush(&self) -> Result<(), sled::Error> {
        let ticket = self.inner.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = self.inner.durable.lock().await;
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket up to `covered` belongs to a write that committed before this load, so
        // the flush below persists all of them.
        let covered = self.inner.issued.load(Ordering::SeqCst);
        self.inner.db.flush_async().await?;
        *durable = covered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_all_complete_and_share_work() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let commit = GroupCommit::new(&db);
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let (db, commit) = (db.clone(), commit.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &[1u8]).unwrap();
                commit.flush().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(db.len(), 64);
        assert_eq!(*commit.inner.durable.lock().await, 64);
    }
}
