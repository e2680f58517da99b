//! The barrier store over an embedded sled database (feature `sled`).
//!
//! Barrier records live in the tree [`BARRIER_TREE`], one key per branch; business data in one
//! business tree named at [`SledStore::open`]. A transaction spans both trees, so sled makes
//! racing phases of one branch conflict on the record's key and re-runs the loser. sled
//! buffers writes; [`BarrierStore::durable`] flushes them through the workspace's group commit
//! (`group-commit`), without lingering: a participant's flushes are short and its callers
//! few, and lingering measured slower at 16 clients.

use std::time::Duration;

use group_commit::{FlushPolicy, GroupCommit, GroupCommitError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use crate::barrier::BarrierRecord;
use crate::reply::Rejection;
use crate::store::{BarrierStore, BarrierTx, StoreError, TxError};

/// Name of the sled tree holding the barrier records.
pub const BARRIER_TREE: &str = "barrier";

/// sled's page cache for a participant's database, in bytes (16 MiB), as the coordinator's.
/// sled's own default is 1 GiB: a participant under steady load grows towards it (measured:
/// an example participant from 49 to 459 MB in a 10-minute soak).
pub const CACHE_BYTES: u64 = 16 << 20;

/// Opens (or creates) a participant's sled database in `dir` with a [`CACHE_BYTES`] cache.
/// Blocking (sled reads its log); call it once at start-up.
///
/// Errors: sled could not open the database (locked by another process, corrupt, I/O).
pub fn open_database(dir: &std::path::Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()
}

/// A [`BarrierStore`] over one sled database: the barrier tree and one business tree.
/// Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
    business: sled::Tree,
    commit: GroupCommit,
}

impl SledStore {
    /// Opens (or creates) the barrier tree and the business tree named `business` in `db`,
    /// and starts the group-commit flusher, so it must be called inside a tokio runtime.
    ///
    /// Errors: sled could not open a tree.
    pub fn open(db: &sled::Db, business: &str) -> Result<Self, sled::Error> {
        let commit = {
            let db = db.clone();
            // No linger: see the module docs.
            let policy = FlushPolicy {
                linger: Duration::ZERO,
                ..FlushPolicy::default()
            };
            GroupCommit::start(policy, move || {
                let db = db.clone();
                async move { db.flush_async().await.map(drop) }
            })
        };
        Ok(SledStore {
            db: db.clone(),
            records: db.open_tree(BARRIER_TREE)?,
            business: db.open_tree(business)?,
            commit,
        })
    }

    /// The database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The business tree, for reads outside a transaction (admin listings). Writes belong in
    /// [`BarrierStore::transaction`], followed by [`BarrierStore::durable`].
    pub fn business(&self) -> &sled::Tree {
        &self.business
    }
}

impl BarrierStore for SledStore {
    type Tx<'t> = SledTx<'t>;

    fn transaction<T, F>(&self, work: F) -> Result<T, TxError>
    where
        F: Fn(&SledTx<'_>) -> Result<T, TxError>,
    {
        let outcome = (&self.records, &self.business).transaction(|(records, business)| {
            work(&SledTx { records, business }).map_err(|e| match e {
                // sled re-runs the closure.
                TxError::Conflict => ConflictableTransactionError::Conflict,
                other => ConflictableTransactionError::Abort(other),
            })
        });
        match outcome {
            Ok(value) => Ok(value),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::backend(e).into()),
        }
    }

    fn durable(&self) -> impl Future<Output = Result<(), GroupCommitError>> + Send {
        self.commit.flush()
    }
}

/// One open sled transaction: the barrier record and the business tree. Business closures
/// read and write through [`SledTx::business`] (raw bytes) or [`SledTx::load`] and
/// [`SledTx::store`] (JSON records); `?` turns sled's transactional errors into [`TxError`].
pub struct SledTx<'t> {
    records: &'t TransactionalTree,
    business: &'t TransactionalTree,
}

impl SledTx<'_> {
    /// The business tree inside this transaction. Use nothing else (no plain sled calls,
    /// which would deadlock against the transaction).
    pub fn business(&self) -> &TransactionalTree {
        self.business
    }

    /// The JSON record at `key` of the business tree, `None` if absent. A record that does not
    /// decode is a `500 invariant_violated` rejection (retried, never stored): no input could
    /// fix it.
    ///
    /// Errors: that rejection, or [`TxError::Conflict`] / [`TxError::Storage`] from sled.
    pub fn load<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TxError> {
        match self.business.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Rejection::invariant(format!("corrupt record {key:?}: {e}")).into()),
        }
    }

    /// Writes `value` as JSON at `key` of the business tree.
    ///
    /// Errors: as [`SledTx::load`].
    pub fn store<T: Serialize>(&self, key: &str, value: &T) -> Result<(), TxError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Rejection::invariant(format!("cannot encode record {key:?}: {e}")))?;
        self.business.insert(key, bytes)?;
        Ok(())
    }
}

impl BarrierTx for SledTx<'_> {
    fn record(&self, saga_id: &str, step: &str) -> Result<Option<BarrierRecord>, TxError> {
        match self.records.get(record_key(saga_id, step))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StoreError::Corrupt {
                    what: format!("barrier record of step {step:?} in saga {saga_id:?}"),
                    reason: e.to_string(),
                }
                .into()
            }),
        }
    }

    fn put_record(&self, saga_id: &str, step: &str, record: &BarrierRecord) -> Result<(), TxError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            what: format!("barrier record of step {step:?} in saga {saga_id:?}"),
            reason: format!("does not encode: {e}"),
        })?;
        self.records.insert(record_key(saga_id, step), bytes)?;
        Ok(())
    }
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Conflict => TxError::Conflict,
            UnabortableTransactionError::Storage(e) => StoreError::backend(e).into(),
        }
    }
}

/// `len(saga_id) (u32 BE) ++ saga_id ++ step`: unambiguous for any strings.
fn record_key(saga_id: &str, step: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + saga_id.len() + step.len());
    key.extend_from_slice(&(saga_id.len() as u32).to_be_bytes());
    key.extend_from_slice(saga_id.as_bytes());
    key.extend_from_slice(step.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> SledStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        SledStore::open(&db, "business").unwrap()
    }

    #[test]
    fn keys_of_different_branches_never_collide() {
        assert_ne!(record_key("ab", "c"), record_key("a", "bc"));
        assert_ne!(record_key("", "abc"), record_key("abc", ""));
    }

    #[tokio::test]
    async fn a_rejection_rolls_back_every_write_of_the_transaction() {
        let store = store();
        let outcome: Result<(), TxError> = store.transaction(|tx| {
            tx.store("k", &1u64)?;
            tx.put_record("s", "x", &BarrierRecord::default())?;
            Err(Rejection::conflict("no", "changed my mind").into())
        });
        assert!(matches!(outcome, Err(TxError::Rejected(r)) if r.code == "no"));
        assert_eq!(store.business().get("k").unwrap(), None);
        assert_eq!(store.transaction(|tx| tx.record("s", "x")).unwrap(), None);
    }

    #[tokio::test]
    async fn corrupt_records_are_storage_errors_not_rejections() {
        let store = store();
        store
            .db()
            .open_tree(BARRIER_TREE)
            .unwrap()
            .insert(record_key("s", "x"), b"not json".as_slice())
            .unwrap();
        let err = store.transaction(|tx| tx.record("s", "x")).unwrap_err();
        assert!(
            matches!(err, TxError::Storage(StoreError::Corrupt { .. })),
            "{err:?}"
        );
    }

    /// Concurrent increments of one key: sled's conflicts re-run the closure, so none is lost,
    /// and every caller's write is durable once `durable` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicting_transactions_are_retried_and_flushes_shared() {
        let store = Arc::new(store());
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.transaction(|tx| {
                        let n: u64 = tx.load("n")?.unwrap_or(0);
                        tx.store("n", &(n + 1))
                    })?;
                    store
                        .durable()
                        .await
                        .map_err(|e| StoreError::backend(e).into())
                })
            })
            .collect();
        for task in tasks {
            let done: Result<(), TxError> = task.await.unwrap();
            done.unwrap();
        }
        let n: u64 = serde_json::from_slice(&store.business().get("n").unwrap().unwrap()).unwrap();
        assert_eq!(n, 32);
    }
}
