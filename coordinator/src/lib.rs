//! The saga coordinator: keeps a durable saga log and drives SAGA and TCC steps across
//! participant services.
//!
//! - [`engine`]: the pure state machine (`Saga::apply`, `decide`), no I/O, no clock;
//! - [`store`]: the saga log on sled behind the [`store::SagaLog`] trait, with group commit;
//! - [`registry`]: participants and workflow versions;
//! - [`dispatch`]: branch calls over HTTP and the classification of their answers;
//! - [`runtime`]: one task per active saga executing the engine's commands; recovery;
//! - [`api`]: HTTP API v1 (axum);
//! - [`config`], [`server`]: configuration and start-up; [`clock`]: time for the runtime;
//! - [`telemetry`]: Prometheus metrics; [`views`]: engine state as API bodies.

pub mod api;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod views;

pub use config::{CoordinatorArgs, CoordinatorOptions};
pub use server::{RunningCoordinator, StartError, start};
