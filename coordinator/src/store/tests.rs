//! The sled store against its contract: rounds as records, loads without a snapshot, listing
//! across active and settled sagas, idempotency claims.

use super::{Creation, SagaLog, SledStore};
use crate::engine::fixtures::{ended_ok, one_step as created};
use crate::engine::{CallRef, Decision, Event, Saga};

/// The events that run the one-step saga to `committed`.
fn commit_events() -> Vec<Event> {
    let call = CallRef {
        step: 0,
        phase: sagas::Phase::Action,
        attempt: 1,
    };
    vec![
        Event::CallStarted { call, at: 1_001 },
        ended_ok(call, 1_002),
        Event::Decided {
            decision: Decision::Commit,
            at: 1_002,
        },
        Event::Finished { at: 1_002 },
    ]
}

fn create(store: &SledStore, id: &str, key: Option<&str>) -> Creation {
    let first = Event::Created(Box::new(created(id, key)));
    store.create(&first, id, key).unwrap()
}

#[tokio::test]
async fn rounds_are_numbered_in_order_and_replayed_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(create(&store, "s1", None), Creation::Created);
    let events = commit_events();
    store.append("s1", 1, &events[..1]).unwrap();
    store.append("s1", 2, &events[1..]).unwrap();

    let logged = store.events("s1").unwrap();
    let seqs: Vec<u64> = logged.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(logged[4].1, Event::Finished { at: 1_002 });

    let (saga, seq) = store.load("s1").unwrap().expect("saga is in the log");
    assert_eq!(seq, 4);
    assert!(saga.lifecycle.is_terminal());
    assert_eq!(store.active_ids().unwrap(), vec!["s1".to_string()]);
    assert!(store.load("unknown").unwrap().is_none());
}

#[tokio::test]
async fn a_snapshot_settles_the_saga_and_later_loads_start_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    create(&store, "s1", None);
    let mut saga = Saga::create(&created("s1", None)).unwrap();
    for event in commit_events() {
        saga.apply(&event).unwrap();
    }
    store.append("s1", 1, &commit_events()).unwrap();
    store.save_snapshot(&saga, 4).unwrap();

    assert!(store.active_ids().unwrap().is_empty());
    let (loaded, seq) = store.load("s1").unwrap().unwrap();
    assert_eq!((loaded, seq), (saga, 4));
}

#[tokio::test]
async fn listing_merges_active_and_settled_sagas_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    for id in ["a", "b", "c", "d"] {
        create(&store, id, None);
    }
    // b and d settle; a and c stay active (no snapshot).
    for id in ["b", "d"] {
        let mut saga = Saga::create(&created(id, None)).unwrap();
        for event in commit_events() {
            saga.apply(&event).unwrap();
        }
        store.append(id, 1, &commit_events()).unwrap();
        store.save_snapshot(&saga, 4).unwrap();
    }
    let ids = |page: super::SagaPage| page.sagas.into_iter().map(|s| s.id).collect::<Vec<_>>();

    let first = store.list(&|_| true, None, 3).unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some("c"));
    assert_eq!(ids(first), vec!["a", "b", "c"]);
    let rest = store.list(&|_| true, Some("c"), 3).unwrap();
    assert_eq!(rest.next_cursor, None);
    assert_eq!(ids(rest), vec!["d"]);
    let terminal = store
        .list(&|s| s.lifecycle.is_terminal(), None, 10)
        .unwrap();
    assert_eq!(ids(terminal), vec!["b", "d"]);
}

#[tokio::test]
async fn a_key_names_one_saga_and_a_claim_lost_in_a_crash_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(create(&store, "s1", Some("k")), Creation::Created);
    assert_eq!(
        create(&store, "s2", Some("k")),
        Creation::Existing("s1".into())
    );
    assert_eq!(store.saga_for_key("k").unwrap().as_deref(), Some("s1"));
    assert!(store.load("s2").unwrap().is_none());

    // A crash kept the claim of "ghost" but not its first event: the submission was never
    // acknowledged, so the next one with the key owns it.
    store.claim_without_saga("k2", "ghost");
    assert_eq!(create(&store, "s3", Some("k2")), Creation::Created);
    assert_eq!(store.saga_for_key("k2").unwrap().as_deref(), Some("s3"));
    assert!(store.load("s3").unwrap().is_some());
}
