//! The wallet over real HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use example_participants::{ParticipantKind, wallet};
use serde_json::{Value, json};
use support::Participant;

async fn wallet_with(account: &str, balance: u64) -> Participant {
    let w = support::start(ParticipantKind::Wallet, wallet::start).await;
    let (status, body) = w
        .post(
            &format!("/accounts/{account}/deposit"),
            json!({"amount": balance}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"balance": balance, "frozen": 0}))
    );
    w
}

/// A branch call of the `freeze` action (step `freeze_funds`): `phase` at `/freeze/{phase}`.
async fn call(w: &Participant, phase: &str, saga_id: &str, input: Value) -> (u16, Value) {
    w.branch(
        &format!("/freeze/{phase}"),
        saga_id,
        "freeze_funds",
        phase,
        input,
    )
    .await
}

fn freeze(account: &str, amount: u64) -> Value {
    json!({"account": account, "amount": amount})
}

async fn account(w: &Participant, id: &str) -> Value {
    let (status, body) = w.get(&format!("/accounts/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn try_then_confirm_deducts_once() {
    let w = wallet_with("alice", 100).await;
    let (status, body) = call(&w, "try", "s1", freeze("alice", 30)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        account(&w, "alice").await,
        json!({"balance": 100, "frozen": 30})
    );

    let confirm = call(&w, "confirm", "s1", freeze("alice", 30)).await;
    assert_eq!(confirm.0, 200, "{}", confirm.1);
    let again = call(&w, "confirm", "s1", freeze("alice", 30)).await;
    assert_eq!(again, confirm);
    assert_eq!(
        account(&w, "alice").await,
        json!({"balance": 70, "frozen": 0})
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn try_then_cancel_releases_once() {
    let w = wallet_with("bob", 100).await;
    assert_eq!(call(&w, "try", "s1", freeze("bob", 40)).await.0, 200);
    let dup = call(&w, "try", "s1", freeze("bob", 40)).await;
    assert_eq!(dup.0, 200);
    assert_eq!(
        account(&w, "bob").await,
        json!({"balance": 100, "frozen": 40})
    );
    for _ in 0..2 {
        let (status, body) = call(&w, "cancel", "s1", freeze("bob", 40)).await;
        assert_eq!(
            (status, body),
            (200, json!({"account": "bob", "released": 40}))
        );
    }
    assert_eq!(
        account(&w, "bob").await,
        json!({"balance": 100, "frozen": 0})
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn cancel_before_try_is_a_null_compensation_and_the_late_try_hangs() {
    let w = wallet_with("carol", 100).await;
    let cancel = call(&w, "cancel", "s1", freeze("carol", 10)).await;
    assert_eq!(cancel, (200, json!({"null_compensation": true})));
    let (status, body) = call(&w, "try", "s1", freeze("carol", 10)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("hanging"))
    );
    assert_eq!(
        account(&w, "carol").await,
        json!({"balance": 100, "frozen": 0})
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn business_rejections_and_bad_requests() {
    let w = wallet_with("dave", 10).await;
    let (status, body) = call(&w, "try", "s1", freeze("dave", 11)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("insufficient_funds")),
        "{body}"
    );
    let (status, body) = call(&w, "try", "s2", freeze("nobody", 1)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("unknown_account"))
    );
    for (i, input) in [
        json!({"account": "dave", "amount": 0}),
        json!({"account": "dave", "amount": -5}),
        json!({"account": "dave", "amount": 1.5}),
        json!({"amount": 1}),
        json!("not an object"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = call(&w, "try", &format!("bad{i}"), input.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (422, json!("invalid_input")),
            "{input}: {body}"
        );
    }
    // A confirm for a try that never ran is refused, not applied.
    let (status, body) = call(&w, "confirm", "s9", freeze("dave", 1)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("confirm_without_try"))
    );
    assert_eq!(
        account(&w, "dave").await,
        json!({"balance": 10, "frozen": 0})
    );

    // Not branch calls at all: 400 with a JSON body.
    let resp = w
        .http
        .post(w.url("/freeze/try"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    let (status, body) = support::decode(resp).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let resp = w
        .http
        .post(w.url("/freeze/try"))
        .header("saga-phase", "cancel")
        .json(&json!({"saga_id": "s1", "step": "f", "phase": "try", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(support::decode(resp).await.0, 400);
    // A cancel posted to the try endpoint.
    let (status, body) = w
        .branch("/freeze/try", "s1", "f", "cancel", freeze("dave", 1))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("wrong_phase"))
    );

    let (status, body) = w.get("/accounts/nobody").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("unknown_account"))
    );
    assert_eq!(
        w.post("/accounts/dave/deposit", json!({"amount": 0}))
            .await
            .0,
        422
    );
    assert_eq!(
        w.post("/accounts/dave/deposit", json!({"amount": u64::MAX}))
            .await
            .0,
        422
    );
    assert_eq!(
        w.post("/accounts/dave/deposit", json!({"nope": 1})).await.0,
        400
    );
    assert_eq!(w.get("/healthz").await.0, 200);
    assert_eq!(w.get("/no/such/route").await.0, 404);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tries_on_one_account_never_over_freeze() {
    const AMOUNT: u64 = 7;
    let w = Arc::new(wallet_with("shared", 37 * AMOUNT).await);
    let mut calls = Vec::new();
    for i in 0..100 {
        let w = w.clone();
        calls.push(tokio::spawn(async move {
            call(&w, "try", &format!("saga-{i}"), freeze("shared", AMOUNT)).await
        }));
    }
    let (mut ok, mut insufficient) = (0, 0);
    for call in calls {
        let (status, body) = call.await.unwrap();
        match (status, body["error"]["code"].as_str()) {
            (200, _) => ok += 1,
            (409, Some("insufficient_funds")) => insufficient += 1,
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((ok, insufficient), (37, 63));
    assert_eq!(
        account(&w, "shared").await,
        json!({"balance": 37 * AMOUNT, "frozen": 37 * AMOUNT})
    );
    let (status, listing) = w.get("/accounts").await;
    assert_eq!(status, 200);
    assert_eq!(
        listing,
        json!({"shared": {"balance": 37 * AMOUNT, "frozen": 37 * AMOUNT}})
    );
    let w = Arc::into_inner(w).expect("all calls finished");
    w.running.shutdown().await;
}

#[tokio::test]
async fn state_and_replies_survive_a_restart() {
    let w = wallet_with("erin", 50).await;
    let first = call(&w, "try", "s1", freeze("erin", 20)).await;
    assert_eq!(first.0, 200);
    let Participant { running, dir, .. } = w;
    running.shutdown().await;

    let w = support::start_in(dir, ParticipantKind::Wallet, |_| {}, wallet::start).await;
    assert_eq!(
        account(&w, "erin").await,
        json!({"balance": 50, "frozen": 20})
    );
    let replay = call(&w, "try", "s1", freeze("erin", 20)).await;
    assert_eq!(replay, first);
    assert_eq!(
        account(&w, "erin").await,
        json!({"balance": 50, "frozen": 20})
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn registration_keeps_retrying_without_a_coordinator() {
    let w = wallet_with("frank", 1).await;
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            w.running.registration().registered()
        )
        .await
        .is_err(),
        "nothing listens at the coordinator address, so registration cannot have finished"
    );
    assert!(!w.running.registration().is_registered());
    // Serving does not wait for registration.
    assert_eq!(w.get("/healthz").await.0, 200);
    w.running.shutdown().await;
}
