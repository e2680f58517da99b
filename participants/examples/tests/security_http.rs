//! The example participants with security on: the coordinator token sent with the
//! registration (`--coordinator-token`), branch calls checked against `--signing-key`.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::put;
use example_participants::{ParticipantArgs, ParticipantKind, wallet};
use sagas::SigningKey;
use sagas::signing::{HEADER_SAGA_SIGNATURE, unix_now};
use serde_json::{Value, json};

#[tokio::test]
async fn registration_carries_the_coordinator_token() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/v1/participants/{name}",
        put(
            move |headers: HeaderMap, axum::Json(spec): axum::Json<Value>| {
                let record = record.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    record.lock().unwrap().push(auth);
                    let mut view = spec;
                    view["name"] = json!("wallet");
                    view["circuit"] = json!("closed");
                    view["in_flight"] = json!(0);
                    view["queued"] = json!(0);
                    view["recent"] = json!({"calls": 0, "failed": 0, "error_rate": 0.0});
                    axum::Json(view)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coordinator = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let args = ParticipantArgs::try_parse_from_for(
        ParticipantKind::Wallet,
        [
            "wallet",
            "--coordinator",
            &coordinator,
            "--coordinator-token",
            "wallet-token",
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = args
        .into_config(ParticipantKind::Wallet)
        .unwrap()
        .with_listen("127.0.0.1:0".parse().unwrap())
        .with_data_dir(dir.path());
    let running = wallet::start(config).await.unwrap();
    let registered = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        running.registration().registered(),
    )
    .await
    .unwrap();
    assert!(registered);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [Some("Bearer wallet-token".to_string())]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_wallet_with_a_signing_key_refuses_unsigned_and_stale_calls() {
    let key: SigningKey = "k1:wallet-secret".parse().unwrap();
    let signing = key.clone();
    let wallet = support::start_in(
        tempfile::tempdir().unwrap(),
        ParticipantKind::Wallet,
        move |config| config.signing_keys = vec![signing],
        wallet::start,
    )
    .await;
    let url = format!("http://{}/freeze/try", wallet.running.local_addr());
    let body = json!({"saga_id": "s1", "step": "freeze", "phase": "try",
        "input": {"account": "nobody", "amount": 1}})
    .to_string();
    let post = |signature: Option<String>| {
        let mut request = wallet
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header(HEADER_SAGA_SIGNATURE, signature);
        }
        request.send()
    };
    let unsigned = post(None).await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let answer: Value = unsigned.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "bad_signature");
    let stale = key.sign(unix_now() - 600, "POST", "/freeze/try", body.as_bytes());
    assert_eq!(post(Some(stale)).await.unwrap().status(), 401);
    let good = key.sign(unix_now(), "POST", "/freeze/try", body.as_bytes());
    let status = post(Some(good)).await.unwrap().status();
    assert_ne!(status, 401, "a good signature reaches the wallet");
    assert_ne!(status.as_u16() / 100, 5);
    // Routes that are not branch calls are not signed by the coordinator, so not checked.
    let accounts = format!("http://{}/accounts", wallet.running.local_addr());
    assert_eq!(
        wallet.http.get(accounts).send().await.unwrap().status(),
        200
    );
    wallet.running.shutdown().await;
}
