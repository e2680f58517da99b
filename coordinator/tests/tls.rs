//! TLS: the API over HTTPS (`--tls-cert`, `--tls-key`) and `https://` participants signed by a
//! private CA (`--ca-cert`), with certificates made in the test (rcgen).

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod setup;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sagas::CoordinatorClient;
use sagas::api::SagaState;
use serde_json::json;

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A client that trusts only `cert` and finds `localhost` at `addr`.
fn client_trusting(cert: &Path, addr: SocketAddr) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_api_is_served_over_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let mut options = setup::options(&dir.path().join("c"));
    options.tls_cert = Some(cert.clone());
    options.tls_key = Some(key);
    let coordinator = coordinator::start(options).await.unwrap();
    let addr = coordinator.local_addr();
    assert!(coordinator.url().starts_with("https://"));

    let https = client_trusting(&cert, addr);
    let url = format!("https://localhost:{}", addr.port());
    let health = https.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let client = CoordinatorClient::with_http(url, https);
    assert!(client.list_workflows().await.unwrap().workflows.is_empty());

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate refuses the server.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let refused = untrusting
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    coordinator.shutdown().await;
}

#[tokio::test]
async fn a_bad_key_file_stops_start_up_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path());
    let not_a_key = dir.path().join("empty.pem");
    std::fs::write(&not_a_key, "").unwrap();
    let mut options = setup::options(&dir.path().join("c"));
    options.tls_cert = Some(cert);
    options.tls_key = Some(not_a_key);
    let error = coordinator::start(options).await.err().expect("refused");
    assert!(error.to_string().contains("--tls-key"), "{error}");
}

/// A participant answering `200 {}` to every branch call over TLS with `cert` and `key`,
/// counting the calls.
async fn https_participant(cert: &Path, key: &Path) -> (Arc<Mutex<usize>>, SocketAddr) {
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            *counted.lock().unwrap() += 1;
            axum::Json(json!({}))
        }
    });
    let config = coordinator::tls::server_config(cert, key).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = coordinator::tls::TlsListener::new(tcp, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (calls, addr)
}

#[tokio::test]
async fn https_participants_signed_by_the_ca_cert_are_called() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (calls, addr) = https_participant(&cert, &key).await;
    let coordinator = setup::start_with(&dir.path().join("c"), |o| {
        o.ca_cert = Some(cert.clone());
    })
    .await;
    let client = CoordinatorClient::new(coordinator.url());
    let mut spec = setup::participant_spec(addr, json!({}));
    spec.base_url = format!("https://localhost:{}", addr.port());
    client.put_participant("p", &spec).await.unwrap();
    setup::one_step_workflow(&client, "w", "p", "s").await;
    let id = client
        .submit("w", json!({}), None, Some(10_000))
        .await
        .unwrap()
        .saga
        .id;
    let saga = setup::wait_for(&client, &id, |s| s.state.is_terminal()).await;
    assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
    assert_eq!(*calls.lock().unwrap(), 1);
    coordinator.shutdown().await;
}
