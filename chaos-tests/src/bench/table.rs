//! The human-readable outputs: `results.md` (markdown tables ready to paste into the README,
//! also printed on stdout at the end) and the progress line after each run.

use std::fmt::Write as _;

use super::matrix::Participants;
use super::measure::RunMetrics;
use super::{BenchResults, CHART_FILE};

/// The coordinator CPU per saga that issue 5 asks for with no-work participants.
pub const OVERHEAD_TARGET_US: f64 = 100.0;

/// `row 64c run 2/3: 1,180 sagas/s p99 87 ms, coordinator 663 µs CPU/saga`.
pub fn progress_line(row: &str, run: usize, runs: usize, m: &RunMetrics) -> String {
    let mut line = format!(
        "row {row} run {run}/{runs}: {} sagas/s p99 {} ms, coordinator {} µs CPU/saga",
        thousands(m.throughput),
        ms(m.p99_ms),
        optional(m.coordinator_cpu_us_per_saga, thousands),
    );
    match m.books_verified {
        Some(true) => line.push_str(", books verified"),
        Some(false) => line.push_str(", BOOKS WRONG"),
        None => {}
    }
    if !m.ok && m.books_verified != Some(false) {
        line.push_str(", A MUST-ABORT SAGA COMMITTED");
    }
    if m.not_terminal > 0 {
        line.push_str(&format!(", {} not terminal", m.not_terminal));
    }
    line
}

/// The whole `results.md`.
pub fn markdown(results: &BenchResults) -> String {
    let s = &results.settings;
    let mut out = String::new();
    let _ = writeln!(out, "## Benchmark results\n");
    let _ = writeln!(
        out,
        "{} build, coordinator and participants on one machine ({}); medians of {} run{} of {} s \
         per row, each on a fresh cluster after {} s of warm-up; RUST_LOG={}.",
        if s.profile == "release" {
            "Release"
        } else {
            "NOT A RELEASE"
        },
        results.machine.describe(),
        s.runs,
        if s.runs == 1 { "" } else { "s" },
        s.duration_s,
        s.warmup_s,
        s.rust_log,
    );
    if !s.coordinator_args.is_empty() {
        let _ = writeln!(
            out,
            "Coordinator flags: `{}`.",
            s.coordinator_args.join(" ")
        );
    }
    out.push('\n');

    out.push_str(
        "| row | clients | abort % | sagas/s | p50 ms | p99 ms | p999 ms | coordinator CPU µs/saga | RSS MB |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &results.rows {
        let m = &r.median;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.row.name,
            r.row.clients,
            percent(r.row.abort_ratio),
            optional(m.throughput, thousands),
            optional(m.p50_ms, ms),
            optional(m.p99_ms, ms),
            optional(m.p999_ms, ms),
            optional(m.coordinator_cpu_us_per_saga, thousands),
            optional(m.coordinator_rss_mb, |mb| format!("{mb:.1}")),
        );
    }

    if !results.abort_costs.is_empty() {
        out.push_str(
            "\nCost of aborts against the all-commit row of the same concurrency (ratio of \
             medians):\n\n\
             | row | against | coordinator CPU per saga | throughput |\n\
             | --- | --- | ---: | ---: |\n",
        );
        for c in &results.abort_costs {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.row,
                c.baseline,
                optional(c.cpu_ratio, |x| format!("{x:.2}×")),
                optional(c.throughput_ratio, |x| format!("{x:.2}×")),
            );
        }
    }

    for r in results
        .rows
        .iter()
        .filter(|r| r.row.participants == Participants::NoWork)
    {
        let _ = writeln!(
            out,
            "\nCoordinator overhead ({}: participants answer without doing any work, {} clients): \
             **{} µs coordinator CPU per saga** (target ≤ {OVERHEAD_TARGET_US} µs), {} sagas/s.",
            r.row.name,
            r.row.clients,
            optional(r.median.coordinator_cpu_us_per_saga, thousands),
            optional(r.median.throughput, thousands),
        );
    }

    out.push_str(
        "\n| row | p90 ms | max ms | committed | aborted | not terminal | log bytes/saga | books | failed runs |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for r in &results.rows {
        let m = &r.median;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            r.row.name,
            optional(m.p90_ms, ms),
            optional(m.max_ms, ms),
            optional(m.committed, thousands),
            optional(m.aborted, thousands),
            optional(m.not_terminal, thousands),
            optional(m.log_bytes_per_saga, thousands),
            match m.books_verified {
                Some(true) => "verified",
                Some(false) => "WRONG",
                None => "not checked",
            },
            m.failed_runs,
            m.runs,
        );
    }
    let _ = writeln!(
        out,
        "\nlog bytes/saga: growth of `coordinator_log_bytes_total` per finished saga (n/a: the \
         coordinator does not export it). Counts are per run.\n\n\
         ![Throughput and p99 latency against concurrency]({CHART_FILE})"
    );
    if let Some(error) = &results.error {
        // The whole error, with the services' log tails, is in results.json.
        let first_line = error.lines().next().unwrap_or_default();
        let _ = writeln!(out, "\n**The benchmark stopped early:** {first_line}");
    }
    out
}

/// `1,180` (rounded to a whole number).
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Milliseconds with about three significant digits: `3.52`, `87.1`, `1,204`.
pub fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value)
    }
}

fn percent(ratio: f64) -> String {
    format!("{}", (ratio * 100.0).round())
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".to_string(), format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::machine::Machine;
    use crate::bench::matrix::Row;
    use crate::bench::summary::tests::run;
    use crate::bench::summary::{RowResult, abort_costs};
    use crate::bench::{BenchResults, Settings};

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1180.4), "1,180");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(ms(3.517), "3.52");
        assert_eq!(ms(87.06), "87.1");
        assert_eq!(ms(1204.0), "1,204");
    }

    #[test]
    fn the_table_has_a_line_per_row_and_the_overhead_target() {
        let rows = vec![
            RowResult::new(
                "concurrency",
                Row::new(64, 0.0, Participants::Working),
                vec![run(1180.0, 87.0, Some(663.0), true)],
            ),
            RowResult::new(
                "aborts",
                Row::new(64, 0.1, Participants::Working),
                vec![run(1100.0, 90.0, Some(700.0), true)],
            ),
            RowResult::new(
                "overhead",
                Row::new(64, 0.0, Participants::NoWork),
                vec![run(3000.0, 20.0, None, true)],
            ),
        ];
        let results = BenchResults {
            machine: Machine {
                nproc: 2,
                cpu_model: Some("Example CPU".into()),
                kernel: None,
                git_commit: None,
            },
            settings: Settings {
                runs: 1,
                duration_s: 10.0,
                warmup_s: 2.0,
                profile: "release".into(),
                rust_log: "warn".into(),
                coordinator_args: vec![],
            },
            abort_costs: abort_costs(&rows),
            rows,
            error: None,
        };
        let md = markdown(&results);
        assert!(
            md.contains("| 64c | 64 | 0 | 1,180 | 43.5 | 87.0 | 104 | 663 | 40.0 |"),
            "{md}"
        );
        assert!(md.contains("| 64c-abort10 | 64 | 10 | 1,100 |"), "{md}");
        assert!(md.contains("| 64c-abort10 | 64c | 1.06× | 0.93× |"), "{md}");
        assert!(
            md.contains("**n/a µs coordinator CPU per saga** (target ≤ 100 µs)"),
            "{md}"
        );
        assert!(md.contains("medians of 1 run of 10 s"), "{md}");
        assert!(md.contains("](throughput_p99.svg)"), "{md}");
        assert_eq!(
            progress_line("64c", 2, 3, &run(1180.0, 87.0, Some(663.0), true)),
            "row 64c run 2/3: 1,180 sagas/s p99 87.0 ms, coordinator 663 µs CPU/saga, books verified"
        );
    }
}
