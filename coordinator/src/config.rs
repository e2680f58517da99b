//! Coordinator configuration: command-line flags, each also settable from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Saga-orchestrated distributed transaction coordinator"
)]
pub struct CoordinatorConfig {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "COORDINATOR_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Directory of the saga log (created if missing).
    #[arg(long, env = "COORDINATOR_DATA_DIR", default_value = "data/coordinator")]
    pub data_dir: PathBuf,
    /// Directory of workflow files (*.json, *.yaml) loaded at start-up. Default: `sagas/` when
    /// it exists.
    #[arg(long, env = "COORDINATOR_WORKFLOWS")]
    pub workflows: Option<PathBuf>,
    /// Saga submissions accepted per second; more get `429` with `Retry-After`. Unlimited
    /// when absent.
    #[arg(long, env = "COORDINATOR_SUBMIT_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    pub submit_rate_limit: Option<u32>,
    /// How long finished sagas (events, state, idempotency key) are kept before removal.
    #[arg(long, env = "COORDINATOR_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub retention_secs: u64,
    /// How long shutdown waits for in-flight calls before it stops anyway.
    #[arg(long, env = "COORDINATOR_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
}

impl CoordinatorConfig {
    /// A configuration for tests and embedding: port 0, the given data dir, no workflow files.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> CoordinatorConfig {
        CoordinatorConfig {
            listen: "127.0.0.1:0".parse().expect("a literal address parses"),
            data_dir: data_dir.into(),
            workflows: None,
            submit_rate_limit: None,
            retention_secs: 7 * 24 * 3600,
            shutdown_grace_ms: 5_000,
        }
    }

    /// The workflow directory to load, if any: explicit, else `sagas/` when present.
    pub fn workflow_dir(&self) -> Option<PathBuf> {
        match &self.workflows {
            Some(dir) => Some(dir.clone()),
            None => Some(PathBuf::from("sagas")).filter(|d| d.is_dir()),
        }
    }
}
