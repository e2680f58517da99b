//! `chaos`: the process-level chaos harness. Starts the coordinator and the three participants
//! (the binaries built next to this one, or in `$CHAOS_BIN_DIR`), drives `place_order` sagas
//! from many clients while it SIGKILLs processes and injects network faults, then checks the
//! books. Exits 0 when every invariant holds, 1 on any violation, 2 when the run itself failed.
//!
//! `--store postgres --coordinators 3` runs three coordinators on one database of a throwaway
//! PostgreSQL server the run starts (and stops), killed at random like the participants.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chaos_tests::chaos::{self, ChaosConfig, FaultProfile};
use chaos_tests::cluster::{CoordinatorStore, PostgresOptions};
use chaos_tests::database::DatabaseChoice;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    /// One coordinator on its embedded sled log.
    Sled,
    /// `--coordinators` coordinators on one database of a throwaway PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// Latency, resets, blackholes, dropped replies, calm phases.
    Mixed,
    /// Mostly dropped replies (delivered, handled, answer lost, retried).
    DropReplies,
    /// No network faults; kills only.
    None,
}

/// Process-level chaos run of the saga coordinator and its example participants.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Seed of every random choice (accounts, amounts, kill schedule, fault mixes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of faults (kills and network faults); the run then settles and checks.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent clients submitting sagas.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Mean milliseconds between two SIGKILLs (± 50 %); 0 disables kills.
    #[arg(long, default_value_t = 3000)]
    kill_interval: u64,
    /// Seconds the sagas may take to settle once faults stop.
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
    /// Mean milliseconds a client pauses between two sagas (uniform in 0..2x).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Wallet accounts the sagas spread over.
    #[arg(long, default_value_t = 8)]
    accounts: usize,
    /// Which network faults the proxies inject.
    #[arg(long, value_enum, default_value = "mixed")]
    faults: Profile,
    /// Write a JSON summary here.
    #[arg(long, value_name = "PATH")]
    summary: Option<PathBuf>,
    /// Where the coordinator/wallet/order/points binaries are (default: next to this binary).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// SANITY CHECK ONLY: start the participants with `--unsafe-no-barrier`; the run must fail.
    #[arg(long)]
    unsafe_no_barrier: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Where the coordinators keep their saga log.
    #[arg(long, value_enum, default_value = "sled")]
    store: Store,
    /// Coordinator processes (more than one needs --store postgres); each is killed at random
    /// like the participants.
    #[arg(long, default_value_t = 1)]
    coordinators: usize,
    /// With --store postgres: the coordinators' --lease-ms (how long a killed instance's
    /// sagas wait before the others take them over).
    #[arg(long, default_value_t = 1000)]
    lease_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = args.bin_dir.clone() {
        chaos_tests::binaries::use_bin_dir(dir).expect("chosen once, here");
    }
    // Services log at info by default; warnings are enough for long runs' log files.
    chaos_tests::process::use_log_filter("warn").expect("chosen once, here");
    if args.store == Store::Sled && args.coordinators > 1 {
        eprintln!(
            "chaos: --coordinators {} needs --store postgres",
            args.coordinators
        );
        return ExitCode::from(2);
    }
    let config = ChaosConfig {
        seed: args.seed,
        duration: Duration::from_secs(args.duration),
        clients: args.clients.max(1),
        kill_interval: Duration::from_millis(args.kill_interval),
        settle_timeout: Duration::from_secs(args.settle_timeout),
        accounts: args.accounts.max(1),
        profile: match args.faults {
            Profile::Mixed => FaultProfile::Mixed,
            Profile::DropReplies => FaultProfile::DropReplies,
            Profile::None => FaultProfile::None,
        },
        unsafe_no_barrier: args.unsafe_no_barrier,
        progress: !args.quiet,
        think_time: Duration::from_millis(args.think_ms),
        keep_dirs_on_failure: true,
        store: match args.store {
            Store::Sled => CoordinatorStore::Sled,
            // A server of the run's own: stopped, and its directory removed, at the end.
            Store::Postgres => CoordinatorStore::Postgres(PostgresOptions {
                database: DatabaseChoice::OwnServer,
                ..PostgresOptions::with_lease(Duration::from_millis(args.lease_ms))
            }),
        },
        coordinators: args.coordinators.max(1),
    };
    let report = match chaos::run(config).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("chaos: the run failed: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if let Some(path) = &args.summary {
        if let Err(e) = chaos::write_summary(&report, path) {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
        println!("summary written to {}", path.display());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
