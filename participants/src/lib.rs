//! Participant SDK of the saga coordinator: what any participant service needs to take
//! branch calls safely.
//!
//! - [`barrier`]: the branch barrier. One record per `(saga_id, step)`, read and written in
//!   the same local transaction as the business change, gives idempotency, null compensation
//!   and hanging protection; replies are durable before they leave;
//! - [`store`]: the storage traits the barrier runs on ([`BarrierStore`], [`BarrierTx`]) and
//!   their errors; `sled_store` (feature `sled`) implements them over sled;
//! - [`input`]: the saga input handed to business closures, as its exact submitted text;
//! - [`reply`]: what a participant answers ([`BranchReply`], [`Rejection`]), every error as
//!   `{"error": {"code", "message"}}`;
//! - [`branch`]: parsing a branch call and checking it against its `Saga-*` headers; the axum
//!   extractor `branch::Branch` (feature `axum`);
//! - [`registration`]: registers the participant with the coordinator in the background,
//!   retrying with backoff until it answers;
//! - [`policy`]: a resilience policy read from a JSON or YAML file, for registration;
//! - [`retention`]: the background sweep that deletes the barrier records (and the business
//!   records that go with them) of sagas the coordinator has settled, once they are old
//!   enough (default 1 hour); the rule is in the module docs;
//! - [`signature`]: checking the coordinator's `Saga-Signature` on branch calls (`401` when
//!   bad or stale); the axum middleware `signature::require_signature` (feature `axum`).
//!
//! Features: `sled` (the sled store) and `axum` (extractor, `IntoResponse` for replies and
//! errors), both on by default. With `--no-default-features` neither sled nor axum is built.
//!
//! The example participants (wallet, order, points) built on this SDK are the
//! `example-participants` package in `participants/examples/`.

#![deny(missing_docs)]

pub mod barrier;
pub mod branch;
pub mod input;
pub mod policy;
pub mod registration;
pub mod reply;
pub mod retention;
pub mod signature;
#[cfg(feature = "sled")]
pub mod sled_store;
pub mod store;

pub use barrier::{Barrier, BarrierError, BarrierRecord, PhaseKind};
pub use input::BranchInput;
pub use reply::{BranchReply, Rejection};
pub use retention::{Retention, RetentionTask};
pub use signature::SignatureCheck;
#[cfg(feature = "sled")]
pub use sled_store::{SledStore, SledTx};
pub use store::{AgedBranch, BarrierStore, BarrierTx, StoreError, TxError};
