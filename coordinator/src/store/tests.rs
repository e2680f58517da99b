//! What only the sled store must do; the contract every store meets is checked in
//! `tests/store_contract.rs`.

use super::{Creation, SagaLog, SagaReads, SledStore};
use crate::engine::fixtures::one_step as created;

async fn create(store: &SledStore, id: &str, key: Option<&str>) -> Creation {
    store.create(&created(id, key), key).await.unwrap()
}

/// The sled-specific parts of the store's contract; the rest runs against every store in
/// `tests/store_contract.rs`.
#[tokio::test]
async fn a_key_claim_lost_in_a_crash_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // A crash kept the claim of "ghost" but not its first event: the submission was never
    // acknowledged, so the next one with the key owns it.
    store.claim_without_saga("k2", "ghost");
    assert_eq!(create(&store, "s3", Some("k2")).await, Creation::Created);
    assert_eq!(
        store.saga_for_key("k2").await.unwrap().as_deref(),
        Some("s3")
    );
    assert!(store.load("s3").await.unwrap().is_some());
}

/// The events that take the one-step saga `created(...)` to committed, from sequence 1.
fn commit_round() -> Vec<crate::engine::Event> {
    use crate::engine::{CallRef, Decision, Event};
    let call = CallRef {
        step: 0,
        phase: sagas::Phase::Action,
        attempt: 1,
    };
    vec![
        Event::CallStarted { call, at: 1_001 },
        crate::engine::fixtures::ended_ok(call, 1_002),
        Event::Decided {
            decision: Decision::Commit,
            at: 1_002,
        },
        Event::Finished { at: 1_002 },
    ]
}

#[tokio::test]
async fn a_finished_saga_is_its_log_record_and_its_keys_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = "0190b6c8-0000-7000-8000-00000000000a";
    let first = created(id, Some("ka"));
    store.create(&first, Some("ka")).await.unwrap();
    let mut saga = crate::engine::Saga::create(&first).unwrap();
    // Two rounds, as a saga that waited between them writes them.
    let events = commit_round();
    for (first_seq, round) in [(1, &events[..2]), (3, &events[2..])] {
        for e in round {
            saga.apply(e).unwrap();
        }
        store.append(&saga, first_seq, round).unwrap();
    }
    assert!(saga.is_settled());
    store.save_snapshot(&saga, 4).unwrap();
    store.flush().await.unwrap();

    let counts = store.key_counts();
    let expected = [
        ("events", 1),
        ("sagas", 0),
        ("plans", 1),
        ("active", 0),
        ("finished", 0),
        ("idempotency", 1),
        ("business_keys", 0),
        ("unarchived", 1),
        ("archive", 0),
    ];
    assert_eq!(counts, expected.into_iter().collect(), "{counts:?}");

    let (loaded, seq) = store.load(id).await.unwrap().unwrap();
    assert_eq!((loaded, seq), (saga, 4));
    let mut all = vec![crate::engine::Event::Created(Box::new(first))];
    all.extend(events);
    let read: Vec<_> = store.events(id).await.unwrap();
    assert_eq!(read, (0..).zip(all).collect::<Vec<_>>());

    // The key still names its saga: a resubmission finds it, nothing new is made.
    assert_eq!(
        create(&store, "0190b6c8-0000-7000-8000-0000000000ff", Some("ka")).await,
        Creation::Existing(id.into())
    );
    // A second saga of the same workflow adds no plan.
    create(&store, "0190b6c8-0000-7000-8000-00000000000b", None).await;
    assert_eq!(store.key_counts()["plans"], 1);
}

#[tokio::test]
async fn a_saga_begun_in_a_version_1_log_goes_on_in_rounds_and_reads_whole() {
    use super::SagaFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = "0190b6c8-0000-7000-8000-00000000000c";
    let mut first = created(id, Some("kc"));
    first.business_key = Some("order-c".into());
    let mut saga = crate::engine::Saga::create(&first).unwrap();
    let events = commit_round();
    // Written by a coordinator of format version 1: its first two rounds (and its key).
    store.claim_without_saga("kc", id);
    store.insert_version_1_round(id, 0, &[crate::engine::Event::Created(Box::new(first))]);
    store.insert_version_1_round(id, 1, &events[..2]);
    for e in &events {
        saga.apply(e).unwrap();
    }
    // Today's coordinator goes on.
    store.append(&saga, 3, &events[2..]).unwrap();
    store.save_snapshot(&saga, 4).unwrap();

    let (loaded, seq) = store.load(id).await.unwrap().unwrap();
    assert_eq!((loaded, seq), (saga, 4));
    assert_eq!(store.events(id).await.unwrap().len(), 5);
    let page = store.list(&SagaFilter::default(), None, 10).await.unwrap();
    assert_eq!(
        page.sagas.len(),
        1,
        "listed once though it has three round keys"
    );
    assert_eq!(store.expire_finished(u64::MAX, 10).await.unwrap(), 1);
    let counts = store.key_counts();
    assert!(counts.values().all(|&n| n == 0), "nothing left: {counts:?}");
}

/// Settles `id` (one step, committed).
async fn settle(store: &SledStore, id: &str, key: Option<&str>) -> crate::engine::Saga {
    settle_created(store, created(id, key)).await
}

/// Creates the saga `first` describes and commits it in one round.
async fn settle_created(store: &SledStore, first: crate::engine::Created) -> crate::engine::Saga {
    let key = first.idempotency_key.clone();
    store.create(&first, key.as_deref()).await.unwrap();
    let mut saga = crate::engine::Saga::create(&first).unwrap();
    let events = commit_round();
    for e in &events {
        saga.apply(e).unwrap();
    }
    store.append(&saga, 1, &events).unwrap();
    store.save_snapshot(&saga, 4).unwrap();
    saga
}

#[tokio::test]
async fn retention_goes_past_a_damaged_log_and_spares_a_key_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let damaged = "0190b6c8-0000-7000-8000-0000000000d1";
    let reclaimed = "0190b6c8-0000-7000-8000-0000000000d2";
    let other = "0190b6c8-0000-7000-8000-0000000000d3";
    settle(&store, damaged, Some("kd")).await;
    settle(&store, reclaimed, Some("kr")).await;
    settle(&store, other, Some("ko")).await;
    store.overwrite_log(damaged, &[2, 0xff, 0xff]);
    // A crash in an earlier sweep removed "kr" and a new saga claimed it.
    store.claim_without_saga("kr", "0190b6c8-0000-7000-8000-0000000000ee");
    // The damaged log cannot say whether its saga settled: it is kept (and reported), and
    // the sweep goes on past it.
    assert_eq!(store.expire_finished(u64::MAX, 10).await.unwrap(), 2);
    assert_eq!(store.key_counts()["events"], 1);
    assert_eq!(
        store.saga_for_key("kd").await.unwrap().as_deref(),
        Some(damaged)
    );
    assert_eq!(
        store.saga_for_key("kr").await.unwrap().as_deref(),
        Some("0190b6c8-0000-7000-8000-0000000000ee"),
        "the key names the new saga still"
    );
    assert_eq!(store.saga_for_key("ko").await.unwrap(), None);
}

#[tokio::test]
async fn a_log_that_outgrows_one_record_goes_on_in_rounds_and_reads_whole() {
    use crate::engine::{CallOutcome, CallRef, Event};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = "0190b6c8-0000-7000-8000-0000000000f1";
    let first = created(id, None);
    store.create(&first, None).await.unwrap();
    let mut saga = crate::engine::Saga::create(&first).unwrap();
    let mut seq = 1;
    // A forward call refused for hours: a round per attempt, each with a long error.
    for attempt in 1..=200u32 {
        let call = CallRef {
            step: 0,
            phase: sagas::Phase::Action,
            attempt,
        };
        let at = 1_000 + u64::from(attempt) * 100;
        let round = vec![
            Event::CallStarted { call, at },
            Event::CallEnded {
                call,
                outcome: CallOutcome::Transient,
                http_status: Some(503),
                latency_ms: 1,
                error: Some("x".repeat(200)),
                retry_at: at + 100,
                at,
            },
        ];
        for e in &round {
            saga.apply(e).unwrap();
        }
        store.append(&saga, seq, &round).unwrap();
        seq += 2;
    }
    let counts = store.key_counts();
    assert!(
        counts["events"] > 1,
        "later rounds in keys of their own: {counts:?}"
    );
    let (loaded, last) = store.load(id).await.unwrap().unwrap();
    assert_eq!((loaded, last), (saga, seq - 1));
    let events = store.events(id).await.unwrap();
    assert_eq!(events.len() as u64, seq);
    assert!(events.iter().enumerate().all(|(i, (s, _))| *s == i as u64));
}

#[tokio::test]
async fn retention_also_clears_an_active_entry_a_crash_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = "0190b6c8-0000-7000-8000-0000000000a1";
    let saga = settle(&store, id, None).await;
    // As if the crash came after the finished entry but before the active one went.
    store.mark_active(id);
    assert_eq!(store.key_counts()["active"], 1);
    assert!(saga.is_settled());
    assert_eq!(store.expire_finished(u64::MAX, 10).await.unwrap(), 1);
    assert_eq!(store.key_counts()["active"], 0);
}

#[tokio::test]
async fn retention_in_slices_of_one_removes_every_settled_saga_of_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // An old-format settled saga between version-2 ones, and one still running.
    let ids: Vec<String> = (1..=4)
        .map(|i| format!("0190b6c8-0000-7000-8000-00000000010{i}"))
        .collect();
    settle(&store, &ids[0], Some("k1")).await;
    let first = created(&ids[1], None);
    let mut old = crate::engine::Saga::create(&first).unwrap();
    store.insert_version_1_round(
        &ids[1],
        0,
        &[crate::engine::Event::Created(Box::new(first))],
    );
    let events = commit_round();
    for e in &events {
        old.apply(e).unwrap();
    }
    store.insert_version_1_round(&ids[1], 1, &events);
    store.save_snapshot(&old, 4).unwrap();
    settle(&store, &ids[2], Some("k3")).await;
    store.create(&created(&ids[3], None), None).await.unwrap();

    let mut removed = 0;
    loop {
        let n = store.expire_finished(u64::MAX, 1).await.unwrap();
        assert!(n <= 1);
        if n == 0 {
            break;
        }
        removed += n;
    }
    assert_eq!(removed, 3);
    let counts = store.key_counts();
    assert_eq!(counts["events"], 1, "only the running saga: {counts:?}");
    assert!(store.load(&ids[3]).await.unwrap().is_some());
    assert_eq!(store.saga_for_key("k1").await.unwrap(), None);
}

/// A settled saga with a business key, settled as `settle` does.
async fn settle_with_business_key(
    store: &SledStore,
    id: &str,
    key: Option<&str>,
    business_key: &str,
) -> crate::engine::Saga {
    let mut first = created(id, key);
    first.business_key = Some(business_key.into());
    settle_created(store, first).await
}

#[tokio::test]
async fn a_settled_saga_moves_to_the_archive_and_reads_as_before() {
    use super::SagaFilter;
    let dir = tempfile::tempdir().unwrap();
    let settled = "0190b6c8-0000-7000-8000-0000000000b1";
    let running = "0190b6c8-0000-7000-8000-0000000000b2";
    let later = "0190b6c8-0000-7000-8000-0000000000b3";
    let by_business_key = SagaFilter {
        business_key: Some("order-b".into()),
        ..SagaFilter::default()
    };
    let ids = |page: super::SagaPage| page.sagas.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let store = SledStore::open(dir.path()).unwrap();
    let saga = settle_with_business_key(&store, settled, Some("kb1"), "order-b").await;
    let mut first = created(running, Some("kb2"));
    first.business_key = Some("order-b".into());
    store.create(&first, Some("kb2")).await.unwrap();
    settle_with_business_key(&store, later, None, "order-b").await;
    let events_before = store.events(settled).await.unwrap();

    assert_eq!(store.archive_settled(1).unwrap(), 1, "one per call at most");
    assert_eq!(store.archive_settled(100).unwrap(), 1);
    assert_eq!(
        store.archive_settled(100).unwrap(),
        0,
        "nothing left to move"
    );
    let counts = store.key_counts();
    for (tree, n) in [
        ("events", 1),
        ("active", 1),
        ("idempotency", 1),
        ("business_keys", 1),
        ("unarchived", 0),
        ("archive", 2),
    ] {
        assert_eq!(counts[tree], n, "{tree}: {counts:?}");
    }

    assert_eq!(store.load(settled).await.unwrap(), Some((saga, 4)));
    assert_eq!(store.events(settled).await.unwrap(), events_before);
    assert_eq!(
        ids(store.list(&SagaFilter::default(), None, 10).await.unwrap()),
        [settled, running, later],
        "sled's and the archive's sagas in one id order"
    );
    let running_only = SagaFilter {
        state: Some(sagas::api::SagaState::Running),
        ..SagaFilter::default()
    };
    assert_eq!(
        ids(store.list(&running_only, None, 10).await.unwrap()),
        [running]
    );
    let first_page = store.list(&by_business_key, None, 2).await.unwrap();
    assert_eq!(first_page.next_cursor.as_deref(), Some(running));
    assert_eq!(ids(first_page), [settled, running]);
    assert_eq!(
        ids(store
            .list(&by_business_key, Some(running), 2)
            .await
            .unwrap()),
        [later]
    );
    assert_eq!(
        store.saga_for_key("kb1").await.unwrap().as_deref(),
        Some(settled)
    );
    // A resubmission with the archived saga's key finds it and claims nothing in sled.
    assert_eq!(
        create(&store, "0190b6c8-0000-7000-8000-0000000000bf", Some("kb1")).await,
        Creation::Existing(settled.into())
    );
    assert_eq!(store.key_counts()["idempotency"], 1);
    // The resubmission resumes the archived saga, settled: nothing is written for it.
    let (archived, seq) = store.load(settled).await.unwrap().unwrap();
    store.save_snapshot(&archived, seq).unwrap();
    let counts = store.key_counts();
    assert_eq!((counts["finished"], counts["events"]), (0, 1), "{counts:?}");

    // Retention removes from the archive too.
    assert_eq!(store.expire_finished(u64::MAX, 10).await.unwrap(), 2);
    let counts = store.key_counts();
    assert_eq!(counts["archive"], 0, "{counts:?}");
    assert_eq!(store.load(settled).await.unwrap(), None);
    assert_eq!(store.saga_for_key("kb1").await.unwrap(), None);
    assert_eq!(
        ids(store.list(&by_business_key, None, 10).await.unwrap()),
        [running]
    );
    assert_eq!(
        create(&store, "0190b6c8-0000-7000-8000-0000000000be", Some("kb1")).await,
        Creation::Created,
        "an expired saga's key is free again"
    );
}

#[tokio::test]
async fn a_move_cut_short_by_a_crash_is_read_once_and_finished_by_the_next() {
    use super::SagaFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let moved = "0190b6c8-0000-7000-8000-0000000000c1";
    let expired = "0190b6c8-0000-7000-8000-0000000000c2";
    let saga = settle_with_business_key(&store, moved, Some("kc1"), "order-c").await;
    settle_with_business_key(&store, expired, Some("kc2"), "order-c").await;
    // The archive's commit happened; sled's release of the sagas did not.
    store.copy_to_archive(moved);
    store.copy_to_archive(expired);
    let counts = store.key_counts();
    assert_eq!((counts["events"], counts["archive"]), (2, 2), "{counts:?}");
    for filter in [
        SagaFilter::default(),
        SagaFilter {
            business_key: Some("order-c".into()),
            ..SagaFilter::default()
        },
    ] {
        let page = store.list(&filter, None, 10).await.unwrap();
        let ids: Vec<_> = page.sagas.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [moved, expired], "each listed once: {filter:?}");
    }

    // The next move finishes the job; retention removes the saga from both.
    assert_eq!(store.archive_settled(1).unwrap(), 1);
    let counts = store.key_counts();
    assert_eq!((counts["events"], counts["archive"]), (1, 2), "{counts:?}");
    assert_eq!(store.load(moved).await.unwrap(), Some((saga, 4)));
    store.expire_finished(u64::MAX, 10).await.unwrap();
    let counts = store.key_counts();
    let left: Vec<_> = counts
        .iter()
        .filter(|(tree, n)| **n > 0 && **tree != "plans")
        .collect();
    assert!(left.is_empty(), "nothing left: {counts:?}");
}

#[tokio::test]
async fn settled_sagas_of_a_data_directory_from_before_the_archive_are_found_by_one_walk() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let ids: Vec<String> = (1..=3)
        .map(|i| format!("0190b6c8-0000-7000-8000-00000000020{i}"))
        .collect();
    settle(&store, &ids[0], Some("kw1")).await;
    store.create(&created(&ids[1], None), None).await.unwrap();
    settle(&store, &ids[2], None).await;
    store.forget_archive_progress();

    // In slices: the running saga between them is passed over and stays.
    assert_eq!(store.archive_settled(1).unwrap(), 1);
    assert!(!store.archive_walked());
    assert_eq!(store.archive_settled(10).unwrap(), 1);
    assert!(store.archive_walked());
    assert_eq!(store.archive_settled(10).unwrap(), 0);
    let counts = store.key_counts();
    assert_eq!(
        (counts["events"], counts["active"], counts["archive"]),
        (1, 1, 2),
        "{counts:?}"
    );
    assert_eq!(
        store.saga_for_key("kw1").await.unwrap().as_deref(),
        Some(ids[0].as_str())
    );
}
