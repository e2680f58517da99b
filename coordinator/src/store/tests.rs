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

/// A settled saga is compacted into one record: its rounds are gone from the `events` tree,
/// and it reads back as before (state, events, listing, key); a leftover round from a crash
/// between the two writes changes nothing.
#[tokio::test]
async fn a_settled_saga_leaves_one_record_and_reads_the_same() {
    use crate::engine::fixtures::ended_ok;
    use crate::engine::{CallRef, Decision, Event, Saga};
    use sagas::Phase;

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let first = created("s1", Some("k1"));
    assert_eq!(create(&store, "s1", Some("k1")).await, Creation::Created);
    let mut saga = Saga::create(&first).unwrap();
    let call = CallRef {
        step: 0,
        phase: Phase::Action,
        attempt: 1,
    };
    let rounds = [
        vec![Event::CallStarted { call, at: 1_001 }],
        vec![
            ended_ok(call, 1_002),
            Event::Decided {
                decision: Decision::Commit,
                at: 1_002,
            },
        ],
        vec![Event::Finished { at: 1_003 }],
    ];
    let mut seq = 1;
    for round in &rounds {
        for event in round {
            saga.apply(event).unwrap();
        }
        store.append(&saga, seq, round).unwrap();
        seq += round.len() as u64;
    }
    let events_before = store.events("s1").await.unwrap();
    assert_eq!(events_before.len(), 5);
    assert!(saga.is_settled());
    store.save_snapshot(&saga, 4).unwrap();

    assert_eq!(store.rounds_stored("s1"), 0, "rounds removed");
    let stored = store.saga_record("s1").unwrap();
    assert!(super::format::is_settled_record(&stored));
    assert_eq!(store.events("s1").await.unwrap(), events_before);
    assert_eq!(store.load("s1").await.unwrap(), Some((saga.clone(), 4)));
    let page = store
        .list(&super::SagaFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.sagas, vec![saga.clone()]);
    // The key still names the saga (its first event is in the settled record).
    assert_eq!(
        create(&store, "s2", Some("k1")).await,
        Creation::Existing("s1".into())
    );
    // Saved again once settled: still the one record, never a snapshot without its events.
    store.save_snapshot(&saga, 4).unwrap();
    assert!(super::format::is_settled_record(
        &store.saga_record("s1").unwrap()
    ));
    assert_eq!(store.events("s1").await.unwrap(), events_before);
    // A round left behind by a crash between the settled record and the removal.
    store.append(&saga, 4, &rounds[2]).unwrap();
    assert_eq!(store.events("s1").await.unwrap(), events_before);
    assert_eq!(store.load("s1").await.unwrap(), Some((saga.clone(), 4)));
    // Retention removes the record, the leftover round and the key.
    assert_eq!(store.expire_finished(u64::MAX, 10).await.unwrap(), 1);
    assert_eq!(store.load("s1").await.unwrap(), None);
    assert_eq!(store.rounds_stored("s1"), 0);
    assert_eq!(store.saga_for_key("k1").await.unwrap(), None);
}
