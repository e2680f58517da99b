//! The recovery benchmark end to end on a small log: sagas in flight seeded through the
//! coordinator's store, the real coordinator binary started on a copy of them, `/readyz` green
//! and every saga active. Needs the built binaries (`cargo build --workspace --bins`).

use std::time::Duration;

use saga_bench::recovery::{RestartSettings, restart, seed};

const SAGAS: usize = 200;

#[tokio::test]
async fn a_restart_resumes_every_seeded_saga() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = dir.path().join("data");
    let report = seed::seed(&seeded, SAGAS).await.unwrap();
    assert_eq!(report.sagas, SAGAS);

    let settings = RestartSettings {
        ready_deadline: Duration::from_secs(30),
        settle: Duration::from_millis(300),
        ..RestartSettings::default()
    };
    let run = restart::measure(&seeded, SAGAS, &settings, 1)
        .await
        .unwrap();
    assert!(run.ok, "{run:#?}");
    assert_eq!(run.active_at_ready, Some(SAGAS as f64));
    assert_eq!(run.active_settled, Some(SAGAS as f64));
    assert!(run.healthy_s <= run.ready_s, "{run:#?}");
    assert!(run.rss_at_ready_mb.is_some_and(|mb| mb > 0.0), "{run:#?}");
    // Resuming logs a round per saga (`Resumed`), so the coordinator wrote to its log...
    assert!(run.recovery_log_bytes.is_some_and(|b| b > 0.0), "{run:#?}");
    // ... to its own copy: the seeded directory is as seeding left it, for the next run.
    assert_eq!(
        seed::dir_size(&seeded).unwrap().apparent,
        report.data_dir_apparent_bytes
    );
}
