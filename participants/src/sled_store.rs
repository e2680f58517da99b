//! The barrier store over an embedded sled database (feature `sled`).
//!
//! Barrier records live in the tree [`BARRIER_TREE`], one key per branch; business data in one
//! business tree named at [`SledStore::open`]. A transaction spans both trees, so sled makes
//! racing phases of one branch conflict on the record's key and re-runs the loser.
//!
//! For retention, the tree [`AGE_TREE`] indexes the records by the time they were last written
//! (`written_at` as 8 big-endian bytes, then the record's key; empty values), kept in the same
//! transaction as the record, so [`BarrierStore::aged`] reads the oldest first without
//! scanning every record. Records written before they carried their time are indexed once, at
//! the first [`BarrierStore::aged`] of a database, with the time of that call (a marker in
//! [`META_TREE`] says it was done). sled
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
use crate::store::{AgedBranch, BarrierStore, BarrierTx, StoreError, TxError};

/// Name of the sled tree holding the barrier records.
pub const BARRIER_TREE: &str = "barrier";
/// Name of the sled tree indexing the barrier records by the time they were last written.
pub const AGE_TREE: &str = "barrier_by_age";
/// Name of the sled tree of the store's own bookkeeping (whether old records were indexed).
pub const META_TREE: &str = "barrier_meta";
/// Key in [`META_TREE`] present once records without a time have been indexed.
const LEGACY_INDEXED: &[u8] = b"legacy_records_indexed";
/// Records given a time per transaction while indexing old records.
const LEGACY_CHUNK: usize = 256;

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
    ages: sled::Tree,
    meta: sled::Tree,
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
            ages: db.open_tree(AGE_TREE)?,
            meta: db.open_tree(META_TREE)?,
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
        let outcome =
            (&self.records, &self.ages, &self.business).transaction(|(records, ages, business)| {
                work(&SledTx {
                    records,
                    ages,
                    business,
                })
                .map_err(|e| match e {
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

    fn aged(
        &self,
        before: u64,
        after: Option<&AgedBranch>,
        limit: usize,
    ) -> Result<Vec<AgedBranch>, StoreError> {
        self.index_legacy_records()?;
        let start = match after {
            Some(last) => {
                let mut key = age_key(last.written_at, &record_key(&last.saga_id, &last.step));
                // The smallest key after `last`'s.
                key.push(0);
                std::ops::Bound::Included(key)
            }
            None => std::ops::Bound::Unbounded,
        };
        let end = std::ops::Bound::Excluded(before.to_be_bytes().to_vec());
        let mut out = Vec::new();
        for entry in self.ages.range::<Vec<u8>, _>((start, end)).take(limit) {
            let (key, _) = entry.map_err(StoreError::backend)?;
            out.push(decode_age_key(&key)?);
        }
        Ok(out)
    }
}

impl SledStore {
    /// Gives every record without a time (written before records carried one) the time now,
    /// and indexes it; once per database (a marker in [`META_TREE`] remembers it).
    fn index_legacy_records(&self) -> Result<(), StoreError> {
        if self
            .meta
            .contains_key(LEGACY_INDEXED)
            .map_err(StoreError::backend)?
        {
            return Ok(());
        }
        let now = crate::retention::unix_millis();
        let mut untimed = Vec::new();
        let mut indexed = 0u64;
        let mut flush = |untimed: &mut Vec<sled::IVec>| -> Result<(), StoreError> {
            let outcome = (&self.records, &self.ages).transaction(|(records, ages)| {
                for key in untimed.iter() {
                    let Some(bytes) = records.get(key)? else {
                        continue;
                    };
                    let mut record: BarrierRecord = match serde_json::from_slice(&bytes) {
                        Ok(record) => record,
                        // Left alone: the barrier reports it when its branch is called.
                        Err(_) => continue,
                    };
                    if record.written_at.is_some() {
                        continue;
                    }
                    record.written_at = Some(now);
                    let encoded = serde_json::to_vec(&record).expect("a record always encodes");
                    records.insert(key, encoded)?;
                    ages.insert(age_key(now, key), &[] as &[u8])?;
                }
                Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
            });
            outcome.map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::backend(e),
                TransactionError::Abort(never) => match never {},
            })?;
            indexed += untimed.len() as u64;
            untimed.clear();
            Ok(())
        };
        for entry in self.records.iter() {
            let (key, bytes) = entry.map_err(StoreError::backend)?;
            let untimed_record = serde_json::from_slice::<BarrierRecord>(&bytes)
                .is_ok_and(|record| record.written_at.is_none());
            if untimed_record {
                untimed.push(key);
                if untimed.len() >= LEGACY_CHUNK {
                    flush(&mut untimed)?;
                }
            }
        }
        flush(&mut untimed)?;
        self.meta
            .insert(LEGACY_INDEXED, &[] as &[u8])
            .map_err(StoreError::backend)?;
        if indexed > 0 {
            tracing::info!(
                records = indexed,
                "barrier records without a time now age from now"
            );
        }
        Ok(())
    }
}

/// One open sled transaction: the barrier record and the business tree. Business closures
/// read and write through [`SledTx::business`] (raw bytes) or [`SledTx::load`] and
/// [`SledTx::store`] (JSON records); `?` turns sled's transactional errors into [`TxError`].
pub struct SledTx<'t> {
    records: &'t TransactionalTree,
    ages: &'t TransactionalTree,
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

    /// Deletes the record at `key` of the business tree (nothing if absent), e.g. when the
    /// retention sweep forgets a settled saga.
    ///
    /// Errors: [`TxError::Conflict`] / [`TxError::Storage`] from sled.
    pub fn remove(&self, key: &str) -> Result<(), TxError> {
        self.business.remove(key)?;
        Ok(())
    }

    /// The time (`written_at`) of the stored record at `key`, if there is one with a time.
    fn stored_time(&self, key: &[u8], saga_id: &str, step: &str) -> Result<Option<u64>, TxError> {
        match self.records.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                let record: BarrierRecord =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(saga_id, step, e))?;
                Ok(record.written_at)
            }
        }
    }
}

fn corrupt(saga_id: &str, step: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: format!("barrier record of step {step:?} in saga {saga_id:?}"),
        reason: e.to_string(),
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
        let key = record_key(saga_id, step);
        let previous = self.stored_time(&key, saga_id, step)?;
        if previous != record.written_at {
            if let Some(previous) = previous {
                self.ages.remove(age_key(previous, &key))?;
            }
            if let Some(now) = record.written_at {
                self.ages.insert(age_key(now, &key), &[] as &[u8])?;
            }
        }
        self.records.insert(key, bytes)?;
        Ok(())
    }

    fn remove_record(&self, saga_id: &str, step: &str) -> Result<(), TxError> {
        let key = record_key(saga_id, step);
        if let Some(previous) = self.stored_time(&key, saga_id, step)? {
            self.ages.remove(age_key(previous, &key))?;
        }
        self.records.remove(key)?;
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

/// `written_at (u64 BE) ++ record key`: the age index orders records by time.
fn age_key(written_at: u64, record_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + record_key.len());
    key.extend_from_slice(&written_at.to_be_bytes());
    key.extend_from_slice(record_key);
    key
}

/// The branch and time an age index key names.
fn decode_age_key(key: &[u8]) -> Result<AgedBranch, StoreError> {
    let bad = |reason: &str| StoreError::Corrupt {
        what: format!("barrier age index key {key:?}"),
        reason: reason.to_string(),
    };
    let (time, record) = key
        .split_at_checked(8)
        .ok_or_else(|| bad("shorter than 8 bytes"))?;
    let written_at = u64::from_be_bytes(time.try_into().expect("8 bytes"));
    let (len, rest) = record
        .split_at_checked(4)
        .ok_or_else(|| bad("no saga id length"))?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    let (saga_id, step) = rest
        .split_at_checked(len)
        .ok_or_else(|| bad("saga id cut short"))?;
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"));
    Ok(AgedBranch {
        saga_id: text(saga_id)?,
        step: text(step)?,
        written_at,
    })
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
