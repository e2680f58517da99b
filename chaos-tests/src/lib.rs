//! Process-level chaos harness for the saga coordinator.
//!
//! The tests in `tests/` start the real `coordinator`, `wallet`, `order` and `points` binaries
//! as child processes on free loopback ports, each with a fresh data directory, drive the
//! `place_order` workflow through the coordinator's HTTP API, inject faults (SIGKILL, SIGTERM,
//! restarts on the same port and data directory) and finally check the books.
//!
//! - [`binaries`]: where the built binaries live (`<target>/debug/<name>`), and building them;
//! - [`ports`]: free loopback ports;
//! - [`process`]: [`ServiceProcess`], one child process with its log file, kill/terminate/restart
//!   and a deadline-bounded wait for health;
//! - [`cluster`]: [`Cluster`], a coordinator (or several on one PostgreSQL database) plus the
//!   three example participants, ready to use;
//! - [`database`]: the PostgreSQL database a cluster's coordinators share, and what tests read
//!   from it (leases, live instances, a fingerprint of every saga row and event);
//! - [`failover`]: [`FailoverClient`], a client of every instance of a cluster that asks the
//!   next one when one does not answer;
//! - [`participant_api`]: small typed clients for the wallet, order and points HTTP APIs;
//! - [`workload`]: saga plans and deadline-bounded submit/resubmit/settle loops;
//! - [`steady_load`]: [`steady_load::SteadyLoad`], clients running sagas one after another
//!   until stopped, recording them for the books;
//! - [`polling`]: waiting for a condition with a deadline;
//! - [`books`]: the invariant checker run once faults stop;
//! - [`proxy`]: [`proxy::FaultProxy`], a TCP proxy between the coordinator and a participant
//!   that injects latency, resets, blackholes and dropped replies;
//! - [`chaos`]: the chaos run (kills, network faults, load, the final check and report) behind
//!   the `chaos` binary and `tests/chaos_short.rs`;
//! - [`watch`]: a background poller that catches invariants broken *while* sagas run (a negative
//!   balance never shows at quiescence if it is later repaired).
//!
//! The load generator and the benchmark are in the `saga-bench` crate (`chaos-tests/bench/`),
//! which uses this harness.
//!
//! Running: see `chaos-tests/README.md`. In short, `cargo build --workspace --bins` and then
//! `cargo test -p chaos-tests`.

pub mod binaries;
pub mod books;
pub mod chaos;
pub mod cluster;
pub mod database;
pub mod failover;
pub mod participant_api;
pub mod polling;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod steady_load;
pub mod watch;
pub mod workload;

pub use books::{Audit, Books, Observed, Violation};
pub use cluster::{Cluster, ClusterOptions, CoordinatorStore, Participant, PostgresOptions};
pub use failover::FailoverClient;
pub use process::ServiceProcess;
pub use workload::SagaPlan;
