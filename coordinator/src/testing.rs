//! What the workspace's tests and the recovery benchmark use from inside the coordinator: the
//! saga log and registry stores, the on-disk format, the registry. Enabled by the `testing`
//! feature; not a stable API.

pub use crate::registry::{FileLoad, Registry, RegistryError, WorkflowVersion};
pub use crate::store::format;
pub use crate::store::{
    Creation, FlushPolicy, Lease, Ownership, PgOptions, PgStore, RegistryStore, SagaFilter,
    SagaLog, SagaPage, SagaReads, SledStore, Store, StoreError, StoreFuture, StoreOptions,
    VersionWrite,
};
