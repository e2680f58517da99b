//! The example participants of the saga coordinator, built on the participant SDK
//! (`participants`): [`wallet`] (TCC `freeze`), [`order`] (SAGA `create`) and [`points`] (SAGA
//! `award`), each a module with `start(config)` and a binary of the same name.
//!
//! Around them, what the binaries and the test harnesses need and a real participant would
//! not:
//! - [`config`]: the flags and environment shared by the binaries (`--listen`, `--data-dir`,
//!   `--coordinator`, `--advertise-url`, `--policy`, `--log-format`, `--faults`, `--no-work`,
//!   `--unsafe-no-barrier`; env `WALLET_*`, `ORDER_*`, `POINTS_*`), as a typed config;
//! - [`server`]: start-up (database, business tree, listener, registration) and graceful
//!   shutdown, returning a [`RunningParticipant`]; [`cli`] wraps it into a binary's `main`,
//!   [`logging`] sets up the log output;
//! - [`faults`]: optional fault injection on branch calls (delay, errors, hangs, replies
//!   dropped after commit), enabled by `--faults` and changed at runtime by `PUT /_faults`;
//! - [`no_work`]: benchmark mode (`--no-work`): branch calls answered `200` without doing
//!   anything, so a load run measures the coordinator alone; breaks every guarantee;
//! - [`barrier_mode`]: `--unsafe-no-barrier`, business closures without the barrier, so the
//!   chaos harness can prove its checker notices; breaks every guarantee too.
//!
//! Every error any of them answers is `{"error": {"code", "message"}}`.

#![deny(missing_docs)]

pub mod barrier_mode;
pub mod cli;
pub mod config;
mod extract;
pub mod faults;
mod ledger;
pub mod logging;
pub mod no_work;
pub mod order;
pub mod points;
pub mod server;
pub mod wallet;

pub use barrier_mode::BarrierMode;
pub use config::{ParticipantArgs, ParticipantConfig, ParticipantKind};
pub use server::{ParticipantError, RunningParticipant};
