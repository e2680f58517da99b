//! Medians over a row's runs, and what aborts cost compared with committing.
//!
//! Every reported figure is the median of the runs' figures, metric by metric (the run with
//! the median throughput need not be the one with the median p99): one slow or lucky run moves
//! none of them.

use serde::Serialize;

use crate::matrix::Row;
use crate::measure::RunMetrics;

/// The median of `values`: the middle one, or the mean of the two middle ones; `None` if
/// there are none. NaNs sort last.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The median of `metric` over every run.
pub fn median_of<T>(runs: &[T], metric: impl Fn(&T) -> f64) -> Option<f64> {
    median(runs.iter().map(metric).collect())
}

/// The median of `metric` over the runs that have it.
pub fn median_of_some<T>(runs: &[T], metric: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(metric).collect())
}

/// The medians of a row's runs. Optional metrics take the median of the runs that have them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowSummary {
    /// Runs that finished.
    pub runs: usize,
    /// Runs whose books or must-abort sagas were wrong.
    pub failed_runs: usize,
    /// Median terminal sagas per second.
    pub throughput: Option<f64>,
    /// Median p50 latency.
    pub p50_ms: Option<f64>,
    /// Median p90 latency.
    pub p90_ms: Option<f64>,
    /// Median p99 latency.
    pub p99_ms: Option<f64>,
    /// Median p99.9 latency.
    pub p999_ms: Option<f64>,
    /// Median slowest saga.
    pub max_ms: Option<f64>,
    /// Median committed sagas.
    pub committed: Option<f64>,
    /// Median aborted sagas.
    pub aborted: Option<f64>,
    /// Median submissions without a terminal answer.
    pub not_terminal: Option<f64>,
    /// Median coordinator CPU per saga.
    pub coordinator_cpu_us_per_saga: Option<f64>,
    /// Median coordinator VmRSS at the end.
    pub coordinator_rss_mb: Option<f64>,
    /// Median log bytes per finished saga.
    pub log_bytes_per_saga: Option<f64>,
    /// Median log flushes (fsync batches, commit transactions) per finished saga.
    pub log_flushes_per_saga: Option<f64>,
    /// Median participants' CPU per saga.
    pub participants_cpu_us_per_saga: Option<f64>,
    /// Median database server CPU per saga (PostgreSQL).
    pub database_cpu_us_per_saga: Option<f64>,
    /// Median WAL bytes per saga (PostgreSQL).
    pub wal_bytes_per_saga: Option<f64>,
    /// Median round trips to the database per saga (PostgreSQL).
    pub database_round_trips_per_saga: Option<f64>,
    /// Median bytes sent to the database per saga (PostgreSQL).
    pub database_bytes_sent_per_saga: Option<f64>,
    /// Median bytes received from the database per saga (PostgreSQL).
    pub database_bytes_received_per_saga: Option<f64>,
    /// Every run's books balanced; `None` when none was checked.
    pub books_verified: Option<bool>,
}

impl RowSummary {
    /// The medians of `runs`, metric by metric.
    pub fn of(runs: &[RunMetrics]) -> RowSummary {
        let checked: Vec<bool> = runs.iter().filter_map(|r| r.books_verified).collect();
        RowSummary {
            runs: runs.len(),
            failed_runs: runs.iter().filter(|r| !r.ok).count(),
            throughput: median_of(runs, |r| r.throughput),
            p50_ms: median_of(runs, |r| r.p50_ms),
            p90_ms: median_of(runs, |r| r.p90_ms),
            p99_ms: median_of(runs, |r| r.p99_ms),
            p999_ms: median_of(runs, |r| r.p999_ms),
            max_ms: median_of(runs, |r| r.max_ms),
            committed: median_of(runs, |r| r.committed as f64),
            aborted: median_of(runs, |r| r.aborted as f64),
            not_terminal: median_of(runs, |r| r.not_terminal as f64),
            coordinator_cpu_us_per_saga: median_of_some(runs, |r| r.coordinator_cpu_us_per_saga),
            coordinator_rss_mb: median_of_some(runs, |r| r.coordinator_rss_mb),
            log_bytes_per_saga: median_of_some(runs, |r| r.log_bytes_per_saga),
            log_flushes_per_saga: median_of_some(runs, |r| r.log_flushes_per_saga),
            participants_cpu_us_per_saga: median_of_some(runs, |r| {
                r.cost?.participants_cpu_us_per_saga
            }),
            database_cpu_us_per_saga: median_of_some(runs, |r| r.cost?.database?.cpu_us_per_saga),
            wal_bytes_per_saga: median_of_some(runs, |r| r.cost?.database?.wal_bytes_per_saga),
            database_round_trips_per_saga: median_of_some(runs, |r| {
                r.cost?.database?.round_trips_per_saga
            }),
            database_bytes_sent_per_saga: median_of_some(runs, |r| {
                r.cost?.database?.bytes_sent_per_saga
            }),
            database_bytes_received_per_saga: median_of_some(runs, |r| {
                r.cost?.database?.bytes_received_per_saga
            }),
            books_verified: (!checked.is_empty()).then(|| checked.iter().all(|&ok| ok)),
        }
    }
}

/// One row: which suite, its shape, every run, the medians.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// The suite it belongs to.
    pub suite: String,
    #[serde(flatten)]
    /// Its shape.
    pub row: Row,
    /// The medians over its runs.
    pub median: RowSummary,
    /// Every run.
    pub runs: Vec<RunMetrics>,
}

impl RowResult {
    /// A row of `suite` with its runs and their medians.
    pub fn new(suite: &str, row: Row, runs: Vec<RunMetrics>) -> RowResult {
        RowResult {
            suite: suite.to_string(),
            median: RowSummary::of(&runs),
            row,
            runs,
        }
    }
}

/// A row with aborts against its all-commit baseline, from the medians.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbortCost {
    /// The row with aborts.
    pub row: String,
    /// Its all-commit row.
    pub baseline: String,
    /// Their clients.
    pub clients: usize,
    /// Coordinator CPU per saga of the row / of the baseline.
    pub cpu_ratio: Option<f64>,
    /// Throughput of the row / of the baseline.
    pub throughput_ratio: Option<f64>,
}

/// The cost of every row that has a baseline among `rows`.
pub fn abort_costs(rows: &[RowResult]) -> Vec<AbortCost> {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    rows.iter()
        .filter_map(|result| {
            let baseline_name = result.row.baseline()?;
            let baseline = rows.iter().find(|r| r.row.name == baseline_name)?;
            Some(AbortCost {
                row: result.row.name.clone(),
                baseline: baseline_name,
                clients: result.row.clients,
                cpu_ratio: ratio(
                    result.median.coordinator_cpu_us_per_saga,
                    baseline.median.coordinator_cpu_us_per_saga,
                ),
                throughput_ratio: ratio(result.median.throughput, baseline.median.throughput),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::matrix::Participants;

    /// A run with these figures (everything else zero or absent).
    pub(crate) fn run(throughput: f64, p99_ms: f64, cpu: Option<f64>, ok: bool) -> RunMetrics {
        RunMetrics {
            run: 1,
            sagas: 100,
            committed: 90,
            aborted: 10,
            not_terminal: 0,
            elapsed_s: 1.0,
            throughput,
            p50_ms: p99_ms / 2.0,
            p90_ms: p99_ms / 1.5,
            p99_ms,
            p999_ms: p99_ms * 1.2,
            max_ms: p99_ms * 1.5,
            coordinator_cpu_us_per_saga: cpu,
            coordinators: 1,
            cost: None,
            log_flushes_per_saga: None,
            coordinator_rss_mb: Some(40.0),
            log_bytes_per_saga: None,
            books_verified: Some(ok),
            ok,
            kept_dirs: Vec::new(),
            loadgen: serde_json::Value::Null,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn medians_are_per_metric_and_one_bad_run_fails_the_books() {
        let runs = vec![
            run(1000.0, 90.0, Some(700.0), true),
            run(1200.0, 80.0, None, false),
            run(1100.0, 120.0, Some(650.0), true),
        ];
        let summary = RowSummary::of(&runs);
        assert_eq!(summary.throughput, Some(1100.0));
        assert_eq!(summary.p99_ms, Some(90.0));
        assert_eq!(summary.coordinator_cpu_us_per_saga, Some(675.0));
        assert_eq!(summary.log_bytes_per_saga, None);
        assert_eq!(summary.failed_runs, 1);
        assert_eq!(summary.books_verified, Some(false));
    }

    #[test]
    fn aborts_are_compared_with_their_baseline_when_it_ran() {
        let commit = RowResult::new(
            "concurrency",
            Row::new(64, 0.0, Participants::Working),
            vec![run(1000.0, 90.0, Some(500.0), true)],
        );
        let abort = RowResult::new(
            "aborts",
            Row::new(64, 0.1, Participants::Working),
            vec![run(900.0, 95.0, Some(550.0), true)],
        );
        let lonely = RowResult::new(
            "aborts",
            Row::new(256, 0.1, Participants::Working),
            vec![run(900.0, 300.0, Some(550.0), true)],
        );
        let costs = abort_costs(&[commit, abort, lonely]);
        assert_eq!(costs.len(), 1);
        assert_eq!(costs[0].row, "64c-abort10");
        assert_eq!(costs[0].baseline, "64c");
        assert!((costs[0].cpu_ratio.unwrap() - 1.1).abs() < 1e-9);
        assert!((costs[0].throughput_ratio.unwrap() - 0.9).abs() < 1e-9);
    }
}
