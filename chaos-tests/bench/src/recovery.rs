//! The `recovery` suite: how long the coordinator takes to resume 100,000 sagas in flight after
//! a restart, and how much memory it holds with them (the recovery and memory targets of issue
//! 5: ready ≤ 5 s, RSS ≤ 200 MB).
//!
//! - [`seed`]: writes the sagas in flight once per benchmark, through the coordinator's own
//!   store, each waiting on a retry timer a day away (so nothing is called while measuring);
//! - [`restart`]: one run: the release coordinator on a fresh copy of the seeded directory,
//!   timed from spawn to `/readyz`, its memory and CPU from `/proc`, its `sagas_active` gauge.
//!
//! [`run`] seeds, restarts `runs` times and returns every run with the medians.

pub mod restart;
pub mod seed;

use serde::Serialize;

use crate::summary::{median_of, median_of_some};
pub use restart::{RestartMetrics, RestartSettings};
pub use seed::SeedReport;

/// The suite's name for `--only` and `--list`.
pub const SUITE: &str = "recovery";
/// Sagas in flight by default: the figure of the targets.
pub const DEFAULT_SAGAS: usize = 100_000;
/// Sagas in flight with `--quick`.
pub const QUICK_SAGAS: usize = 10_000;
/// Issue 5: resumed (`/readyz` green) within this many seconds of a restart...
pub const READY_TARGET_S: f64 = 5.0;
/// ... holding at most this much resident memory with the sagas in flight.
pub const RSS_TARGET_MB: f64 = 200.0;

/// What the suite does.
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// Sagas in flight to recover.
    pub sagas: usize,
    /// Timed restarts.
    pub runs: usize,
    /// How each restart is done.
    pub restart: RestartSettings,
}

/// The medians of the runs, metric by metric (see [`crate::summary`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoverySummary {
    /// Runs that finished.
    pub runs: usize,
    /// Runs in which the coordinator did not report every saga active.
    pub failed_runs: usize,
    /// Median time to `/readyz`.
    pub ready_s: Option<f64>,
    /// Fastest time to `/readyz`.
    pub ready_min_s: Option<f64>,
    /// Slowest time to `/readyz`.
    pub ready_max_s: Option<f64>,
    /// Median time to `/healthz`.
    pub healthy_s: Option<f64>,
    /// Median CPU time to ready.
    pub cpu_to_ready_s: Option<f64>,
    /// Median VmRSS when ready.
    pub rss_at_ready_mb: Option<f64>,
    /// Median VmRSS after the settle time.
    pub rss_settled_mb: Option<f64>,
    /// Median VmHWM after the settle time.
    pub peak_rss_mb: Option<f64>,
    /// Median `sagas_active` when ready.
    pub active_at_ready: Option<f64>,
    /// Median `sagas_active` after the settle time.
    pub active_settled: Option<f64>,
    /// Log bytes resuming wrote, per saga.
    pub recovery_log_bytes_per_saga: Option<f64>,
    /// Median time from SIGTERM to exit.
    pub shutdown_s: Option<f64>,
}

impl RecoverySummary {
    /// The medians of `runs` (and the spread of the ready times).
    pub fn of(runs: &[RestartMetrics]) -> RecoverySummary {
        let ready = runs.iter().map(|r| r.ready_s);
        RecoverySummary {
            runs: runs.len(),
            failed_runs: runs.iter().filter(|r| !r.ok).count(),
            ready_s: median_of(runs, |r| r.ready_s),
            ready_min_s: ready.clone().reduce(f64::min),
            ready_max_s: ready.reduce(f64::max),
            healthy_s: median_of(runs, |r| r.healthy_s),
            cpu_to_ready_s: median_of_some(runs, |r| r.cpu_to_ready_s),
            rss_at_ready_mb: median_of_some(runs, |r| r.rss_at_ready_mb),
            rss_settled_mb: median_of_some(runs, |r| r.rss_settled_mb),
            peak_rss_mb: median_of_some(runs, |r| r.peak_rss_mb),
            active_at_ready: median_of_some(runs, |r| r.active_at_ready),
            active_settled: median_of_some(runs, |r| r.active_settled),
            recovery_log_bytes_per_saga: median_of_some(runs, |r| {
                r.recovery_log_bytes
                    .filter(|_| r.sagas > 0)
                    .map(|bytes| bytes / r.sagas as f64)
            }),
            shutdown_s: median_of_some(runs, |r| r.shutdown_s),
        }
    }

    /// Resident memory with every saga in flight: the larger of at ready and settled.
    pub fn rss_in_flight_mb(&self) -> Option<f64> {
        match (self.rss_at_ready_mb, self.rss_settled_mb) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Everything the suite measured, for `results.json` and `results.md`.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryResult {
    /// Sagas seeded.
    pub sagas: usize,
    /// What seeding did.
    pub seed: SeedReport,
    /// Data directory bytes on disk per saga in flight.
    pub data_dir_bytes_per_saga: Option<f64>,
    /// How often `/healthz` and `/readyz` were polled.
    pub poll_ms: u64,
    /// How long after ready the settled figures were read.
    pub settle_s: f64,
    /// The medians.
    pub median: RecoverySummary,
    /// Every restart.
    pub runs: Vec<RestartMetrics>,
    /// Why the suite stopped before its last run; the runs before it are complete.
    pub error: Option<String>,
}

impl RecoveryResult {
    /// Every run finished and saw every saga active.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.median.failed_runs == 0
    }
}

/// Seeds `settings.sagas` sagas in flight, then restarts the coordinator on a copy of them
/// `settings.runs` times, printing a progress line per step on stderr. `Err` only when seeding
/// fails; a run that fails ends the suite with its error recorded in the result.
pub async fn run(settings: &RecoverySettings) -> anyhow::Result<RecoveryResult> {
    let dir = tempfile::Builder::new()
        .prefix("bench-recovery-seed-")
        .tempdir()?;
    let seeded = dir.path().join("data");
    eprintln!(
        "recovery: seeding {} sagas in flight ...",
        crate::table::thousands(settings.sagas as f64)
    );
    let seed = seed::seed(&seeded, settings.sagas).await?;
    eprintln!("{}", crate::table::seed_line(&seed));
    let (runs, error) = crate::repeat(
        settings.runs,
        async |run| restart::measure(&seeded, settings.sagas, &settings.restart, run).await,
        |run, metrics| crate::table::recovery_progress_line(run, settings.runs, metrics),
    )
    .await;
    Ok(RecoveryResult {
        sagas: settings.sagas,
        data_dir_bytes_per_saga: seed.bytes_per_saga(),
        seed,
        poll_ms: settings.restart.poll.as_millis() as u64,
        settle_s: settings.restart.settle.as_secs_f64(),
        median: RecoverySummary::of(&runs),
        runs,
        error,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run with these figures (the rest plausible).
    pub(crate) fn restart_run(
        run: usize,
        ready_s: f64,
        rss_mb: f64,
        active: f64,
    ) -> RestartMetrics {
        RestartMetrics {
            run,
            sagas: 100_000,
            healthy_s: 0.05,
            ready_s,
            cpu_to_ready_s: Some(ready_s * 0.9),
            rss_at_ready_mb: Some(rss_mb),
            peak_rss_at_ready_mb: Some(rss_mb + 10.0),
            rss_settled_mb: Some(rss_mb - 5.0),
            peak_rss_mb: Some(rss_mb + 20.0),
            active_at_ready: Some(active),
            active_settled: Some(active),
            recovery_log_bytes: Some(5_000_000.0),
            shutdown_s: Some(0.2),
            ok: active == 100_000.0,
            kept_dir: None,
        }
    }

    #[test]
    fn medians_and_the_spread_of_ready_times() {
        let runs = [
            restart_run(1, 3.0, 150.0, 100_000.0),
            restart_run(2, 2.0, 170.0, 100_000.0),
            restart_run(3, 4.5, 160.0, 99_000.0),
        ];
        let summary = RecoverySummary::of(&runs);
        assert_eq!(summary.runs, 3);
        assert_eq!(summary.failed_runs, 1);
        assert_eq!(summary.ready_s, Some(3.0));
        assert_eq!(summary.ready_min_s, Some(2.0));
        assert_eq!(summary.ready_max_s, Some(4.5));
        assert_eq!(summary.rss_at_ready_mb, Some(160.0));
        assert_eq!(summary.rss_in_flight_mb(), Some(160.0));
        assert_eq!(summary.peak_rss_mb, Some(180.0));
        assert_eq!(summary.active_at_ready, Some(100_000.0));
        assert_eq!(summary.recovery_log_bytes_per_saga, Some(50.0));
        let none = RecoverySummary::of(&[]);
        assert_eq!(
            (none.ready_s, none.ready_min_s, none.failed_runs),
            (None, None, 0)
        );
    }
}
