//! `bench`: the benchmark mode. Builds the service binaries if needed, then runs the standard
//! matrix (or `--only` some rows), each row `--runs` times on a fresh cluster on loopback, and
//! the recovery suite (`--runs` restarts with `--recovery-sagas` sagas in flight), and writes
//! `results.json`, `results.md` and `throughput_p99.svg` into `--out`; the markdown tables also
//! go to stdout. Exits 0 when every run's books balanced and every recovery run saw every saga
//! active, 1 when a run's books (or a must-abort saga, or a recovered saga) were wrong, 2 when
//! the benchmark could not run (a build failed, a cluster did not start, a coordinator did not
//! get ready).
//!
//!     cargo run --release -p saga-bench --bin bench
//!     cargo run --release -p saga-bench --bin bench -- --quick
//!     cargo run --release -p saga-bench --bin bench -- --only 64c,overhead -- --retention-secs 60
//!     cargo run --release -p saga-bench --bin bench -- --only recovery --runs 3
//!     cargo run --release -p saga-bench --bin bench -- --only soak --soak-minutes 4

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chaos_tests::{binaries, process};
use clap::Parser;
use saga_bench::measure::{PostgresDurability, RunSettings};
use saga_bench::recovery::{self, RecoverySettings, RestartSettings};
use saga_bench::soak::{self, SoakSettings};
use saga_bench::table::thousands;
use saga_bench::{Settings, matrix};

/// Benchmark of the saga coordinator: the standard matrix, medians of fresh-cluster runs.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Runs per row, each on a fresh cluster; the report is their median [default: 3; --quick: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds of measured load per run [default: 10; --quick: 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before each measured one, discarded [default: 2; --quick: 0.5].
    #[arg(long)]
    warmup: Option<f64>,
    /// Sagas in flight for the recovery suite [default: 100000; --quick: 10000].
    #[arg(long, value_name = "N")]
    recovery_sagas: Option<usize>,
    /// Minutes of load of the soak suite (`--only soak`; never part of the default matrix).
    #[arg(long, default_value_t = 4.0, value_name = "MINUTES")]
    soak_minutes: f64,
    /// Soak suite: the participants' retention (`--retention-secs` of wallet, order and
    /// points, swept every 5 s), so that it applies within the soak [default: theirs, an hour].
    /// Shorter than the soak, the books cannot be checked afterwards (settled orders are gone).
    #[arg(long, value_name = "SECS")]
    soak_participant_retention_secs: Option<u64>,
    /// Smoke run: 1 run of 2 s per row after 0.5 s of warm-up, 10,000 sagas to recover
    /// (explicit flags still win).
    #[arg(long)]
    quick: bool,
    /// Only these rows or suites, comma-separated (e.g. `64c,overhead`, `recovery`); see --list.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Print the suites and rows and exit.
    #[arg(long)]
    list: bool,
    /// Directory for results.json, results.md and throughput_p99.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Use the coordinator/wallet/order/points binaries in DIR as they are (no build).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build` for the service binaries; use those next to this binary.
    #[arg(long)]
    no_build: bool,
    /// Rows on PostgreSQL: `durable` turns fsync, synchronous commit and full-page writes on
    /// (as sled fsyncs, and as a production server runs); `throwaway` leaves them off, as
    /// test servers run.
    #[arg(long, value_enum, default_value = "durable")]
    postgres_durability: PostgresDurability,
    /// Extra flags for the coordinator, after `--`.
    #[arg(last = true, value_name = "COORDINATOR_ARGS")]
    coordinator_args: Vec<OsString>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let selection = match matrix::select(matrix::standard(), &args.only) {
        Ok(selection) => selection,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let suites = selection.suites;
    let (runs, duration, warmup, recovery_sagas) = if args.quick {
        (1, 2.0, 0.5, recovery::QUICK_SAGAS)
    } else {
        (3, 10.0, 2.0, recovery::DEFAULT_SAGAS)
    };
    let recovery_sagas = args.recovery_sagas.unwrap_or(recovery_sagas);
    if args.list {
        for suite in &suites {
            let rows: Vec<&str> = suite.rows.iter().map(|r| r.name.as_str()).collect();
            println!("{:<12} {}: {}", suite.name, rows.join(", "), suite.about);
        }
        if selection.soak {
            println!(
                "{:<12} {} min at 32 clients, 10 % aborts: RSS and disk of every process every \
                 30 s, growth after 60 s",
                soak::SUITE,
                args.soak_minutes
            );
        }
        if selection.recovery {
            println!(
                "{:<12} {} sagas in flight: restart the coordinator, time to /readyz, RSS, \
                 log bytes per saga",
                recovery::SUITE,
                thousands(recovery_sagas as f64)
            );
        }
        return ExitCode::SUCCESS;
    }
    if selection.soak && !(args.soak_minutes > 0.0 && args.soak_minutes.is_finite()) {
        eprintln!("bench: --soak-minutes must be positive");
        return ExitCode::from(2);
    }
    if selection.recovery && recovery_sagas == 0 {
        eprintln!("bench: --recovery-sagas must be positive");
        return ExitCode::from(2);
    }
    let runs = args.runs.unwrap_or(runs).max(1);
    let duration = args.duration.unwrap_or(duration);
    let warmup = args.warmup.unwrap_or(warmup);
    if !(duration > 0.0 && duration.is_finite() && warmup >= 0.0 && warmup.is_finite()) {
        eprintln!("bench: --duration must be positive and --warmup not negative");
        return ExitCode::from(2);
    }

    if let Some(dir) = args.bin_dir.clone() {
        binaries::use_bin_dir(dir).expect("chosen once, here");
    }
    // An `info` line per finished saga would be part of what is measured.
    process::use_log_filter("warn").expect("chosen once, here");
    let built = if args.no_build {
        binaries::SERVICES
            .iter()
            .try_for_each(|name| binaries::binary(name).map(drop))
    } else {
        binaries::build_services()
    };
    if let Err(e) = built {
        eprintln!("bench: {e:#}");
        return ExitCode::from(2);
    }
    let profile = binaries::bin_dir()
        .ok()
        .and_then(|dir| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into());
    if profile != "release" {
        eprintln!(
            "bench: WARNING: the service binaries are a {profile} build; numbers are not \
             representative (cargo run --release ...)"
        );
    }

    let rows: usize = suites.iter().map(|s| s.rows.len()).sum();
    // Start-up, funding, the books check and tear-down add about 6 s per run.
    let mut estimate = rows as f64 * runs as f64 * (duration + warmup + 6.0);
    if selection.recovery {
        // Seeding writes about 20,000 sagas/s; a restart (copy, recovery, settle, stop) takes
        // about 3 s + 4 s per 100,000 sagas. Rough, for the estimate only.
        let per_100k = recovery_sagas as f64 / 100_000.0;
        estimate += per_100k * 5.0 + runs as f64 * (3.0 + per_100k * 4.0);
    }
    if selection.soak {
        estimate += args.soak_minutes * 60.0 + 10.0;
    }
    let mut what = Vec::new();
    if rows > 0 {
        what.push(format!(
            "{rows} rows × {runs} run(s) of {duration} s (+{warmup} s warm-up)"
        ));
    }
    if selection.recovery {
        what.push(format!(
            "recovery of {} sagas in flight × {runs} run(s)",
            thousands(recovery_sagas as f64)
        ));
    }
    if selection.soak {
        what.push(format!("soak of {} min", args.soak_minutes));
    }
    eprintln!(
        "bench: {}, about {:.0} min; results in {}",
        what.join(" + "),
        (estimate / 60.0).ceil(),
        args.out.display()
    );
    let settings = Settings {
        runs,
        duration_s: duration,
        warmup_s: warmup,
        profile,
        rust_log: process::log_filter(),
        coordinator_args: args
            .coordinator_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        postgres_durability: args.postgres_durability.name().into(),
    };
    let run_settings = RunSettings {
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        coordinator_args: args.coordinator_args.clone(),
        postgres_durability: args.postgres_durability,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let recovery_settings = selection.recovery.then(|| RecoverySettings {
        sagas: recovery_sagas,
        runs,
        restart: RestartSettings {
            coordinator_args: args.coordinator_args.clone(),
            ..RestartSettings::default()
        },
    });
    let soak_settings = selection.soak.then(|| SoakSettings {
        duration: Duration::from_secs_f64(args.soak_minutes * 60.0),
        coordinator_args: args.coordinator_args.clone(),
        participant_retention: args
            .soak_participant_retention_secs
            .map(Duration::from_secs),
        ..SoakSettings::default()
    });
    let results = runtime.block_on(saga_bench::run(
        &suites,
        settings,
        &run_settings,
        recovery_settings.as_ref(),
        soak_settings.as_ref(),
    ));

    match saga_bench::write_outputs(&results, &suites, &args.out) {
        Ok((outputs, markdown)) => {
            println!("{markdown}");
            let written: Vec<String> = [Some(&outputs.json), Some(&outputs.markdown)]
                .into_iter()
                .chain([outputs.chart.as_ref(), outputs.soak_chart.as_ref()])
                .flatten()
                .map(|path| path.display().to_string())
                .collect();
            eprintln!("bench: wrote {}", written.join(", "));
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::from(2);
        }
    }
    if let Some(error) = results.stopped_early() {
        eprintln!("bench: stopped early: {error}");
        ExitCode::from(2)
    } else if results.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: FAILED: some run's books were wrong, or a recovery run did not see every \
             saga active (see results.md, failed runs)"
        );
        ExitCode::from(1)
    }
}
