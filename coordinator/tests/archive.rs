//! The embedded store's settled archive, end to end: a finished saga leaves sled for
//! `archive.redb` while the coordinator runs, and after a restart it reads, lists and answers
//! its idempotency key as before. Its own test binary: it counts sagas archived on `/metrics`,
//! which are the whole binary's.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::time::{Duration, Instant};

use fake_participant::{FakeParticipant, eventually};
use sagas::api::{SagaQuery, SagaState, SubmitSaga};
use sagas::{CoordinatorClient, Phase};
use serde_json::json;
use setup::{metric, one_step_workflow, register};

#[tokio::test]
async fn a_finished_saga_moves_to_the_archive_and_is_served_from_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(dir.path()).await;
    let client = CoordinatorClient::new(coordinator.url());
    let (fake, addr) = FakeParticipant::start().await;
    register(&client, "p", addr, json!({})).await;
    one_step_workflow(&client, "w", "p", "s").await;
    let body = SubmitSaga {
        workflow: "w".into(),
        input: json!({"n": 1}).into(),
        callback_url: None,
        business_key: Some("order-42".into()),
    };
    let first = client
        .submit_body(&body, Some("key-42"), Some(10_000))
        .await
        .unwrap()
        .saga;
    assert_eq!(first.state, SagaState::Committed);
    let events = client.saga_events(&first.id).await.unwrap();
    eventually("the settled saga is archived", || async {
        metric(&client, "coordinator_sagas_archived_total").await >= 1.0
    })
    .await;
    coordinator.shutdown().await;

    // sled no longer holds the saga: whatever follows is read from the archive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let events_tree = db.open_tree("events").unwrap();
    assert!(!events_tree.contains_key(first.id.as_bytes()).unwrap());
    assert!(
        !db.open_tree("idempotency")
            .unwrap()
            .contains_key("key-42")
            .unwrap()
    );
    drop((events_tree, db));

    let coordinator = setup::start(dir.path()).await;
    let client = CoordinatorClient::new(coordinator.url());
    let read = client.get_saga(&first.id).await.unwrap();
    assert_eq!(read, first);
    assert_eq!(client.saga_events(&first.id).await.unwrap(), events);
    let listed = client
        .query_sagas(&SagaQuery {
            business_key: Some("order-42".into()),
            ..SagaQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.sagas, std::slice::from_ref(&first));
    let again = client
        .submit_body(&body, Some("key-42"), Some(10_000))
        .await
        .unwrap();
    assert_eq!(again.saga.id, first.id, "the archived key names its saga");
    assert_eq!(again.status, 200);
    assert_eq!(fake.count(Phase::Action), 1, "nothing ran twice");
    coordinator.shutdown().await;
}
