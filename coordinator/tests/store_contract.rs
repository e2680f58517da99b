//! The store's contract, checked against every implementation: the embedded sled store and the
//! PostgreSQL store shared by a cluster. Each test is a function over a [`Backend`]; the
//! `contract!` macro runs it on each.

use std::sync::Arc;
use std::time::Duration;

use coordinator::engine::{CallOutcome, CallRef, Created, Decision, Event, Plan, PlanStep, Saga};
use coordinator::testing::{
    Creation, PgOptions, PgStore, SagaFilter, SledStore, Store, VersionWrite,
};
use sagas::api::SagaState;
use sagas::{Phase, RetryPolicy, StepKind, WorkflowSpec};
use throwaway_postgres::PostgresServer;

/// Where a test's store lives; stores opened on one place share their data.
enum Backend {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sled() -> Backend {
        Backend::Sled(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        let server = PostgresServer::shared();
        let name = format!("contract_{}", uuid::Uuid::now_v7().simple());
        Backend::Postgres(server.create_database(&name).unwrap())
    }

    /// A store instance on this place, with a short lease for the cluster store.
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sled(dir) => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                loop {
                    // sled lets go of a database shortly after its last handle is dropped.
                    match SledStore::open(dir.path()) {
                        Ok(store) => return Arc::new(store),
                        Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Backend::Postgres(url) => {
                let options = PgOptions {
                    lease: LEASE,
                    ..PgOptions::new(url.clone())
                };
                Arc::new(PgStore::connect(&options).await.unwrap())
            }
        }
    }
}

const LEASE: Duration = Duration::from_millis(300);

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sled_store {
            $(
                // Two threads: some tests race readers against writers.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::sled()).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::postgres()).await;
                }
            )*
        }
    };
}

contract!(
    rounds_are_numbered_in_order_and_replayed,
    a_settled_saga_is_snapshotted_and_listed_by_state,
    listing_pages_in_creation_order_and_filters,
    an_idempotency_key_names_one_saga,
    a_workflow_version_names_one_definition_forever,
    the_registry_round_trips,
    retention_removes_settled_sagas_past_the_cutoff_with_their_key,
    a_new_instance_claims_active_sagas_once_the_old_one_is_gone,
    a_saga_removed_while_it_is_read_is_absent_never_corrupt,
);

// ---------------------------------------------------------------------------------------------
// Sagas to store
// ---------------------------------------------------------------------------------------------

fn created(id: &str, key: Option<&str>, at: u64) -> Created {
    Created {
        id: id.into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: sagas::RawJson::from_text(r#"{"big": 123456789012345678901234567890}"#).unwrap(),
        callback_url: None,
        idempotency_key: key.map(Into::into),
        business_key: None,
        callback_max_attempts: coordinator::engine::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan: Arc::new(Plan {
            steps: vec![PlanStep {
                name: "only".into(),
                participant: "p".into(),
                action: "a".into(),
                kind: StepKind::Saga,
                deps: vec![],
                timeout_ms: None,
                retry: RetryPolicy::default(),
            }],
            timeout_ms: None,
        }),
        at,
    }
}

/// A fresh saga id (what the runtime makes: sortable by creation).
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The events that run the one-step saga to `committed`, numbered from 1.
fn commit_events(at: u64) -> Vec<Event> {
    let call = CallRef {
        step: 0,
        phase: Phase::Action,
        attempt: 1,
    };
    vec![
        Event::CallStarted { call, at },
        Event::CallEnded {
            call,
            outcome: CallOutcome::Ok,
            http_status: Some(200),
            latency_ms: 1,
            error: None,
            retry_at: 0,
            at,
        },
        Event::Decided {
            decision: Decision::Commit,
            at,
        },
        Event::Finished { at },
    ]
}

/// Creates saga `id` and, with `commit`, runs it to `committed` with a snapshot; flushed.
async fn stored_saga(
    store: &dyn Store,
    id: &str,
    key: Option<&str>,
    at: u64,
    commit: bool,
) -> Saga {
    let created = created(id, key, at);
    assert_eq!(
        store.create(&created, key).await.unwrap(),
        Creation::Created
    );
    let mut saga = Saga::create(&created).unwrap();
    if commit {
        let events = commit_events(at + 1);
        for event in &events {
            saga.apply(event).unwrap();
        }
        store.append(&saga, 1, &events).unwrap();
        store.save_snapshot(&saga, 4).unwrap();
        store.flush().await.unwrap();
    }
    saga
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

async fn rounds_are_numbered_in_order_and_replayed(backend: Backend) {
    let store = backend.open().await;
    let id = new_id();
    let created = created(&id, None, 1_000);
    store.create(&created, None).await.unwrap();
    let mut saga = Saga::create(&created).unwrap();
    let events = commit_events(1_001);
    saga.apply(&events[0]).unwrap();
    store.append(&saga, 1, &events[..1]).unwrap();
    for event in &events[1..] {
        saga.apply(event).unwrap();
    }
    store.append(&saga, 2, &events[1..]).unwrap();
    store.flush().await.unwrap();

    let logged = store.events(&id).await.unwrap();
    let seqs: Vec<u64> = logged.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(logged[4].1, Event::Finished { at: 1_001 });
    let (loaded, seq) = store.load(&id).await.unwrap().expect("in the log");
    assert_eq!(seq, 4);
    assert_eq!(loaded, saga);
    assert_eq!(
        loaded.input.get(),
        r#"{"big": 123456789012345678901234567890}"#,
        "the input's text, unchanged"
    );
    assert!(store.load("unknown").await.unwrap().is_none());
}

async fn a_settled_saga_is_snapshotted_and_listed_by_state(backend: Backend) {
    let store = backend.open().await;
    let id = new_id();
    let saga = stored_saga(&*store, &id, None, 1_000, true).await;
    let (loaded, seq) = store.load(&id).await.unwrap().unwrap();
    assert_eq!((loaded, seq), (saga, 4));
    let committed = SagaFilter {
        state: Some(SagaState::Committed),
        ..SagaFilter::default()
    };
    let page = store.list(&committed, None, 10).await.unwrap();
    assert_eq!(page.sagas.len(), 1);
    assert_eq!(page.sagas[0].id, id);
}

async fn listing_pages_in_creation_order_and_filters(backend: Backend) {
    let store = backend.open().await;
    let ids: Vec<String> = (0..4).map(|_| new_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        // The second and the fourth settle; the others stay running.
        stored_saga(&*store, id, None, 1_000 + i as u64, i % 2 == 1).await;
    }
    let all = SagaFilter::default();
    let listed = |page: coordinator::testing::SagaPage| {
        page.sagas.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    let first = store.list(&all, None, 3).await.unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some(ids[2].as_str()));
    assert_eq!(listed(first), ids[..3]);
    let rest = store.list(&all, Some(&ids[2]), 3).await.unwrap();
    assert_eq!(rest.next_cursor, None);
    assert_eq!(listed(rest), ids[3..]);
    let running = SagaFilter {
        state: Some(SagaState::Running),
        ..SagaFilter::default()
    };
    assert_eq!(
        listed(store.list(&running, None, 10).await.unwrap()),
        vec![ids[0].clone(), ids[2].clone()]
    );
    let recent = SagaFilter {
        created_from: Some(1_002),
        workflow: Some("w".into()),
        ..SagaFilter::default()
    };
    assert_eq!(
        listed(store.list(&recent, None, 10).await.unwrap()),
        ids[2..]
    );
    let other = SagaFilter {
        workflow: Some("other".into()),
        ..SagaFilter::default()
    };
    assert!(store.list(&other, None, 10).await.unwrap().sagas.is_empty());
}

async fn an_idempotency_key_names_one_saga(backend: Backend) {
    let store = backend.open().await;
    let (first, second) = (new_id(), new_id());
    stored_saga(&*store, &first, Some("k"), 1_000, false).await;
    let again = store
        .create(&created(&second, Some("k"), 1_001), Some("k"))
        .await
        .unwrap();
    assert_eq!(again, Creation::Existing(first.clone()));
    assert_eq!(
        store.saga_for_key("k").await.unwrap().as_deref(),
        Some(first.as_str())
    );
    assert!(
        store.load(&second).await.unwrap().is_none(),
        "nothing written"
    );
    // Concurrent creations with one key: exactly one is created.
    let outcomes = futures::future::join_all((0..8).map(|i| {
        let store = store.clone();
        async move {
            let id = new_id();
            store
                .create(&created(&id, Some("race"), 2_000 + i), Some("race"))
                .await
                .unwrap()
        }
    }))
    .await;
    let created_count = outcomes.iter().filter(|c| **c == Creation::Created).count();
    assert_eq!(created_count, 1, "{outcomes:?}");
}

async fn a_workflow_version_names_one_definition_forever(backend: Backend) {
    let store = backend.open().await;
    let spec = |action: &str| -> WorkflowSpec {
        serde_json::from_value(serde_json::json!({
            "steps": [{"name": "s", "participant": "p", "action": action}]
        }))
        .unwrap()
    };
    assert_eq!(
        store.put_workflow("w", 1, &spec("a")).await.unwrap(),
        VersionWrite::Written
    );
    assert_eq!(
        store.put_workflow("w", 1, &spec("a")).await.unwrap(),
        VersionWrite::Written
    );
    assert_eq!(
        store.put_workflow("w", 1, &spec("b")).await.unwrap(),
        VersionWrite::Taken
    );
    assert_eq!(
        store.put_workflow("w", 2, &spec("b")).await.unwrap(),
        VersionWrite::Written
    );
    assert_eq!(
        store.workflow_version("w", 1).await.unwrap(),
        Some(spec("a"))
    );
    let newest = store.workflows().await.unwrap();
    assert_eq!(newest, vec![("w".to_string(), 2, spec("b"))]);
}

async fn the_registry_round_trips(backend: Backend) {
    let store = backend.open().await;
    let generation = store.registry_generation().await.unwrap();
    let participant: sagas::ParticipantSpec = serde_json::from_value(serde_json::json!({
        "base_url": "http://127.0.0.1:9",
        "actions": {"a": {"action": "/a", "compensate": "/a/undo"}}
    }))
    .unwrap();
    store.put_participant("p", &participant).await.unwrap();
    assert_eq!(
        store.participants().await.unwrap(),
        vec![("p".to_string(), participant)]
    );
    let spec: WorkflowSpec = serde_json::from_value(serde_json::json!({
        "steps": [{"name": "s", "participant": "p", "action": "a"}]
    }))
    .unwrap();
    assert_eq!(store.file_workflow("w").await.unwrap(), None);
    store.put_file_workflow("w", &spec).await.unwrap();
    assert_eq!(store.file_workflow("w").await.unwrap(), Some(spec));
    if store.clustered() {
        assert!(
            store.registry_generation().await.unwrap() > generation,
            "other instances learn of the change"
        );
    }
}

async fn retention_removes_settled_sagas_past_the_cutoff_with_their_key(backend: Backend) {
    let store = backend.open().await;
    let (old, running) = (new_id(), new_id());
    stored_saga(&*store, &old, Some("old-key"), 1_000, true).await;
    stored_saga(&*store, &running, None, 1_000, false).await;
    assert_eq!(
        store.expire_finished(1_000, 10).await.unwrap(),
        0,
        "not before its time"
    );
    assert_eq!(store.expire_finished(5_000, 10).await.unwrap(), 1);
    assert!(store.load(&old).await.unwrap().is_none());
    assert!(store.events(&old).await.unwrap().is_empty());
    assert_eq!(
        store.saga_for_key("old-key").await.unwrap(),
        None,
        "its key is free again"
    );
    assert!(
        store.load(&running).await.unwrap().is_some(),
        "running sagas stay"
    );
}

/// Reads racing a retention sweep see a saga whole or not at all: a read of its row and then
/// of its events must not find the row without the events.
async fn a_saga_removed_while_it_is_read_is_absent_never_corrupt(backend: Backend) {
    const SAGAS: usize = 200;
    let store = backend.open().await;
    let ids: Vec<String> = (0..SAGAS).map(|_| new_id()).collect();
    for id in &ids {
        stored_saga(&*store, id, None, 1_000, true).await;
    }
    let reader = {
        let (store, ids) = (store.clone(), ids.clone());
        tokio::spawn(async move {
            let mut absent = 0;
            // Until the sweep removed them all, read every saga in turn.
            while absent < SAGAS {
                absent = 0;
                for id in &ids {
                    match store.load(id).await {
                        Ok(Some(_)) => {}
                        Ok(None) => absent += 1,
                        Err(e) => panic!("reading saga {id} during a retention sweep: {e}"),
                    }
                    // sled's reads never wait: let the sweep run on a runtime of one thread.
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut removed = 0;
    while removed < SAGAS {
        removed += store.expire_finished(5_000, 1).await.unwrap();
        tokio::task::yield_now().await;
    }
    reader.await.unwrap();
}

async fn a_new_instance_claims_active_sagas_once_the_old_one_is_gone(backend: Backend) {
    let (active, done) = (new_id(), new_id());
    {
        let store = backend.open().await;
        stored_saga(&*store, &active, None, 1_000, false).await;
        stored_saga(&*store, &done, None, 1_000, true).await;
    }
    // The old instance is gone (on a cluster: once its lease expired).
    tokio::time::sleep(LEASE * 2).await;
    let store = backend.open().await;
    let claimed = store.claim_orphans(100).await.unwrap();
    assert_eq!(claimed, vec![active.clone()]);
    assert!(
        store.claim_orphans(100).await.unwrap().is_empty(),
        "claimed once"
    );
    // The new instance may write the saga it claimed.
    let (saga, seq) = store.load(&active).await.unwrap().unwrap();
    store
        .append(&saga, seq + 1, &[Event::Resumed { at: 2_000 }])
        .unwrap();
    store.flush().await.unwrap();
    assert!(!store.lost(&active));
}

/// On a cluster, an instance that lost a saga's lease can no longer write it.
#[tokio::test]
async fn a_fenced_instance_cannot_write_a_saga_it_lost() {
    let backend = Backend::postgres();
    let first = backend.open().await;
    let second = backend.open().await;
    let id = new_id();
    let saga = stored_saga(&*first, &id, None, 1_000, false).await;
    // An operator asked the second instance: it takes the lease (epoch + 1).
    assert!(second.take_over(&id).await.unwrap());
    // The first, unaware, writes: the commit drops it and reports the saga lost.
    let call = CallRef {
        step: 0,
        phase: Phase::Action,
        attempt: 1,
    };
    first
        .append(&saga, 1, &[Event::CallStarted { call, at: 1_001 }])
        .unwrap();
    first.flush().await.unwrap();
    assert!(first.lost(&id));
    assert!(first.append(&saga, 2, &[Event::Resumed { at: 2 }]).is_err());
    assert_eq!(
        first.events(&id).await.unwrap().len(),
        1,
        "only the first event"
    );
    // The new owner writes.
    second
        .append(&saga, 1, &[Event::Resumed { at: 1_002 }])
        .unwrap();
    second.flush().await.unwrap();
    assert!(!second.lost(&id));
    assert_eq!(second.events(&id).await.unwrap().len(), 2);
}
