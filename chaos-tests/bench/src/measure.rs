//! One run of one row: a fresh cluster, a warm-up, the measured load, what it cost.
//!
//! Every run starts its own cluster (new processes, new empty data directories), so runs do
//! not inherit each other's log, caches or sled garbage. The warm-up is a short load whose
//! numbers are discarded (connection pools, allocator, sled's first pages). The measured load
//! is [`crate::loadgen::run_between`], which checks the books afterwards for working
//! participants; right before and after the load the run reads what it cost
//! ([`crate::cost`]: CPU of every process, the database's work), and around it the
//! coordinators' log counters and RSS.
//!
//! A row on PostgreSQL starts its coordinators on a database of a server of the run's own
//! (fresh for every run, like a sled data directory): a durable one
//! ([`crate::durable_postgres`]) unless told otherwise; the clients spread over the
//! instances.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context, bail};
use chaos_tests::cluster::{
    Cluster, ClusterOptions, CoordinatorStore, Participant, PostgresOptions, TAIL_LINES,
};
use chaos_tests::database::DatabaseChoice;
use clap::Parser;
use serde::Serialize;
use serde_json::Value;

use crate::cost::{Cost, DatabaseProbe, Probe};
use crate::durable_postgres::DurableServer;
use crate::matrix::{Participants, Row, Store};
use crate::{loadgen, procfs, prometheus};

/// How every run is done, whatever the row.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Measured load per run.
    pub duration: Duration,
    /// Load before the measured one, discarded; zero for none.
    pub warmup: Duration,
    /// Extra flags for the coordinator.
    pub coordinator_args: Vec<OsString>,
    /// Whether the PostgreSQL server of a row on PostgreSQL fsyncs its commits.
    pub postgres_durability: PostgresDurability,
}

/// How the PostgreSQL server of a row on PostgreSQL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PostgresDurability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` on (PostgreSQL's defaults, and
    /// what a deployment runs with): a commit waits for its WAL on disk, as sled's group
    /// commit waits for its fsync.
    Durable,
    /// All three off, as test servers run (`throwaway-postgres`).
    Throwaway,
}

impl PostgresDurability {
    /// `durable` or `throwaway`.
    pub fn name(self) -> &'static str {
        match self {
            PostgresDurability::Durable => "durable",
            PostgresDurability::Throwaway => "throwaway",
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunMetrics {
    /// 1-based.
    pub run: usize,
    /// Sagas submitted during the measured load.
    pub sagas: u64,
    /// Sagas answered `committed`.
    pub committed: u64,
    /// Sagas answered `aborted`.
    pub aborted: u64,
    /// Submissions that got no terminal answer (errors, timeouts, not finished in `wait_ms`).
    pub not_terminal: u64,
    /// The measured load's wall time.
    pub elapsed_s: f64,
    /// Terminal sagas per second.
    pub throughput: f64,
    /// Median latency of a whole saga, as the client saw it.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The slowest saga.
    pub max_ms: f64,
    /// Coordinator CPU time (user + system) over the load, per submitted saga; on several
    /// instances, their sum.
    pub coordinator_cpu_us_per_saga: Option<f64>,
    /// Coordinator instances.
    pub coordinators: usize,
    /// The participants' CPU, and on PostgreSQL the database's work, per submitted saga.
    pub cost: Option<Cost>,
    /// Growth of `coordinator_log_flushes_total` per finished saga: fsync batches on sled,
    /// commit transactions on PostgreSQL.
    pub log_flushes_per_saga: Option<f64>,
    /// The coordinator's VmRSS at the end of the run (the largest instance's).
    pub coordinator_rss_mb: Option<f64>,
    /// Growth of `coordinator_log_bytes_total` over the load per finished saga; `None` when
    /// the coordinator does not export it.
    pub log_bytes_per_saga: Option<f64>,
    /// The books check; `None` when not checked (no-work participants keep no books).
    pub books_verified: Option<bool>,
    /// Books clean (when checked) and no must-abort saga committed.
    pub ok: bool,
    /// Paths of the kept data directories and logs of a failed run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_dirs: Vec<String>,
    /// loadgen's whole result (outcomes, violations, ...).
    pub loadgen: Value,
}

/// Runs `row` once on a fresh cluster.
pub async fn measure(row: &Row, settings: &RunSettings, run: usize) -> anyhow::Result<RunMetrics> {
    if row.participants == Participants::NoWork && row.abort_ratio > 0.0 {
        bail!(
            "row {}: no-work participants never reject, so no saga could abort",
            row.name
        );
    }
    let participant_args: Vec<OsString> = match row.participants {
        Participants::Working => Vec::new(),
        Participants::NoWork => vec!["--no-work".into()],
    };
    // Lives as long as the run's cluster (dropped after it).
    let durable_server = match (row.store, settings.postgres_durability) {
        (Store::Postgres { .. }, PostgresDurability::Durable) => Some(
            DurableServer::start()
                .await
                .with_context(|| format!("row {} run {run}: a durable server", row.name))?,
        ),
        _ => None,
    };
    let store = match (row.store, &durable_server) {
        (Store::Sled, _) => CoordinatorStore::Sled,
        // The coordinator's default lease: what a deployment runs with.
        (Store::Postgres { .. }, Some(server)) => CoordinatorStore::Postgres(PostgresOptions {
            lease: None,
            database: DatabaseChoice::Existing(server.database_url()),
        }),
        (Store::Postgres { .. }, None) => CoordinatorStore::Postgres(PostgresOptions {
            lease: None,
            database: DatabaseChoice::OwnServer,
        }),
    };
    let options = ClusterOptions {
        coordinators: row.store.instances(),
        store,
        coordinator_args: settings.coordinator_args.clone(),
        wallet_args: participant_args.clone(),
        order_args: participant_args.clone(),
        points_args: participant_args,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(options)
        .await
        .with_context(|| format!("row {} run {run}: starting the cluster", row.name))?;
    let server = durable_server
        .as_ref()
        .map(|s| (s.pid(), s.port()))
        .or_else(|| {
            let server = cluster.database()?.server()?;
            Some((server.pid(), server.port()))
        });
    let measured = measure_on(&mut cluster, server, row, settings, run).await;
    match measured {
        Ok(mut metrics) => {
            if !metrics.ok {
                metrics.kept_dirs = keep_dirs(&mut cluster);
            }
            Ok(metrics)
        }
        Err(e) => {
            let kept = keep_dirs(&mut cluster);
            Err(e.context(format!(
                "row {} run {run} failed; data and logs kept in {}\n{}",
                row.name,
                kept.join(", "),
                cluster.log_tails(TAIL_LINES)
            )))
        }
    }
}

/// One run on `cluster`, whose database server (postmaster pid and port), on PostgreSQL, is
/// `server`.
async fn measure_on(
    cluster: &mut Cluster,
    server: Option<(u32, u16)>,
    row: &Row,
    settings: &RunSettings,
    run: usize,
) -> anyhow::Result<RunMetrics> {
    let pids: Vec<u32> = cluster
        .coordinators()
        .iter()
        .map(|c| c.process().pid().context("a coordinator is not running"))
        .collect::<anyhow::Result<_>>()?;
    let mut participant_pids = Vec::new();
    for participant in Participant::ALL {
        let pid = cluster.participant_process(participant).pid();
        participant_pids.push(pid.context("a participant is not running")?);
    }
    let database = match (cluster.database(), server) {
        (Some(database), Some((pid, port))) => Some(DatabaseProbe {
            pid,
            port,
            connection: database.connect().await?,
        }),
        _ => None,
    };
    let probe = Probe {
        coordinators: pids.clone(),
        participants: participant_pids,
        database,
    };
    let tag = format!("bench-{}-r{run}", row.name);

    if !settings.warmup.is_zero() {
        let mut warmup = load_args(row, cluster, settings.warmup, format!("{tag}-warmup"));
        warmup.verify = false;
        loadgen::run(warmup).await.context("warm-up")?;
    }

    let http = reqwest::Client::new();
    let coordinators: Vec<String> = cluster.coordinators().iter().map(|c| c.url()).collect();
    let before = prometheus::scrape_all(&http, &coordinators).await.ok();
    let mut args = load_args(row, cluster, settings.duration, tag);
    args.coordinator_pid = pids.clone();
    let (report, at_start, at_end) = loadgen::run_between(
        args,
        async || probe.snapshot().await,
        async || probe.snapshot().await,
    )
    .await
    .context("measured load")?;
    let after = prometheus::scrape_all(&http, &coordinators).await.ok();
    // The largest instance: what one coordinator needs.
    let rss = pids
        .iter()
        .filter_map(|&pid| procfs::rss_mb(pid))
        .reduce(f64::max);

    let json = report.json;
    let outcome = |label: &str| json["outcomes"][label].as_u64().unwrap_or(0);
    let number = |pointer: &str| {
        json.pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("loadgen's result has no {pointer}"))
    };
    let sagas = json["sagas"]
        .as_u64()
        .context("loadgen's result has no sagas")?;
    let committed = outcome("committed");
    let aborted = outcome("aborted");
    let cost = match (at_start, at_end) {
        (Ok(start), Ok(end)) => Some(probe.cost(&start, &end, sagas).await?),
        // A process gone before the end (it should not be): no cost, the rest still stands.
        _ => None,
    };
    Ok(RunMetrics {
        run,
        sagas,
        committed,
        aborted,
        not_terminal: sagas.saturating_sub(committed + aborted),
        elapsed_s: number("/elapsed_s")?,
        throughput: number("/throughput")?,
        p50_ms: number("/latency_ms/p50")?,
        p90_ms: number("/latency_ms/p90")?,
        p99_ms: number("/latency_ms/p99")?,
        p999_ms: number("/latency_ms/p999")?,
        max_ms: number("/latency_ms/max")?,
        coordinator_cpu_us_per_saga: json["coordinator_cpu_us_per_saga"].as_f64(),
        coordinators: pids.len(),
        cost,
        coordinator_rss_mb: rss,
        log_bytes_per_saga: before
            .zip(after)
            .and_then(|(before, after)| before.log_bytes_per_saga(&after)),
        log_flushes_per_saga: before
            .zip(after)
            .and_then(|(before, after)| before.log_flushes_per_saga(&after)),
        books_verified: json["verify"]["clean"].as_bool(),
        ok: report.ok,
        kept_dirs: Vec::new(),
        loadgen: json,
    })
}

/// Keeps every process's data directory and log for a post-mortem; returns their paths.
fn keep_dirs(cluster: &mut Cluster) -> Vec<String> {
    cluster.keep_dirs();
    let mut dirs: Vec<String> = cluster
        .coordinators()
        .iter()
        .map(|c| c.process().root().display().to_string())
        .collect();
    for participant in Participant::ALL {
        dirs.push(
            cluster
                .participant_process(participant)
                .root()
                .display()
                .to_string(),
        );
    }
    dirs
}

/// loadgen's arguments for `row` against `cluster`: closed loop for `duration`, quiet, books
/// checked when the participants keep them.
fn load_args(row: &Row, cluster: &Cluster, duration: Duration, tag: String) -> loadgen::Args {
    let mut args = loadgen::Args::parse_from(["loadgen"]);
    args.coordinator = cluster.coordinators().iter().map(|c| c.url()).collect();
    args.clients = row.clients;
    args.duration = Some(duration.as_secs_f64());
    args.abort_ratio = row.abort_ratio;
    args.tag = Some(tag);
    args.quiet = true;
    if row.verifies() {
        args.wallet = Some(cluster.wallet_url());
        args.order = Some(cluster.order_url());
        args.points = Some(cluster.points_url());
        args.verify = true;
    }
    args
}
