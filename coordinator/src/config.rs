//! Coordinator configuration: command-line flags, each also settable from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{FlushPolicy, StoreOptions};

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
    /// How long finished sagas (events, state, idempotency key) are kept before removal, in
    /// seconds (1 second to 100 years).
    #[arg(long, env = "COORDINATOR_RETENTION_SECS", default_value_t = 7 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..=100 * 365 * 86_400))]
    pub retention_secs: u64,
    /// How long shutdown waits for in-flight calls before it stops anyway, in milliseconds
    /// (at most an hour).
    #[arg(long, env = "COORDINATOR_SHUTDOWN_GRACE_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub shutdown_grace_ms: u64,
    /// Group commit: while the log is busy, how long a flush waits for more writers to join
    /// it, in microseconds (0: flush as soon as the previous flush ends; at most a second;
    /// tokio's timer rounds up to 1 ms). A quiet log never waits.
    #[arg(long, env = "COORDINATOR_LOG_FLUSH_LINGER_US", default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub log_flush_linger_us: u64,
    /// Group commit: a batch of this many writers is flushed without waiting further.
    #[arg(long, env = "COORDINATOR_LOG_FLUSH_MAX_BATCH", default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub log_flush_max_batch: u64,
    /// Page cache of the saga log, in MiB. The log is written far more than read; the
    /// operating system's page cache is behind it.
    #[arg(long, env = "COORDINATOR_LOG_CACHE_MB", default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub log_cache_mb: u64,
    /// Log lines as plain text (coloured only on a terminal) or as one JSON object per line.
    #[arg(long, env = "COORDINATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable; ANSI colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
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
            log_flush_linger_us: 1_000,
            log_flush_max_batch: 64,
            log_cache_mb: 16,
            log_format: LogFormat::Text,
        }
    }

    /// How the saga log runs.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            cache_bytes: self.log_cache_mb.saturating_mul(1 << 20),
            flush: FlushPolicy {
                linger: Duration::from_micros(self.log_flush_linger_us),
                max_batch: usize::try_from(self.log_flush_max_batch).unwrap_or(usize::MAX),
            },
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
