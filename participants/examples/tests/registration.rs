//! Registration against a fake coordinator that fails a few times before accepting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use example_participants::{ParticipantConfig, ParticipantKind, RunningParticipant, wallet};
use sagas::{ActionEndpoints, ParticipantPolicy, ParticipantSpec};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct FakeCoordinator {
    attempts: Arc<Mutex<Vec<(String, ParticipantSpec)>>>,
}

async fn put_participant(
    State(fake): State<FakeCoordinator>,
    Path(name): Path<String>,
    Json(spec): Json<ParticipantSpec>,
) -> (StatusCode, Json<Value>) {
    let mut attempts = fake.attempts.lock().unwrap();
    attempts.push((name.clone(), spec.clone()));
    if attempts.len() < 3 {
        let body = json!({"error": {"code": "unavailable", "message": "starting"}});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    // Answers as a coordinator from before `recent` was added to the view: the SDK must
    // still read it.
    let mut view = serde_json::to_value(&spec).unwrap();
    view["name"] = json!(name);
    view["circuit"] = json!("closed");
    view["in_flight"] = json!(0);
    view["queued"] = json!(0);
    (StatusCode::OK, Json(view))
}

/// Serves `app` as the coordinator and starts a wallet registering with it; the wallet's data
/// lives in the returned directory.
async fn wallet_registering_with(app: Router) -> (RunningParticipant, tempfile::TempDir) {
    wallet_with_policy_registering_with(app, None).await
}

/// [`wallet_registering_with`], the wallet configured with `policy` (as `--policy` does).
async fn wallet_with_policy_registering_with(
    app: Router,
    policy: Option<ParticipantPolicy>,
) -> (RunningParticipant, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coordinator = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = ParticipantConfig::new(ParticipantKind::Wallet)
        .with_listen("127.0.0.1:0".parse().unwrap())
        .with_data_dir(dir.path())
        .with_coordinator(coordinator);
    let config = ParticipantConfig { policy, ..config };
    (wallet::start(config).await.unwrap(), dir)
}

/// Whether registration succeeded (`Ok(false)`: it gave up), or `Err` past the deadline.
async fn registration_within_deadline(
    running: &RunningParticipant,
) -> Result<bool, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(20), running.registration().registered()).await
}

#[tokio::test]
async fn registers_the_bound_url_and_actions_after_retrying() {
    let fake = FakeCoordinator::default();
    let app = Router::new()
        .route("/v1/participants/{name}", put(put_participant))
        .with_state(fake.clone());
    let (running, _dir) = wallet_registering_with(app).await;
    let registered = registration_within_deadline(&running)
        .await
        .expect("registered within the deadline");
    assert!(registered);

    let attempts = fake.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        3,
        "two refusals, then success, then no more calls"
    );
    let (name, spec) = &attempts[2];
    assert_eq!(name, "wallet");
    assert_eq!(spec.base_url, running.url());
    assert_eq!(running.url(), format!("http://{}", running.local_addr()));
    assert_eq!(
        spec.actions["freeze"],
        ActionEndpoints::Tcc {
            try_path: "/freeze/try".into(),
            confirm: "/freeze/confirm".into(),
            cancel: "/freeze/cancel".into(),
        }
    );
    assert_eq!(
        spec.policy, None,
        "without --policy the coordinator keeps the policy it has"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_configured_policy_is_sent_with_the_registration() {
    let fake = FakeCoordinator::default();
    let app = Router::new()
        .route("/v1/participants/{name}", put(put_participant))
        .with_state(fake.clone());
    let mut policy = ParticipantPolicy {
        timeout_ms: 1_234,
        max_concurrency: 7,
        ..ParticipantPolicy::default()
    };
    policy.retry.max_attempts = 9;
    let (running, _dir) = wallet_with_policy_registering_with(app, Some(policy.clone())).await;
    assert!(
        registration_within_deadline(&running)
            .await
            .expect("registered within the deadline")
    );
    let attempts = fake.attempts.lock().unwrap().clone();
    let (name, spec) = attempts.last().unwrap();
    assert_eq!(name, "wallet");
    assert_eq!(spec.policy, Some(policy));
    running.shutdown().await;
}

#[tokio::test]
async fn a_refused_registration_is_not_retried() {
    let attempts = Arc::new(Mutex::new(0));
    let counted = attempts.clone();
    let app = Router::new().route(
        "/v1/participants/{name}",
        put(move || {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                let body = json!({"error": {"code": "bad_request", "message": "bad spec"}});
                (StatusCode::BAD_REQUEST, Json(body))
            }
        }),
    );
    let (running, _dir) = wallet_registering_with(app).await;
    let registered = registration_within_deadline(&running)
        .await
        .expect("a refusal ends registration instead of retrying for ever");
    assert!(!registered);
    assert_eq!(*attempts.lock().unwrap(), 1);
    running.shutdown().await;
}

#[tokio::test]
async fn an_accepted_registration_with_an_unreadable_answer_counts_as_registered() {
    // A coordinator of another version accepts the registration (200) with a body this SDK
    // cannot read: the registration is stored, so the participant must neither give up nor
    // send it again.
    let attempts = Arc::new(Mutex::new(0));
    let counted = attempts.clone();
    let app = Router::new().route(
        "/v1/participants/{name}",
        put(move || {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                (
                    StatusCode::OK,
                    Json(json!({"name": "wallet", "shape": "unknown"})),
                )
            }
        }),
    );
    let (running, _dir) = wallet_registering_with(app).await;
    let registered = registration_within_deadline(&running)
        .await
        .expect("registered within the deadline");
    assert!(registered, "a 200 is an accepted registration");
    assert_eq!(*attempts.lock().unwrap(), 1);
    running.shutdown().await;
}

#[tokio::test]
async fn registers_with_whichever_coordinator_of_a_cluster_answers() {
    // The first coordinator is gone (its port closed); the second answers (after two 503s).
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let fake = FakeCoordinator::default();
    let app = Router::new()
        .route("/v1/participants/{name}", put(put_participant))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let answering = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = ParticipantConfig::new(ParticipantKind::Wallet)
        .with_listen("127.0.0.1:0".parse().unwrap())
        .with_data_dir(dir.path());
    let config = ParticipantConfig {
        coordinator_urls: vec![gone, answering],
        ..config
    };
    let running = wallet::start(config).await.unwrap();
    let registered = registration_within_deadline(&running)
        .await
        .expect("registered within the deadline");
    assert!(registered);
    assert_eq!(
        fake.attempts.lock().unwrap().len(),
        3,
        "every answer came from the second"
    );
    running.shutdown().await;
}
