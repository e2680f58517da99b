//! The saga coordinator's load generator and benchmark, on top of the `chaos-tests` harness
//! (its process handling, cluster and books checker).
//!
//! [`loadgen`] drives sagas against any running coordinator (the `loadgen` binary, and the
//! measured load of every benchmark run). The rest is the benchmark mode behind the `bench`
//! binary: one command runs the standard matrix of issue 5 (concurrency 1/16/64/256, 10 %
//! aborts, coordinator overhead with no-work participants), each row several times on a fresh
//! cluster, and the recovery suite (a restart with 100,000 sagas in flight), and writes the
//! medians.
//!
//! - [`loadgen`]: closed- or open-loop load, throughput, latency percentiles (HDR histogram),
//!   coordinator CPU per saga, the books verified afterwards;
//! - [`procfs`]: a process's memory (VmRSS, VmHWM) and CPU time from `/proc`;
//! - [`matrix`]: rows (clients, abort ratio, working or no-work participants) grouped in
//!   suites, the standard matrix and `--only` selection;
//! - [`measure`]: one run of one row: fresh cluster (on sled, or on PostgreSQL with one or
//!   several coordinators), warm-up, measured load (loadgen, with the books checked), the
//!   coordinators' CPU per saga, RSS, log bytes and flushes per saga;
//! - [`cost`]: the participants' CPU per saga, and on PostgreSQL the database's CPU, WAL bytes,
//!   round trips and bytes on the wire per saga;
//! - [`wire`]: TCP traffic of processes to a port, from the kernel's socket counters (`ss`);
//! - [`durable_postgres`]: a PostgreSQL server with durability on, for rows on PostgreSQL;
//! - [`prometheus`]: counters from the coordinator's `/metrics`;
//! - [`summary`]: medians per row, the cost of aborts against committing;
//! - [`recovery`]: the recovery suite: seeded sagas in flight, timed restarts, memory;
//! - [`soak`]: the soak suite: minutes at steady load, RSS and disk of every process sampled,
//!   growth after the warm-up;
//! - [`table`]: `results.md` and the progress lines;
//! - [`chart`]: the chart, `throughput_p99.svg`;
//! - [`soak_chart`]: the soak's chart, `soak.svg`;
//! - [`machine`]: what it ran on.
//!
//! [`run`] runs every selected row `runs` times, then the recovery suite if selected, and
//! returns [`BenchResults`]; [`write_outputs`] writes `results.json`, `results.md` and the chart.
//!
//! Running: see `chaos-tests/bench/README.md`.

pub mod chart;
pub mod cost;
pub mod durable_postgres;
pub mod loadgen;
pub mod machine;
pub mod matrix;
pub mod measure;
pub mod procfs;
pub mod prometheus;
pub mod recovery;
pub mod soak;
pub mod soak_chart;
pub mod summary;
pub mod table;
pub mod wire;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use machine::Machine;
use matrix::Suite;
use measure::RunSettings;
use recovery::{RecoveryResult, RecoverySettings};
use soak::{SoakResult, SoakSettings};
use summary::{AbortCost, RowResult};

/// Everything measured, for tools.
pub const JSON_FILE: &str = "results.json";
/// The tables, for the README.
pub const MARKDOWN_FILE: &str = "results.md";
/// Throughput and p99 against clients.
pub const CHART_FILE: &str = "throughput_p99.svg";
/// The soak's RSS and disk against time.
pub const SOAK_CHART_FILE: &str = "soak.svg";

/// How the benchmark was run, recorded with the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Runs per row.
    pub runs: usize,
    /// Seconds of measured load per run.
    pub duration_s: f64,
    /// Seconds of warm-up load per run.
    pub warmup_s: f64,
    /// Cargo profile of the service binaries (`release`, `debug`).
    pub profile: String,
    /// The services' `RUST_LOG`.
    pub rust_log: String,
    /// Extra flags given to the coordinator.
    pub coordinator_args: Vec<String>,
    /// Rows on PostgreSQL: `durable` (fsync, synchronous commit, full-page writes on) or
    /// `throwaway` (all off).
    pub postgres_durability: String,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResults {
    /// What it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: Settings,
    /// Every load row that ran, with its runs and medians.
    pub rows: Vec<RowResult>,
    /// Rows with aborts against their all-commit baseline.
    pub abort_costs: Vec<AbortCost>,
    /// The recovery suite, when selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryResult>,
    /// The soak suite, when selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakResult>,
    /// Why the benchmark stopped before the last row (a cluster that did not start, a load
    /// that failed, seeding the recovery suite failed); the rows before it are complete.
    pub error: Option<String>,
}

impl BenchResults {
    /// Every row ran and no run's books (or must-abort sagas) were wrong, and every recovery
    /// run saw every saga active.
    pub fn ok(&self) -> bool {
        self.stopped_early().is_none()
            && self.rows.iter().all(|r| r.median.failed_runs == 0)
            && self.recovery.as_ref().is_none_or(RecoveryResult::ok)
            && self.soak.as_ref().is_none_or(|s| s.ok)
    }

    /// Why the benchmark could not run to the end, if it could not: a row's error or one of
    /// the recovery suite.
    pub fn stopped_early(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or_else(|| self.recovery.as_ref()?.error.as_deref())
    }

    /// The chart's lines: one per suite with a series label, its rows' medians against clients.
    pub fn chart_series(&self, suites: &[Suite]) -> Vec<chart::Series> {
        suites
            .iter()
            .filter_map(|suite| {
                let label = suite.series.clone()?;
                let mut points: Vec<chart::Point> = self
                    .rows
                    .iter()
                    .filter(|r| r.suite == suite.name)
                    .filter_map(|r| {
                        Some(chart::Point {
                            clients: r.row.clients,
                            throughput: r.median.throughput?,
                            p99_ms: r.median.p99_ms?,
                        })
                    })
                    .collect();
                points.sort_by_key(|p| p.clients);
                (!points.is_empty()).then_some(chart::Series { label, points })
            })
            .collect()
    }
}

/// Runs every row of `suites` `settings.runs` times, each on a fresh cluster, then the
/// recovery suite when `recovery` is given, printing a progress line per run on stderr. A run
/// whose books are wrong is recorded and the benchmark goes on; an error (a cluster that does
/// not start) stops it, keeping the runs so far.
pub async fn run(
    suites: &[Suite],
    settings: Settings,
    run_settings: &RunSettings,
    recovery: Option<&RecoverySettings>,
    soak: Option<&SoakSettings>,
) -> BenchResults {
    let mut results = BenchResults {
        machine: Machine::detect(),
        settings,
        rows: Vec::new(),
        abort_costs: Vec::new(),
        recovery: None,
        soak: None,
        error: None,
    };
    let runs = results.settings.runs;
    'suites: for suite in suites {
        for row in &suite.rows {
            let (measured, failure) = repeat(
                runs,
                async |run| measure::measure(row, run_settings, run).await,
                |run, metrics| table::progress_line(&row.name, run, runs, metrics),
            )
            .await;
            if !measured.is_empty() {
                results
                    .rows
                    .push(RowResult::new(&suite.name, row.clone(), measured));
            }
            if failure.is_some() {
                results.error = failure;
                break 'suites;
            }
        }
    }
    results.abort_costs = summary::abort_costs(&results.rows);
    if let Some(settings) = recovery
        && results.error.is_none()
    {
        match recovery::run(settings).await {
            Ok(recovery) => results.recovery = Some(recovery),
            Err(e) => results.error = Some(format!("recovery suite: {e:#}")),
        }
    }
    if let Some(settings) = soak
        && results.error.is_none()
    {
        match soak::run(settings).await {
            Ok(soak) => results.soak = Some(soak),
            Err(e) => results.error = Some(format!("soak suite: {e:#}")),
        }
    }
    results
}

/// Runs `measure` for runs `1..=runs`, printing `progress` of each on stderr. Stops at the
/// first error: the runs before it and the error.
async fn repeat<T>(
    runs: usize,
    mut measure: impl AsyncFnMut(usize) -> anyhow::Result<T>,
    progress: impl Fn(usize, &T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut measured = Vec::with_capacity(runs);
    for run in 1..=runs {
        match measure(run).await {
            Ok(metrics) => {
                eprintln!("{}", progress(run, &metrics));
                measured.push(metrics);
            }
            Err(e) => return (measured, Some(format!("{e:#}"))),
        }
    }
    (measured, None)
}

/// The files [`write_outputs`] wrote.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// `results.json`.
    pub json: PathBuf,
    /// `results.md`.
    pub markdown: PathBuf,
    /// `None` when no load row ran (only the recovery suite): nothing to draw.
    pub chart: Option<PathBuf>,
    /// `soak.svg`, when the soak suite ran.
    pub soak_chart: Option<PathBuf>,
}

/// Writes `results.json`, `results.md`, when load rows ran `throughput_p99.svg`, and when the
/// soak ran `soak.svg` into `out` (created if missing); returns the markdown too, for stdout.
pub fn write_outputs(
    results: &BenchResults,
    suites: &[Suite],
    out: &Path,
) -> anyhow::Result<(Outputs, String)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let outputs = Outputs {
        json: out.join(JSON_FILE),
        markdown: out.join(MARKDOWN_FILE),
        chart: (!results.rows.is_empty()).then(|| out.join(CHART_FILE)),
        soak_chart: results.soak.is_some().then(|| out.join(SOAK_CHART_FILE)),
    };
    let write = |path: &Path, content: &[u8]| {
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
    };
    write(&outputs.json, &serde_json::to_vec_pretty(results)?)?;
    let markdown = table::markdown(results);
    write(&outputs.markdown, markdown.as_bytes())?;
    if let (Some(path), Some(soak)) = (&outputs.soak_chart, &results.soak) {
        let subtitle = format!(
            "{} build, {} clients, {:.0} % aborts; {}",
            results.settings.profile,
            soak.clients,
            soak.abort_ratio * 100.0,
            results.machine.describe()
        );
        write(path, soak_chart::render(soak, &subtitle)?.as_bytes())?;
    }
    let Some(chart) = &outputs.chart else {
        return Ok((outputs, markdown));
    };
    let s = &results.settings;
    let subtitle = format!(
        "{} build, medians of {} × {} s per point; {}",
        s.profile,
        s.runs,
        s.duration_s,
        results.machine.describe()
    );
    let svg = chart::render(&results.chart_series(suites), &subtitle)?;
    write(chart, svg.as_bytes())?;
    Ok((outputs, markdown))
}
