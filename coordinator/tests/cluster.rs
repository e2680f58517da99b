//! Two coordinators in process on one PostgreSQL database: what a cluster must do that one
//! coordinator does not (the process-level tests in `chaos-tests` kill and pause real ones).

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::time::{Duration, Instant};

use fake_participant::{FakeParticipant, wait_for};
use sagas::api::SagaState;
use sagas::{CoordinatorClient, Phase};
use serde_json::json;
use setup::Backend;

/// A submission waiting on one instance answers the outcome even when another instance takes
/// the saga over meanwhile (here for an operator's abort).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ms_follows_a_saga_another_instance_took_over() {
    setup::run_on(Backend::Postgres, async {
        let dir = tempfile::tempdir().unwrap();
        let first = setup::start(dir.path()).await;
        let second = setup::start(dir.path()).await;
        let (a, b) = (
            CoordinatorClient::new(first.url()),
            CoordinatorClient::new(second.url()),
        );
        let (fake, addr) = FakeParticipant::start().await;
        setup::register(&a, "p", addr, json!({"retry": setup::fast_retry(3, 5)})).await;
        setup::one_step_workflow(&a, "w", "p", "s").await;
        fake.hold(Phase::Action);
        let waiting = tokio::spawn({
            let a = a.clone();
            async move {
                let started = Instant::now();
                let answer = a.submit("w", json!({}), None, Some(20_000)).await;
                (started.elapsed(), answer)
            }
        });
        wait_for(Duration::from_secs(10), async || {
            match fake.count(Phase::Action) {
                0 => Err("the action never arrived".to_string()),
                _ => Ok(()),
            }
        })
        .await;
        let id = a.list_sagas(None, None, None, None).await.unwrap().sagas[0]
            .id
            .clone();
        // Through the other instance: it takes the saga over to apply the abort.
        b.abort(&id).await.unwrap();
        fake.release_all();
        let (waited, answer) = waiting.await.unwrap();
        let saga = answer.unwrap().saga;
        assert_eq!(
            saga.state,
            SagaState::Aborted,
            "answered after {waited:?}: {saga:?}"
        );
        assert!(waited < Duration::from_secs(15), "{waited:?}");
        second.shutdown().await;
        first.shutdown().await;
    })
    .await
}
