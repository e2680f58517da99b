//! Where the barrier keeps its records: the traits a storage backend implements.
//!
//! The barrier's guarantees (idempotency, null compensation, hanging protection) hold only if
//! a branch's barrier record is read and written in the SAME local transaction as the
//! business change. So a backend offers one thing, a retryable transaction
//! ([`BarrierStore::transaction`]), whose handle ([`BarrierStore::Tx`]) reads and writes
//! barrier records ([`BarrierTx`]) and is also handed to the business closure, which reads and
//! writes its own data through it; plus a way to make committed transactions durable
//! ([`BarrierStore::durable`]). For retention ([`crate::retention`]) a backend also lists
//! branches by the age of their record ([`BarrierStore::aged`]) and deletes records
//! ([`BarrierTx::remove_record`]).
//!
//! The transaction is a synchronous closure that the backend may run several times: sled
//! re-runs it on a conflict, a SQL backend (`postgres`, `rusqlite`, diesel, or tokio-postgres
//! driven through `block_in_place`) would `BEGIN`, run it, `COMMIT`, and re-run it on a
//! serialization failure (SQLSTATE `40001`). A SQL backend makes the barrier row conflict by
//! `SELECT ... FOR UPDATE` (or serializable isolation) on `(saga_id, step)`, and its commit is
//! already durable, so its [`BarrierStore::durable`] returns at once.
//!
//! `SledStore` (feature `sled`) is the implementation over sled.

use std::future::Future;

use group_commit::GroupCommitError;
use thiserror::Error;

use crate::barrier::BarrierRecord;
use crate::reply::Rejection;

/// Why the work inside a barrier transaction stopped. Returned by [`BarrierTx`] methods and by
/// business closures; the three cases mean different things and are handled differently.
#[derive(Debug, Error)]
pub enum TxError {
    /// The business refused: the transaction is rolled back (business writes discarded) and
    /// the rejection becomes the reply. A forward phase's `409`/`422` is then stored by the
    /// barrier and replayed; any other status is answered as is and not stored (retried).
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// A concurrent transaction touched the same data: retryable. The backend rolls back and
    /// runs the closure again; business code passes it on with `?` and never makes it up. A
    /// backend that gives up retrying returns it from [`BarrierStore::transaction`]; the
    /// barrier then answers `500` and the coordinator retries the call.
    #[error("conflict with a concurrent transaction")]
    Conflict,
    /// The storage failed (I/O, corruption): rolled back, answered `500`, never stored.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// A failure of the storage itself.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend's own error (an I/O error, a lost connection, ...).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value does not decode, or contradicts what was written (e.g. a successful
    /// forward phase without its input).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// Which value, e.g. `barrier record of step "pay" in saga "s1"`.
        what: String,
        /// Why it is unusable.
        reason: String,
    },
}

impl StoreError {
    /// Wraps a backend's error.
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

/// The barrier's view of one open transaction: the record of a branch `(saga_id, step)`.
///
/// Reads see the transaction's own writes. A backend must make two transactions that write
/// the same branch's record conflict (one of them is re-run), so that racing phases of one
/// branch serialize.
pub trait BarrierTx {
    /// The record of branch `(saga_id, step)`, `None` if no phase of it ran yet.
    ///
    /// Errors: [`TxError::Conflict`] (retry), [`TxError::Storage`] (including a record that
    /// does not decode: [`StoreError::Corrupt`]).
    fn record(&self, saga_id: &str, step: &str) -> Result<Option<BarrierRecord>, TxError>;

    /// Replaces the record of branch `(saga_id, step)`; visible to others once committed.
    ///
    /// Errors: as [`BarrierTx::record`].
    fn put_record(&self, saga_id: &str, step: &str, record: &BarrierRecord) -> Result<(), TxError>;

    /// Deletes the record of branch `(saga_id, step)` (nothing if there is none), and the
    /// backend's age index entry of it. Only the retention sweep calls it, once the
    /// coordinator has settled the saga (see [`crate::retention`]).
    ///
    /// Errors: as [`BarrierTx::record`].
    fn remove_record(&self, saga_id: &str, step: &str) -> Result<(), TxError>;
}

/// A branch whose record was last written at `written_at`, as [`BarrierStore::aged`] lists
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedBranch {
    /// Its saga.
    pub saga_id: String,
    /// Its step.
    pub step: String,
    /// When its record was last written ([`BarrierRecord::written_at`]), in milliseconds since
    /// the Unix epoch.
    pub written_at: u64,
}

/// A storage backend for the barrier: local transactions over barrier records and business
/// data, and durability.
pub trait BarrierStore: Send + Sync {
    /// The handle of one open transaction. The barrier reads and writes the branch's record
    /// through it ([`BarrierTx`]), and hands it to the business closure, which reads and
    /// writes its own data through whatever methods the backend adds (for sled,
    /// `SledTx`).
    type Tx<'t>: BarrierTx;

    /// Runs `work` in one transaction and commits what it wrote, or rolls everything back if
    /// it returns an error.
    ///
    /// `work` may run several times: on [`TxError::Conflict`] (from its own reads/writes or
    /// at commit) the backend rolls back and runs it again. So `work` must have no effect
    /// other than through the transaction handle.
    ///
    /// Errors: what `work` returned ([`TxError::Rejected`] as is; [`TxError::Conflict`] only
    /// if the backend gave up retrying), or [`TxError::Storage`] if the commit failed.
    /// Committed is not durable yet: see [`BarrierStore::durable`].
    fn transaction<T, F>(&self, work: F) -> Result<T, TxError>
    where
        F: Fn(&Self::Tx<'_>) -> Result<T, TxError>;

    /// Returns once every transaction committed before the call is durable (on disk). A
    /// backend whose commit is durable returns at once; one that buffers writes flushes
    /// through group commit, so concurrent callers share a flush.
    ///
    /// Errors: the flush failed or the flusher stopped ([`GroupCommitError`]); the writes may
    /// then be lost on a crash, so no reply depending on them may leave.
    fn durable(&self) -> impl Future<Output = Result<(), GroupCommitError>> + Send;

    /// Up to `limit` branches whose record was last written before `before` (milliseconds
    /// since the Unix epoch), oldest first, starting after `after` (the last one of the
    /// previous page; `None` from the start). What the retention sweep pages through, so a
    /// backend keeps an index by age (sled: a tree keyed by time) rather than scanning every
    /// record. Read outside any transaction: a listed record may have been written again or
    /// deleted since, so the sweep reads it again in its transaction.
    ///
    /// A record stored before records carried their time (no
    /// [`BarrierRecord::written_at`]) has no age yet: the backend gives it the time it first
    /// sees it (it is then listed once `before` passes that time), never an older one.
    ///
    /// Errors: [`StoreError`] when the backend fails or an index entry does not decode; the
    /// sweep stops and tries again at its next run.
    fn aged(
        &self,
        before: u64,
        after: Option<&AgedBranch>,
        limit: usize,
    ) -> Result<Vec<AgedBranch>, StoreError>;
}
