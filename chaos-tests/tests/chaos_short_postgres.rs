//! The short chaos run in PostgreSQL mode: three coordinators on one database (1 s leases),
//! killed at random like the participants, under network faults; then every saga must settle
//! and every invariant hold. Goes through [`chaos_tests::chaos::run`], the code behind
//! `chaos --store postgres --coordinators 3`.
//!
//! `CHAOS_DURATION_SECS` changes the fault period (default 45 s), `CHAOS_SEED` the seed
//! (default 1); `CHAOS_PROGRESS=1` shows the live progress line. Quiet when it passes: the
//! report goes to the captured output (`--nocapture` shows it) and into every assertion.

use std::time::Duration;

use chaos_tests::chaos::{self, ChaosConfig, FaultProfile, env_u64};
use chaos_tests::cluster::{CoordinatorStore, PostgresOptions};

/// About 45 s of SIGKILLs (every ~1.5 s, over six processes: every one at least twice) and
/// network faults under 12 clients spread over three coordinators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_run_on_a_postgres_cluster_keeps_every_invariant() {
    let duration = Duration::from_secs(env_u64("CHAOS_DURATION_SECS", 45).max(5));
    let config = ChaosConfig {
        seed: env_u64("CHAOS_SEED", 1),
        duration,
        clients: 12,
        // About 18 kills in 45 s: three rounds over the six processes.
        kill_interval: (duration / 30).clamp(Duration::from_millis(500), Duration::from_secs(3)),
        settle_timeout: Duration::from_secs(60),
        profile: FaultProfile::Mixed,
        progress: std::env::var_os("CHAOS_PROGRESS").is_some(),
        store: CoordinatorStore::Postgres(PostgresOptions::with_lease(Duration::from_secs(1))),
        coordinators: 3,
        ..ChaosConfig::default()
    };
    let report = chaos::run(config)
        .await
        .expect("the chaos run could not run");
    println!("{report}");
    assert!(report.passed(), "the chaos run broke invariants:\n{report}");
    assert_eq!(report.kills.len(), 6, "{report}");
    for (process, kills) in &report.kills {
        assert!(
            *kills >= 2,
            "{process} was killed {kills} time(s), expected at least 2:\n{report}"
        );
    }
    assert!(
        report.calls_by_coordinator.len() == 3
            && report.calls_by_coordinator.values().all(|&calls| calls > 0),
        "every coordinator must have driven sagas:\n{report}"
    );
    assert!(
        report.network_total.faults() > 0,
        "no network fault was injected:\n{report}"
    );
    assert!(report.committed > 0 && report.aborted > 0, "{report}");
    assert!(report.time_to_quiescence_secs.is_some(), "{report}");
}
