//! Fault injection on the wallet's branch calls.

mod support;

use std::time::{Duration, Instant};

use participants::{ParticipantKind, wallet};
use serde_json::json;
use support::Participant;

async fn faulty_wallet(spec: &str) -> Participant {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(ParticipantKind::Wallet, &dir);
    config.faults = Some(spec.parse().unwrap());
    let w = Participant {
        running: wallet::start(config).await.unwrap(),
        http: reqwest::Client::new(),
        dir,
    };
    // Admin routes are never faulted.
    assert_eq!(
        w.post("/accounts/a/deposit", json!({"amount": 100}))
            .await
            .0,
        200
    );
    w
}

#[tokio::test]
async fn injected_errors_do_not_touch_state() {
    let w = faulty_wallet("error_rate=1").await;
    let (status, body) = w
        .branch(
            "/freeze/try",
            "s1",
            "f",
            "try",
            json!({"account": "a", "amount": 5}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("injected_fault"))
    );
    assert_eq!(
        w.get("/accounts/a").await.1,
        json!({"balance": 100, "frozen": 0})
    );
    assert_eq!(w.get("/healthz").await.0, 200);
    w.running.shutdown().await;
}

#[tokio::test]
async fn dropped_replies_commit_once_and_retries_are_deduplicated() {
    let w = faulty_wallet("drop_reply_rate=1,hang_ms=20").await;
    for _ in 0..3 {
        let (status, _) = w
            .branch(
                "/freeze/try",
                "s1",
                "f",
                "try",
                json!({"account": "a", "amount": 5}),
            )
            .await;
        assert_eq!(status, 503);
    }
    assert_eq!(
        w.get("/accounts/a").await.1,
        json!({"balance": 100, "frozen": 5})
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_injected_hangs_short() {
    let w = faulty_wallet("hang_rate=1,hang_ms=600000").await;
    let (url, http) = (w.url("/freeze/try"), w.http.clone());
    let call = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"saga_id": "s1", "step": "f", "phase": "try", "input": {"account": "a", "amount": 5}}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), w.running.shutdown())
        .await
        .expect("shutdown does not wait for a 10-minute hang");
    // Either the call was hanging and got the fault reply, or it never got in.
    match call.await.unwrap() {
        Ok(status) => assert_eq!(status, 503),
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
