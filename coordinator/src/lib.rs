//! The saga coordinator: keeps a durable saga log and drives SAGA and TCC steps across
//! participant services. `docs/ARCHITECTURE.md` in the repository describes the parts, the
//! durability rules, the round, the on-disk format and how each level is tested.
//!
//! The public API is small: [`start`] a coordinator with [`CoordinatorOptions`] (or the
//! binary's flags, [`CoordinatorArgs`]) and stop it with [`RunningCoordinator::shutdown`];
//! the [`engine`] (the pure state machine and its round driver) is public for embedding and
//! simulation. With the `testing` feature, `coordinator::testing` exposes the store, its
//! on-disk format and the registry to the workspace's tests and the recovery benchmark.
//!
//! Inside, one module per part: `engine` (pure), `store` (the saga log on sled behind the
//! `SagaLog` and `RegistryStore` traits, with its versioned on-disk `format`), `registry`
//! (participants and workflow versions), `dispatch` (branch calls, resilience per participant),
//! `runtime` (one task per active saga running the engine's driver; recovery), `api` (HTTP
//! API v1), `config` and `server` (options and start-up), `clock`, `telemetry` (Prometheus),
//! `trace_context` (which W3C trace a saga belongs to) and `otlp` (span export), `alerts` (the
//! alert webhook: [`Alert`] is its JSON body), `views` (engine state as API bodies), `dashboard` (the operator UI at `/ui`), `auth`
//! (API tokens and their scopes), `outbound` (where calls may go: the SSRF guard; signing), `tls` (HTTPS for the API, extra
//! CAs for outbound calls).

pub(crate) mod alerts;
pub(crate) mod api;
pub mod auth;
pub(crate) mod clock;
pub mod config;
pub mod dashboard;
pub(crate) mod dispatch;
pub mod engine;
pub(crate) mod otlp;
pub mod outbound;
pub(crate) mod registry;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod store;
pub(crate) mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub(crate) mod trace_context;
pub(crate) mod views;

pub use alerts::{Alert, AlertKind, AlertOptions};
pub use config::{CoordinatorArgs, CoordinatorOptions};
pub use otlp::OtlpOptions;
pub use registry::RegistryError;
pub use server::{RunningCoordinator, StartError, start};
pub use store::{PgError, StoreError};
