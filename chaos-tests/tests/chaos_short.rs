//! The short chaos run CI does, and the sanity check that the checker catches a broken
//! participant. Both go through [`chaos_tests::chaos::run`], the code behind the `chaos`
//! binary. The two tests take turns (a lock), so each has the machine's cores to itself.
//!
//! `CHAOS_DURATION_SECS` changes the fault period of the short run (default 60 s);
//! `CHAOS_SEED` its seed (default 1). Quiet when they pass: the report goes to the
//! captured output (`--nocapture` shows it) and into every assertion's message;
//! `CHAOS_PROGRESS=1` adds the run's live progress line on stderr.

use std::time::Duration;

use chaos_tests::chaos::{self, ChaosConfig, FaultProfile, env_u64};

/// About 60 s of SIGKILLs (every ~3 s, every process at least twice) and network faults
/// (latency, resets, blackholes, dropped replies) under 12 clients; then every saga must settle
/// and every invariant hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_run_keeps_every_invariant() {
    let duration = Duration::from_secs(env_u64("CHAOS_DURATION_SECS", 60).max(5));
    let config = ChaosConfig {
        seed: env_u64("CHAOS_SEED", 1),
        duration,
        clients: 12,
        // About 20 kills in 60 s; never fewer than 8 (two rounds over the four processes).
        kill_interval: (duration / 20).clamp(Duration::from_millis(500), Duration::from_secs(3)),
        settle_timeout: Duration::from_secs(120),
        profile: FaultProfile::Mixed,
        progress: std::env::var_os("CHAOS_PROGRESS").is_some(),
        ..ChaosConfig::default()
    };
    let report = chaos::run(config)
        .await
        .expect("the chaos run could not run");
    println!("{report}");
    assert!(report.passed(), "the chaos run broke invariants:\n{report}");
    for (service, kills) in &report.kills {
        assert!(
            *kills >= 2,
            "{service} was killed {kills} time(s), expected at least 2:\n{report}"
        );
    }
    assert!(
        report.network_total.faults() > 0,
        "no network fault was injected:\n{report}"
    );
    assert!(report.committed > 0 && report.aborted > 0, "{report}");
    assert!(report.time_to_quiescence_secs.is_some(), "{report}");
}

/// Participants without their barrier (`--unsafe-no-barrier`) under dropped replies: the
/// coordinator retries calls that were already applied, so points and money are applied
/// twice. The checker must say so, naming the accounts and the amounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_participants_without_a_barrier() {
    let config = ChaosConfig {
        seed: 7,
        duration: Duration::from_secs(10),
        clients: 8,
        kill_interval: Duration::ZERO,
        // Barrier-less participants can leave sagas retrying forever; do not wait long.
        settle_timeout: Duration::from_secs(15),
        profile: FaultProfile::DropReplies,
        unsafe_no_barrier: true,
        keep_dirs_on_failure: false,
        progress: std::env::var_os("CHAOS_PROGRESS").is_some(),
        ..ChaosConfig::default()
    };
    let report = chaos::run(config)
        .await
        .expect("the chaos run could not run");
    println!("{report}");
    assert!(
        !report.passed(),
        "participants without a barrier under dropped replies went unnoticed:\n{report}"
    );
    let double_applied = report.violations.iter().any(|v| {
        v.contains("points should be") || v.contains("balance should be") || v.contains("frozen")
    });
    assert!(
        double_applied,
        "expected a points, money or frozen-funds violation:\n{report}"
    );
}
