//! The human-readable outputs: `results.md` (markdown tables ready to paste into the README,
//! also printed on stdout at the end) and the progress line after each run.

use std::fmt::Write as _;

use crate::matrix::{Participants, Store};
use crate::measure::RunMetrics;
use crate::recovery::{
    DEFAULT_SAGAS, READY_TARGET_S, RSS_TARGET_MB, RecoveryResult, RestartMetrics, SeedReport,
};
use crate::{BenchResults, CHART_FILE};

/// The coordinator CPU per saga that issue 5 asks for with no-work participants.
pub const OVERHEAD_TARGET_US: f64 = 100.0;

/// Issue 11: one instance on PostgreSQL at least this share of the sled figure (64 clients,
/// no-work participants).
pub const POSTGRES_TARGET_SHARE: f64 = 0.5;
/// The rows that target compares.
const POSTGRES_TARGET_ROWS: (&str, &str) = ("64c-no-work-pg", "64c-no-work");

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
    if let Some(db) = m.cost.and_then(|c| c.database) {
        line.push_str(&format!(
            ", database {} µs CPU/saga",
            optional(db.cpu_us_per_saga, thousands)
        ));
    }
    if !m.ok && m.books_verified != Some(false) {
        line.push_str(", A MUST-ABORT SAGA COMMITTED");
    }
    if m.not_terminal > 0 {
        line.push_str(&format!(", {} not terminal", m.not_terminal));
    }
    line
}

/// `recovery: seeded 100,000 sagas in flight in 14.2 s, data dir 312.5 MB (3,277 bytes/saga)`.
pub fn seed_line(seed: &SeedReport) -> String {
    format!(
        "recovery: seeded {} sagas in flight in {:.1} s, data dir {} MB ({} bytes/saga)",
        thousands(seed.sagas as f64),
        seed.seconds,
        megabytes(mb(seed.data_dir_bytes)),
        optional(seed.bytes_per_saga(), thousands),
    )
}

/// `recovery run 2/3: 100,000 sagas ready in 3.10 s (healthz 0.05 s), RSS 180.2 MB (peak
/// 190.3 MB), 100,000 active`.
pub fn recovery_progress_line(run: usize, runs: usize, m: &RestartMetrics) -> String {
    let mut line = format!(
        "recovery run {run}/{runs}: {} sagas ready in {} s (healthz {} s), RSS {} MB (peak {} MB), \
         {} active",
        thousands(m.sagas as f64),
        secs(m.ready_s),
        secs(m.healthy_s),
        optional(m.rss_at_ready_mb, megabytes),
        optional(m.peak_rss_mb, megabytes),
        optional(m.active_at_ready, thousands),
    );
    if !m.ok {
        line.push_str(&format!(
            ", NOT EVERY SAGA ACTIVE (settled: {})",
            optional(m.active_settled, thousands)
        ));
    }
    line
}

/// The whole `results.md`.
pub fn markdown(results: &BenchResults) -> String {
    let s = &results.settings;
    let mut out = String::new();
    let _ = writeln!(out, "## Benchmark results\n");
    if results.rows.is_empty() {
        // Only the recovery suite ran: no load rows, no chart.
        let _ = writeln!(
            out,
            "{} build, on one machine ({}); RUST_LOG={}.",
            build(&s.profile),
            results.machine.describe(),
            s.rust_log,
        );
        if let Some(recovery) = &results.recovery {
            recovery_section(&mut out, recovery, &s.profile);
        }
        if let Some(soak) = &results.soak {
            let _ = writeln!(out, "\n{}", crate::soak::markdown(soak));
        }
        error_line(&mut out, results);
        return out;
    }
    let _ = writeln!(
        out,
        "{} build, coordinator and participants on one machine ({}); medians of {} run{} of {} s \
         per row, each on a fresh cluster after {} s of warm-up; RUST_LOG={}.",
        build(&s.profile),
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
    postgres_section(&mut out, results);
    if let Some(recovery) = &results.recovery {
        recovery_section(&mut out, recovery, &s.profile);
    }
    if let Some(soak) = &results.soak {
        let _ = writeln!(out, "\n{}", crate::soak::markdown(soak));
    }
    error_line(&mut out, results);
    out
}

fn build(profile: &str) -> &'static str {
    if profile == "release" {
        "Release"
    } else {
        "NOT A RELEASE"
    }
}

fn error_line(out: &mut String, results: &BenchResults) {
    if let Some(error) = results.stopped_early() {
        // The whole error, with the services' log tails, is in results.json.
        let first_line = error.lines().next().unwrap_or_default();
        let _ = writeln!(out, "\n**The benchmark stopped early:** {first_line}");
    }
}

/// The recovery suite: what was seeded, the times and memory of the restarts, the targets.
/// The rows on PostgreSQL: what every process and the database cost per saga, and the same
/// load on sled for comparison.
fn postgres_section(out: &mut String, results: &BenchResults) {
    let rows: Vec<_> = results
        .rows
        .iter()
        .filter(|r| matches!(r.row.store, Store::Postgres { .. }))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### PostgreSQL\n\n\
         Every coordinator of a row on one database of a PostgreSQL server of the run's own \
         ({} server), the clients spread over the instances. **One machine runs everything** \
         (the instances, the database server, the participants and the load generator share \
         its {} cores), so several instances compete for the same CPU: their figures are the \
         cluster's cost, not its capacity. CPU is per submitted saga, summed over every \
         process of its kind; database figures: its process tree's CPU, the WAL it wrote, and \
         the coordinators' round trips (data segments they sent) and bytes to and from it.\n",
        results.settings.postgres_durability, results.machine.nproc,
    );
    out.push_str(
        "| row | instances | sagas/s | p50 ms | p99 ms | coordinators CPU µs/saga | database CPU µs/saga | coordinators + database | participants CPU µs/saga | commits/saga | round trips/saga | bytes to db/saga | bytes from db/saga | WAL bytes/saga |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &rows {
        let m = &r.median;
        let both = m
            .coordinator_cpu_us_per_saga
            .zip(m.database_cpu_us_per_saga)
            .map(|(c, d)| c + d);
        let one = |value: Option<f64>| optional(value, |x| format!("{x:.1}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.row.name,
            r.row.store.instances(),
            optional(m.throughput, thousands),
            optional(m.p50_ms, ms),
            optional(m.p99_ms, ms),
            optional(m.coordinator_cpu_us_per_saga, thousands),
            optional(m.database_cpu_us_per_saga, thousands),
            optional(both, thousands),
            optional(m.participants_cpu_us_per_saga, thousands),
            optional(m.log_flushes_per_saga, |x| format!("{x:.2}")),
            one(m.database_round_trips_per_saga),
            optional(m.database_bytes_sent_per_saga, thousands),
            optional(m.database_bytes_received_per_saga, thousands),
            optional(m.wal_bytes_per_saga, thousands),
        );
    }
    let compared: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            let sled = r.row.on_sled()?;
            let sled = results.rows.iter().find(|s| s.row.name == sled)?;
            Some((r, sled))
        })
        .collect();
    if !compared.is_empty() {
        out.push_str(
            "\nAgainst the same load on sled (one coordinator, its embedded log; ratio of \
             medians):\n\n\
             | row | against | throughput | coordinators CPU per saga | coordinators + database CPU per saga |\n\
             | --- | --- | ---: | ---: | ---: |\n",
        );
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "n/a".into(),
        };
        for (pg, sled) in &compared {
            let (p, s) = (&pg.median, &sled.median);
            let both = p
                .coordinator_cpu_us_per_saga
                .zip(p.database_cpu_us_per_saga)
                .map(|(c, d)| c + d);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                pg.row.name,
                sled.row.name,
                ratio(p.throughput, s.throughput),
                ratio(p.coordinator_cpu_us_per_saga, s.coordinator_cpu_us_per_saga),
                ratio(both, s.coordinator_cpu_us_per_saga),
            );
        }
    }
    let (pg_row, sled_row) = POSTGRES_TARGET_ROWS;
    let find = |name: &str| results.rows.iter().find(|r| r.row.name == name);
    if let (Some(pg), Some(sled)) = (find(pg_row), find(sled_row))
        && let (Some(p), Some(s)) = (pg.median.throughput, sled.median.throughput)
        && s > 0.0
    {
        let share = p / s;
        let _ = writeln!(
            out,
            "\nOne instance on PostgreSQL, 64 clients, no-work participants ({pg_row}): **{} \
             sagas/s, {:.0} % of sled's {}** ({sled_row}; target ≥ {:.0} %): {}.",
            thousands(p),
            share * 100.0,
            thousands(s),
            POSTGRES_TARGET_SHARE * 100.0,
            if share >= POSTGRES_TARGET_SHARE {
                "met"
            } else {
                "not met"
            },
        );
    }
}

fn recovery_section(out: &mut String, r: &RecoveryResult, profile: &str) {
    let m = &r.median;
    let sagas = thousands(r.sagas as f64);
    let _ = writeln!(
        out,
        "\n### Recovery and memory\n\n\
         {sagas} `place_order` sagas in flight, written through the coordinator's store in {:.1} s; \
         each waits on a retry timer a day away, so nothing is called. Every run starts the {profile} \
         coordinator on a fresh copy of that data directory and times it from spawn to the first \
         `/readyz` 200 (polled every {} ms); memory is read from `/proc` when ready and {} s later. \
         Medians of {} run{}.\n",
        r.seed.seconds,
        r.poll_ms,
        r.settle_s,
        m.runs,
        if m.runs == 1 { "" } else { "s" },
    );
    out.push_str(
        "| sagas in flight | seed s | data dir MB | log bytes/saga in flight | ready s | ready min s | ready max s | RSS at ready MB | peak RSS MB | active sagas seen |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let _ = writeln!(
        out,
        "| {sagas} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.seed.seconds,
        megabytes(mb(r.seed.data_dir_bytes)),
        optional(r.data_dir_bytes_per_saga, thousands),
        optional(m.ready_s, secs),
        optional(m.ready_min_s, secs),
        optional(m.ready_max_s, secs),
        optional(m.rss_at_ready_mb, megabytes),
        optional(m.peak_rss_mb, megabytes),
        optional(m.active_at_ready, thousands),
    );
    out.push_str(
        "\n| /healthz s | CPU to ready s | RSS settled MB | recovery log bytes/saga | shutdown s | failed runs |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {}/{} |",
        optional(m.healthy_s, secs),
        optional(m.cpu_to_ready_s, secs),
        optional(m.rss_settled_mb, megabytes),
        optional(m.recovery_log_bytes_per_saga, thousands),
        optional(m.shutdown_s, secs),
        m.failed_runs,
        m.runs,
    );
    let verdict = |value: Option<f64>, target: f64| match value {
        Some(v) if v <= target => "met",
        Some(_) => "**not met**",
        None => "n/a",
    };
    let rss = m.rss_in_flight_mb();
    let _ = writeln!(
        out,
        "\nAgainst the targets of issue 5: ready **{} s** after a restart (target ≤ {READY_TARGET_S} s: \
         {}); RSS **{} MB** with {sagas} sagas in flight (target ≤ {RSS_TARGET_MB} MB: {}), peak {} MB.",
        optional(m.ready_s, secs),
        verdict(m.ready_s, READY_TARGET_S),
        optional(rss, megabytes),
        verdict(rss, RSS_TARGET_MB),
        optional(m.peak_rss_mb, megabytes),
    );
    if r.sagas != DEFAULT_SAGAS {
        let _ = writeln!(
            out,
            "The targets are for {} sagas in flight; this run had {sagas}.",
            thousands(DEFAULT_SAGAS as f64)
        );
    }
    let _ = writeln!(
        out,
        "\nlog bytes/saga in flight: the seeded data directory's size on disk per saga; recovery \
         log bytes/saga: what resuming wrote (`coordinator_log_bytes_total` after the settle \
         time) per saga."
    );
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

/// Seconds: `3.10`.
fn secs(value: f64) -> String {
    format!("{value:.2}")
}

/// MiB: `180.2`, `1,227`.
fn megabytes(value: f64) -> String {
    if value < 1000.0 {
        format!("{value:.1}")
    } else {
        thousands(value)
    }
}

/// Bytes in MiB.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
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
    use crate::machine::Machine;
    use crate::matrix::Row;
    use crate::recovery::RecoverySummary;
    use crate::recovery::tests::restart_run;
    use crate::summary::tests::run;
    use crate::summary::{RowResult, abort_costs};
    use crate::{BenchResults, Settings};

    /// Results of one run per row on an example machine.
    fn results(rows: Vec<RowResult>, recovery: Option<RecoveryResult>) -> BenchResults {
        BenchResults {
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
                postgres_durability: "durable".into(),
            },
            abort_costs: abort_costs(&rows),
            rows,
            recovery,
            soak: None,
            error: None,
        }
    }

    fn recovery(sagas: usize, runs: Vec<RestartMetrics>) -> RecoveryResult {
        let seed = SeedReport {
            sagas,
            seconds: 14.2,
            data_dir_bytes: 327_680_000,
            data_dir_apparent_bytes: 300_000_000,
        };
        RecoveryResult {
            sagas,
            data_dir_bytes_per_saga: seed.bytes_per_saga(),
            seed,
            poll_ms: 20,
            settle_s: 2.0,
            median: RecoverySummary::of(&runs),
            runs,
            error: None,
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1180.4), "1,180");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(ms(3.517), "3.52");
        assert_eq!(ms(87.06), "87.1");
        assert_eq!(ms(1204.0), "1,204");
        assert_eq!(megabytes(180.24), "180.2");
        assert_eq!(megabytes(1226.8), "1,227");
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
        let md = markdown(&results(rows, None));
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

    #[test]
    fn postgres_rows_get_their_costs_and_the_comparison_with_sled() {
        use crate::cost::{Cost, DatabaseCost};
        let pg_run = |throughput: f64, cpu: f64| {
            let mut run = run(throughput, 30.0, Some(cpu), true);
            run.log_flushes_per_saga = Some(2.5);
            run.cost = Some(Cost {
                participants_cpu_us_per_saga: Some(90.0),
                database: Some(DatabaseCost {
                    cpu_us_per_saga: Some(150.0),
                    wal_bytes_per_saga: Some(4321.0),
                    round_trips_per_saga: Some(12.25),
                    bytes_sent_per_saga: Some(2048.0),
                    bytes_received_per_saga: Some(1024.0),
                }),
            });
            run
        };
        let no_work = Row::new(64, 0.0, Participants::NoWork);
        let rows = vec![
            RowResult::new(
                "overhead",
                no_work.clone(),
                vec![run(5000.0, 20.0, Some(230.0), true)],
            ),
            RowResult::new(
                "postgres",
                no_work.clone().on_postgres(1),
                vec![pg_run(3000.0, 300.0)],
            ),
            RowResult::new(
                "postgres",
                no_work.on_postgres(3),
                vec![pg_run(2000.0, 400.0)],
            ),
        ];
        let md = markdown(&results(rows, None));
        assert!(
            md.contains(
                "| 64c-no-work-pg | 1 | 3,000 | 15.0 | 30.0 | 300 | 150 | 450 | 90 | 2.50 | 12.2 | \
                 2,048 | 1,024 | 4,321 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 64c-no-work-pg3 | 3 | 2,000 |"), "{md}");
        assert!(
            md.contains("| 64c-no-work-pg | 64c-no-work | 0.60× | 1.30× | 1.96× |"),
            "{md}"
        );
        assert!(
            md.contains("| 64c-no-work-pg3 | 64c-no-work | 0.40× |"),
            "{md}"
        );
        assert!(
            md.contains(
                "**3,000 sagas/s, 60 % of sled's 5,000** (64c-no-work; target ≥ 50 %): met."
            ),
            "{md}"
        );
        assert!(
            md.contains("(durable server)") && md.contains("its 2 cores"),
            "{md}"
        );
    }

    #[test]
    fn the_recovery_section_has_its_table_and_the_targets() {
        let runs = vec![
            restart_run(1, 3.1, 180.2, 100_000.0),
            restart_run(2, 3.3, 190.0, 100_000.0),
            restart_run(3, 3.0, 170.0, 100_000.0),
        ];
        let md = markdown(&results(Vec::new(), Some(recovery(100_000, runs))));
        assert!(md.contains("### Recovery and memory"), "{md}");
        assert!(
            md.contains(
                "| 100,000 | 14.2 | 312.5 | 3,277 | 3.10 | 3.00 | 3.30 | 180.2 | 200.2 | 100,000 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 0.05 | 2.79 | 175.2 | 50 | 0.20 | 0/3 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "ready **3.10 s** after a restart (target ≤ 5 s: met); RSS **180.2 MB** with \
                 100,000 sagas in flight (target ≤ 200 MB: met), peak 200.2 MB."
            ),
            "{md}"
        );
        assert!(md.contains("Medians of 3 runs."), "{md}");
        // Only the recovery suite ran: no load table, no chart, no note about the count.
        assert!(!md.contains("| row |") && !md.contains(CHART_FILE), "{md}");
        assert!(!md.contains("The targets are for"), "{md}");

        assert_eq!(
            recovery_progress_line(2, 3, &restart_run(2, 3.1, 180.2, 100_000.0)),
            "recovery run 2/3: 100,000 sagas ready in 3.10 s (healthz 0.05 s), RSS 180.2 MB \
             (peak 200.2 MB), 100,000 active"
        );
        assert!(
            recovery_progress_line(1, 1, &restart_run(1, 3.1, 180.2, 99_000.0))
                .ends_with("99,000 active, NOT EVERY SAGA ACTIVE (settled: 99,000)")
        );
    }

    #[test]
    fn missed_targets_smaller_counts_and_errors_are_said() {
        let mut slow = recovery(10_000, vec![restart_run(1, 6.0, 250.0, 100_000.0)]);
        slow.error = Some("recovery run 2 failed; data and log kept in /tmp/x\nlog tail".into());
        let rows = vec![RowResult::new(
            "concurrency",
            Row::new(64, 0.0, Participants::Working),
            vec![run(1180.0, 87.0, Some(663.0), true)],
        )];
        let md = markdown(&results(rows, Some(slow)));
        // The load table comes first, then the recovery section.
        let load = md.find("| 64c | 64 |").expect("the load row");
        let recovery = md
            .find("### Recovery and memory")
            .expect("the recovery section");
        assert!(load < recovery, "{md}");
        assert!(md.contains("(target ≤ 5 s: **not met**)"), "{md}");
        assert!(md.contains("(target ≤ 200 MB: **not met**)"), "{md}");
        assert!(
            md.contains("The targets are for 100,000 sagas in flight; this run had 10,000."),
            "{md}"
        );
        assert!(
            md.contains("**The benchmark stopped early:** recovery run 2 failed;"),
            "{md}"
        );
        assert!(!md.contains("log tail"), "{md}");
    }
}
