//! The saga log: append-only events per saga, a snapshot per saga, an index of active sagas,
//! an idempotency index, and the participant and workflow registries.
//!
//! Narrow traits, each part of the coordinator asking only for what it needs:
//! - [`SagaLog`]: a saga's writes (create, append, snapshot) and the flush that makes them
//!   durable;
//! - [`SagaReads`]: loading, listing and finding sagas;
//! - [`Ownership`]: which sagas this coordinator instance drives (leases, in a cluster);
//! - [`RegistryStore`]: participants and workflow versions.
//!
//! [`SledStore`] implements them on an embedded sled database (one instance), with settled
//! sagas moved to a redb file whose memory does not grow with them (`archive`). Writes are
//! buffered: nothing is durable until [`SagaLog::flush`] returns, and group commit (the
//! `group-commit` crate) turns the flushes of all concurrent sagas into one. Every error means
//! the operation did not happen ([`StoreError`]).

mod archive;
pub mod format;
pub mod postgres;
mod replay;
mod sled_store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use sagas::api::SagaState;
use sagas::{ParticipantSpec, WorkflowSpec};

use crate::engine::{Created, Event, Millis, Saga};

#[cfg(feature = "testing")]
pub use group_commit::FlushPolicy;
pub use postgres::{PgError, PgOptions, PgStore};
pub use sled_store::{SledStore, StoreOptions};

/// Why the store could not read or write. Every error means the operation did not happen (or,
/// for a flush, that the writes before it are not known durable): callers answer `500`/`503`
/// and never act as if it did.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (I/O, a lock held by another process).
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The settled archive (`archive.redb`, finished sagas of the embedded store) failed.
    #[error("archive: {0}")]
    Archive(#[from] redb::Error),
    /// A stored record does not decode or does not replay.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt {
        /// Where it was read from.
        tree: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A flush failed: the writes before it are not durable.
    #[error(transparent)]
    Flush(#[from] group_commit::GroupCommitError),
    /// This instance no longer holds the saga's lease: another instance drives it now, and
    /// nothing was written.
    #[error("saga {0} is driven by another coordinator now")]
    Fenced(String),
    /// PostgreSQL failed (connection, query, commit).
    #[error("postgres: {0}")]
    Postgres(String),
}

/// What a store operation returns when it may have to wait for I/O.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A ready [`StoreFuture`], for stores whose reads do not wait.
fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// The saga was written.
    Created,
    /// The idempotency key already names this saga; nothing was written.
    Existing(String),
}

/// A page of sagas.
pub struct SagaPage {
    /// In id (creation) order.
    pub sagas: Vec<Saga>,
    /// Pass as the next page's cursor; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Which sagas a listing returns; every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaFilter {
    /// Only sagas in this state.
    pub state: Option<SagaState>,
    /// Only sagas of this workflow.
    pub workflow: Option<String>,
    /// Only sagas carrying this business key.
    pub business_key: Option<String>,
    /// Only sagas created at or after this time.
    pub created_from: Option<Millis>,
    /// Only sagas created before this time.
    pub created_until: Option<Millis>,
}

impl SagaFilter {
    /// Whether `saga` passes.
    pub fn matches(&self, saga: &Saga) -> bool {
        self.state.is_none_or(|s| saga.lifecycle.api_state() == s)
            && self.workflow.as_deref().is_none_or(|w| saga.workflow == w)
            && self
                .business_key
                .as_deref()
                .is_none_or(|k| saga.business_key.as_deref() == Some(k))
            && self.created_from.is_none_or(|t| saga.created_at >= t)
            && self.created_until.is_none_or(|t| saga.created_at < t)
    }
}

/// A saga's writes. Appends and snapshots are buffered until [`SagaLog::flush`].
///
/// Events are appended in *rounds*: everything one decision round of a saga recorded is one
/// record, so a saga costs a handful of writes, not one per event. The first event alone
/// describes the saga (it holds the plan), so an active saga needs no snapshot: its state is
/// the fold of its events. The runtime asks for a snapshot when the saga settles (for listing
/// and retention) and whenever the events since the last one grow past
/// [`crate::engine::EngineOptions::snapshot_every`], which bounds the work of a load on
/// PostgreSQL. A store that reads a saga's whole log in one record (sled, format version 2)
/// keeps no snapshot: for it a settled saga's snapshot is leaving the active index (and being
/// marked for [`SagaLog::archive_settled`]).
pub trait SagaLog: Send + Sync + 'static {
    /// Creates a saga driven by this instance: claims its idempotency key (if any), writes its
    /// first event (sequence 0) and marks it active. Durable when the future resolves
    /// (durability rule 1); `Existing` when the key already names a saga (nothing written).
    fn create<'a>(&'a self, first: &'a Created, key: Option<&'a str>) -> StoreFuture<'a, Creation>;
    /// Appends `events` as one record, numbered from `first_seq`; `saga` is the state after
    /// them (stores may keep a summary of it for listing). [`StoreError::Fenced`] when this
    /// instance no longer drives the saga.
    fn append(&self, saga: &Saga, first_seq: u64, events: &[Event]) -> Result<(), StoreError>;
    /// Stores the saga's state as of event `seq`, the last appended (or nothing, where the log
    /// itself is as quick to load). A settled saga (terminal, callback delivered or abandoned)
    /// also leaves the active index and is marked for retention.
    fn save_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError>;
    /// Makes every write issued before the call durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
    /// Moves up to `limit` settled sagas off the log's hot structures into storage whose
    /// memory does not grow with what it holds, and returns how many it moved; every read
    /// still finds them. Durable when it returns. Blocks on I/O: call it from a blocking
    /// thread. Stores whose retained history costs no memory do nothing (the default).
    fn archive_settled(&self, limit: usize) -> Result<usize, StoreError> {
        let _ = limit;
        Ok(0)
    }
    /// Whether a write of this saga was refused because another instance drives it now (the
    /// instance must stop driving it). Checked after a flush; always `false` on one instance.
    fn lost(&self, saga_id: &str) -> bool;
}

/// Reading sagas.
pub trait SagaReads: Send + Sync + 'static {
    /// Every event of a saga, in order, with its sequence number.
    fn events<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Vec<(u64, Event)>>;
    /// The saga rebuilt from its snapshot and later events, with the sequence number of its
    /// last event; `None` if unknown.
    fn load<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Option<(Saga, u64)>>;
    /// Sagas in id (creation) order after `cursor` that pass `filter`, at most `limit`.
    fn list<'a>(
        &'a self,
        filter: &'a SagaFilter,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, SagaPage>;
    /// The saga an idempotency key names.
    fn saga_for_key<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Deletes up to `limit` settled sagas that finished before `finished_before`: their
    /// events, snapshot and idempotency key. Returns how many.
    fn expire_finished(&self, finished_before: Millis, limit: usize) -> StoreFuture<'_, usize>;
}

/// Which sagas this instance drives. On one instance it drives every active saga; in a cluster
/// each active saga has one owner holding a lease (owner, expiry, fencing epoch) and every
/// write of it is conditional on that epoch.
pub trait Ownership: Send + Sync + 'static {
    /// Active sagas this instance should start driving now, claimed: at start every active
    /// saga of a single instance; in a cluster, up to `limit` whose owner's lease expired.
    fn claim_orphans(&self, limit: usize) -> StoreFuture<'_, Vec<String>>;
    /// Takes the lease of an active saga another instance drives (an operator asked this
    /// instance). `false` if the saga is not active.
    fn take_over<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, bool>;
    /// Renews this instance's lease; how long it is valid from when the renewal was sent.
    /// [`Lease::Lost`] when the instance's lease had already expired (other instances may have
    /// taken its sagas over): the instance must stop driving all of them.
    fn renew(&self) -> StoreFuture<'_, Lease>;
    /// After [`Lease::Lost`]: joins again as a new instance that drives nothing yet (its old
    /// sagas become orphans to claim once its old lease is expired).
    fn rejoin(&self) -> StoreFuture<'_, ()>;
    /// Whether other instances may share this store (then leases matter).
    fn clustered(&self) -> bool;
    /// Gives up this instance's lease at once (a graceful shutdown, after the last flush), so
    /// other instances take its sagas over without waiting for the lease to expire.
    fn leave(&self) -> StoreFuture<'_, ()>;
}

/// The state of this instance's lease after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Held for this long after the renewal was sent (`None`: forever, one instance).
    Held(Option<std::time::Duration>),
    /// Expired before it could be renewed.
    Lost,
}

/// What happened to a workflow version write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionWrite {
    /// The version now names the definition (it did already, or it was free).
    Written,
    /// The version already names another definition; nothing was written.
    Taken,
}

/// Registered participants and workflow versions. Every write is durable when its future
/// resolves, and a workflow version, once written, names one definition forever.
pub trait RegistryStore: Send + Sync + 'static {
    /// Registers or replaces a participant.
    fn put_participant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ParticipantSpec,
    ) -> StoreFuture<'a, ()>;
    /// Every registered participant.
    fn participants(&self) -> StoreFuture<'_, Vec<(String, ParticipantSpec)>>;
    /// Writes `spec` as `version` of `name` unless that version names something else.
    fn put_workflow<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, VersionWrite>;
    /// The newest version of every workflow.
    fn workflows(&self) -> StoreFuture<'_, Vec<(String, u32, WorkflowSpec)>>;
    /// One version of a workflow.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    fn workflow_version<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<WorkflowSpec>>;
    /// The definition the workflow file `name` last loaded, if any.
    fn file_workflow<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<WorkflowSpec>>;
    /// Remembers what the workflow file `name` loaded.
    fn put_file_workflow<'a>(
        &'a self,
        name: &'a str,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, ()>;
    /// A number that changes whenever another instance changes the registry (one instance:
    /// always 0), so an instance knows when to reload it.
    fn registry_generation(&self) -> StoreFuture<'_, u64>;
}

/// The store a coordinator runs on: all of the above.
pub trait Store: SagaLog + SagaReads + Ownership + RegistryStore {}
impl<T: SagaLog + SagaReads + Ownership + RegistryStore> Store for T {}
