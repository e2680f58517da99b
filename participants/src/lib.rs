//! Participant SDK and the three example participants of the saga coordinator.
//!
//! The SDK, for any participant service:
//! - [`barrier`]: the branch barrier. One sled record per `(saga_id, step)`, read and written
//!   in the same transaction as the business change, gives idempotency, null compensation and
//!   hanging protection; replies are durable (group commit, [`durability`]) before they leave;
//! - [`branch`]: the axum extractor for branch calls (`BranchRequest` body, checked against
//!   the `Saga-*` headers; bad input is a `400`);
//! - [`registration`]: registers the participant with the coordinator in the background,
//!   retrying with backoff until it answers;
//! - [`records`]: typed JSON records in sled trees for business state;
//! - [`config`]: the flags and environment shared by the binaries, as a typed config;
//! - [`faults`]: optional fault injection on branch calls (delay, errors, hangs, replies
//!   dropped after commit), enabled by `--faults` and changed at runtime by `PUT /_faults`;
//! - [`no_work`]: benchmark mode (`--no-work`): branch calls answered `200` without doing
//!   anything, so a load run measures the coordinator alone; breaks every guarantee;
//! - [`server`]: start-up (database, business tree, listener, registration) and graceful
//!   shutdown, returning a [`RunningParticipant`], plus the branch and listing routes over the
//!   business tree; [`cli`] wraps it into a binary's `main`.
//!
//! The examples, each a module with `start(config)` and a binary of the same name:
//! [`wallet`] (TCC `freeze`), [`order`] (SAGA `create`), [`points`] (SAGA `award`).

pub mod barrier;
pub mod branch;
pub mod cli;
pub mod config;
pub mod durability;
pub mod faults;
pub mod no_work;
pub mod order;
pub mod points;
pub mod records;
pub mod registration;
pub mod server;
pub mod wallet;

pub use barrier::{Barrier, BarrierError, BarrierMode, BranchReply, BusinessError, Rejection};
pub use config::{ParticipantArgs, ParticipantConfig, ParticipantKind};
pub use server::{ParticipantError, RunningParticipant};
