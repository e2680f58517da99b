//! The saga log: append-only events per saga, a snapshot per saga, an index of active sagas,
//! an idempotency index, and the participant and workflow registries.
//!
//! [`SagaLog`] is the narrow interface the runtime and the API use; [`SledStore`] implements it
//! on an embedded sled database. sled buffers writes, so nothing is durable until
//! [`SagaLog::flush`] returns; [`group_commit`] turns the flushes of all concurrent sagas into
//! one fsync.

pub mod group_commit;
mod sled_store;

use std::future::Future;
use std::pin::Pin;

use sagas::{ParticipantSpec, WorkflowSpec};

use crate::engine::{Event, Millis, Saga};

pub use sled_store::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in {tree}: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("flush failed: {0}")]
    Flush(String),
    #[error("the store is shut down")]
    Closed,
}

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// The idempotency key already names this saga; nothing was written.
    Existing(String),
}

/// A page of sagas.
pub struct SagaPage {
    pub sagas: Vec<Saga>,
    pub next_cursor: Option<String>,
}

pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Sagas, their events and indexes. Writes are buffered until `flush`.
pub trait SagaLog: Send + Sync + 'static {
    /// Atomically claims the idempotency key (if any) and writes the first event (`Created`),
    /// the initial state's snapshot and the active-index entry.
    fn create(&self, first: &Event, saga: &Saga, key: Option<&str>)
    -> Result<Creation, StoreError>;
    /// Appends an event with the saga's next sequence number.
    fn append(&self, saga_id: &str, seq: u64, event: &Event) -> Result<(), StoreError>;
    /// Stores the saga's current state (used for listing and fast recovery); a settled saga
    /// (terminal, callback delivered or abandoned) leaves the active index.
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

/// Registered participants and workflow versions.
pub trait RegistryStore: Send + Sync + 'static {
    fn put_participant(&self, name: &str, spec: &ParticipantSpec) -> Result<(), StoreError>;
    fn participants(&self) -> Result<Vec<(String, ParticipantSpec)>, StoreError>;
    fn put_workflow(&self, name: &str, version: u32, spec: &WorkflowSpec)
    -> Result<(), StoreError>;
    /// The newest version of every workflow.
    fn workflows(&self) -> Result<Vec<(String, u32, WorkflowSpec)>, StoreError>;
}
