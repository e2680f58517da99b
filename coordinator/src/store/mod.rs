//! The saga log: append-only events per saga, a snapshot per saga, an index of active sagas,
//! an idempotency index, and the participant and workflow registries.
//!
//! [`SagaLog`] is the narrow interface the runtime and the API use; [`SledStore`] implements it
//! on an embedded sled database. sled buffers writes, so nothing is durable until
//! [`SagaLog::flush`] returns; group commit (the `group-commit` crate) turns the flushes of
//! all concurrent sagas into one fsync.

pub mod format;
mod sled_store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use sagas::{ParticipantSpec, WorkflowSpec};

use crate::engine::{Event, Millis, Saga};

#[cfg(feature = "testing")]
pub use group_commit::FlushPolicy;
pub use sled_store::{SledStore, StoreOptions};

/// Why the store could not read or write. Every error means the operation did not happen (or,
/// for a flush, that the writes before it are not known durable): callers answer `500`/`503`
/// and never act as if it did.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (I/O, a lock held by another process).
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
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

/// What [`SagaLog::flush`] returns.
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Sagas, their events and indexes. Writes are buffered until `flush`.
///
/// Events are appended in *rounds*: everything one decision round of a saga recorded is one
/// record, so a saga costs a handful of writes, not one per event. The first event alone
/// describes the saga (it holds the plan), so an active saga needs no snapshot: its state is
/// the fold of its events. A snapshot is written when the saga settles (for listing and
/// retention) and whenever the events since the last one grow past [`crate::engine::EngineOptions::snapshot_every`], which
/// bounds the work of a load.
pub trait SagaLog: Send + Sync + 'static {
    /// Atomically claims the idempotency key (if any) and writes the first event (`Created`,
    /// sequence 0) and the active-index entry.
    fn create(
        &self,
        first: &Event,
        saga_id: &str,
        key: Option<&str>,
    ) -> Result<Creation, StoreError>;
    /// Appends `events` as one record, numbered from `first_seq`.
    fn append(&self, saga_id: &str, first_seq: u64, events: &[Event]) -> Result<(), StoreError>;
    /// Stores the saga's state as of event `seq`, the last appended. A settled saga (terminal,
    /// callback delivered or abandoned) also leaves the active index.
    fn save_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError>;
    /// Every event of a saga, in order, with its sequence number.
    fn events(&self, saga_id: &str) -> Result<Vec<(u64, Event)>, StoreError>;
    /// The saga rebuilt from its snapshot and later events; `None` if unknown.
    fn load(&self, saga_id: &str) -> Result<Option<(Saga, u64)>, StoreError>;
    /// Ids of sagas not yet committed or aborted.
    fn active_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Sagas in id (creation) order after `cursor`, filtered.
    fn list(
        &self,
        filter: &dyn Fn(&Saga) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, StoreError>;
    /// The saga an idempotency key names.
    fn saga_for_key(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Deletes up to `limit` settled sagas that finished before `finished_before`: their
    /// events, snapshot and idempotency key. Returns how many.
    fn expire_finished(&self, finished_before: Millis, limit: usize) -> Result<usize, StoreError>;
    /// Makes every write issued before the call durable.
    fn flush(&self) -> FlushFuture<'_>;
}

/// What happened to a workflow version write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionWrite {
    /// The version now names the definition (it did already, or it was free).
    Written,
    /// The version already names another definition; nothing was written.
    Taken,
}

/// Registered participants and workflow versions.
///
/// A workflow version, once written, names one definition forever: `put_workflow` never
/// overwrites one. Writes are buffered like the log's, durable after [`SagaLog::flush`].
pub trait RegistryStore: Send + Sync + 'static {
    /// Registers or replaces a participant.
    fn put_participant(&self, name: &str, spec: &ParticipantSpec) -> Result<(), StoreError>;
    /// Every registered participant.
    fn participants(&self) -> Result<Vec<(String, ParticipantSpec)>, StoreError>;
    /// Writes `spec` as `version` of `name` unless that version names something else.
    fn put_workflow(
        &self,
        name: &str,
        version: u32,
        spec: &WorkflowSpec,
    ) -> Result<VersionWrite, StoreError>;
    /// The newest version of every workflow.
    fn workflows(&self) -> Result<Vec<(String, u32, WorkflowSpec)>, StoreError>;
    /// One version of a workflow.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    fn workflow_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<WorkflowSpec>, StoreError>;
    /// The definition the workflow file `name` last loaded, if any.
    fn file_workflow(&self, name: &str) -> Result<Option<WorkflowSpec>, StoreError>;
    /// Remembers what the workflow file `name` loaded.
    fn put_file_workflow(&self, name: &str, spec: &WorkflowSpec) -> Result<(), StoreError>;
}
