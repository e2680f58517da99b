//! Fault injection on the wallet's branch calls, driven through `PUT /_faults`.

mod support;

use std::time::{Duration, Instant};

use example_participants::faults::FaultPlan;
use example_participants::{ParticipantKind, wallet};
use serde_json::{Value, json};
use support::Participant;
use support::process::WalletProcess;

/// A wallet started with `--faults` (no fault active) and account `a` funded with 100.
async fn faulty_wallet() -> Participant {
    let w = support::start_in(
        tempfile::tempdir().unwrap(),
        ParticipantKind::Wallet,
        |config| config.faults = Some(FaultPlan::default()),
        wallet::start,
    )
    .await;
    assert_eq!(
        w.post("/accounts/a/deposit", json!({"amount": 100}))
            .await
            .0,
        200
    );
    w
}

async fn put_faults(w: &Participant, plan: Value) -> (u16, Value) {
    support::decode(
        w.http
            .put(w.url("/_faults"))
            .json(&plan)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The wallet's `try` for saga `saga_id`, as the coordinator sends it, without unwrapping
/// the transport result.
fn try_freeze(
    w: &Participant,
    http: &reqwest::Client,
    saga_id: &str,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    http.post(w.url("/freeze/try"))
        .header("saga-id", saga_id)
        .header("saga-step", "f")
        .header("saga-phase", "try")
        .header("idempotency-key", format!("{saga_id}:f:try"))
        .json(&json!({"saga_id": saga_id, "step": "f", "phase": "try",
                      "input": {"account": "a", "amount": 5}}))
        .send()
}

async fn account(w: &Participant) -> Value {
    w.get("/accounts/a").await.1
}

#[tokio::test]
async fn without_the_flag_there_is_no_fault_endpoint() {
    let w = support::start(ParticipantKind::Wallet, wallet::start).await;
    let (status, body) = w.get("/_faults").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, body) = put_faults(&w, json!({"error_rate": 1})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn the_plan_round_trips_and_bad_plans_are_refused() {
    let w = faulty_wallet().await;
    let none = json!({"error_rate": 0.0, "delay_ms": 0, "hang": false, "drop_reply_rate": 0.0});
    assert_eq!(w.get("/_faults").await, (200, none.clone()));

    let plan = json!({"error_rate": 0.25, "delay_ms": 5, "hang": false,
                      "drop_reply_rate": 0.5, "seed": 3});
    assert_eq!(put_faults(&w, plan.clone()).await, (200, plan.clone()));
    assert_eq!(w.get("/_faults").await, (200, plan.clone()));

    for bad in [
        json!({"error_rate": 1.5}),
        json!({"drop_reply_rate": -0.1}),
        json!({"delay_ms": -1}),
        json!({"delay_ms": "5"}),
        json!({"hang": "yes"}),
        json!({"latency_ms": 5}),
        json!({"explode": true}),
        json!([1, 2]),
    ] {
        let (status, body) = put_faults(&w, bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("bad_request")),
            "{bad}"
        );
    }
    let (status, body) = support::decode(
        w.http
            .put(w.url("/_faults"))
            .body("not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    // Refused plans change nothing.
    assert_eq!(w.get("/_faults").await, (200, plan));

    // A partial plan replaces the whole plan: what is missing is off.
    let (status, body) = put_faults(&w, json!({"hang": true})).await;
    assert_eq!((status, body["hang"].clone()), (200, json!(true)));
    assert_eq!(body["error_rate"], json!(0.0));
    assert_eq!(put_faults(&w, json!({})).await, (200, none));
    w.running.shutdown().await;
}

#[tokio::test]
async fn injected_errors_answer_500_and_do_not_touch_state() {
    let w = faulty_wallet().await;
    assert_eq!(put_faults(&w, json!({"error_rate": 1})).await.0, 200);
    let (status, body) = support::decode(try_freeze(&w, &w.http, "s1").await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (500, json!("injected_fault"))
    );
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 0}));
    // Admin, health and the fault endpoint itself never fail.
    assert_eq!(w.get("/healthz").await.0, 200);
    assert_eq!(w.get("/_faults").await.0, 200);
    assert_eq!(
        w.post("/accounts/b/deposit", json!({"amount": 1})).await.0,
        200
    );

    // Cleared, the same call is handled normally (the error never reached the barrier).
    assert_eq!(put_faults(&w, json!({})).await.0, 200);
    assert_eq!(try_freeze(&w, &w.http, "s1").await.unwrap().status(), 200);
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 5}));
    w.running.shutdown().await;
}

#[tokio::test]
async fn dropped_replies_commit_then_close_the_connection_and_retries_are_deduplicated() {
    let w = faulty_wallet().await;
    assert_eq!(put_faults(&w, json!({"drop_reply_rate": 1})).await.0, 200);

    for attempt in 0..3 {
        let started = Instant::now();
        let err = try_freeze(&w, &w.http, "s1")
            .await
            .expect_err("a dropped reply is no HTTP answer at all");
        assert!(
            err.is_request() && !err.is_timeout() && err.status().is_none(),
            "attempt {attempt}: {err:?}"
        );
        // The connection is cut at once, not held until some timeout.
        assert!(started.elapsed() < Duration::from_secs(5), "{err:?}");
        // The change was committed before the connection was cut, and only once.
        assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 5}));
    }

    // Faults cleared: the coordinator's retry is answered from the barrier.
    assert_eq!(put_faults(&w, json!({})).await.0, 200);
    let (status, body) = support::decode(try_freeze(&w, &w.http, "s1").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 5}));
    w.running.shutdown().await;
}

#[tokio::test]
async fn a_hang_is_never_answered_and_handles_nothing() {
    let w = faulty_wallet().await;
    assert_eq!(put_faults(&w, json!({"hang": true})).await.0, 200);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = try_freeze(&w, &impatient, "s1")
        .await
        .expect_err("a hung call is never answered");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 0}));

    // Healed, the retry is handled for the first time.
    assert_eq!(put_faults(&w, json!({})).await.0, 200);
    assert_eq!(try_freeze(&w, &w.http, "s1").await.unwrap().status(), 200);
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 5}));
    w.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_hangs_without_an_answer() {
    let w = faulty_wallet().await;
    assert_eq!(put_faults(&w, json!({"hang": true})).await.0, 200);
    let call = tokio::spawn(try_freeze(&w, &w.http, "s1"));
    // Wait (with a deadline) until the call is in: a hung call cannot be observed directly,
    // but a second, impatient one proves the hang is active and the server is serving.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(
        try_freeze(&w, &impatient, "s2")
            .await
            .unwrap_err()
            .is_timeout()
    );

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), w.running.shutdown())
        .await
        .expect("shutdown does not wait for hung calls");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Whether it was hanging (cut) or never got in, the call got no HTTP answer.
    let err = call
        .await
        .unwrap()
        .expect_err("a hung call is never answered");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn delay_ms_slows_branch_calls_down() {
    let w = faulty_wallet().await;
    let delay = Duration::from_millis(250);
    assert_eq!(put_faults(&w, json!({"delay_ms": 250})).await.0, 200);
    let started = Instant::now();
    assert_eq!(try_freeze(&w, &w.http, "s1").await.unwrap().status(), 200);
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(account(&w).await, json!({"balance": 100, "frozen": 5}));
    w.running.shutdown().await;
}

#[tokio::test]
async fn the_binary_serves_the_endpoint_only_with_the_flag() {
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(format!("{url}/_faults")).send().await.unwrap();
            support::decode(resp).await
        }
    };

    let plain = WalletProcess::start(&[]).await;
    assert_eq!(get(plain.url.clone()).await.0, 404);

    let flag = WalletProcess::start(&["--faults"]).await;
    assert_eq!(
        get(flag.url.clone()).await,
        (
            200,
            json!({"error_rate": 0.0, "delay_ms": 0, "hang": false, "drop_reply_rate": 0.0})
        )
    );

    let spec = WalletProcess::start(&["--faults", "error_rate=0.5,seed=9"]).await;
    let (status, plan) = get(spec.url.clone()).await;
    assert_eq!(
        (status, plan["error_rate"].clone(), plan["seed"].clone()),
        (200, json!(0.5), json!(9))
    );
}
