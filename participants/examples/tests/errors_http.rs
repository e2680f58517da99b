//! Every error a participant answers has the coordinator's shape,
//! `{"error": {"code", "message"}}`, whoever raises it: the branch extractor, the barrier,
//! the business, the admin routes, `/_faults`, the router itself, or the storage.

mod support;

use example_participants::faults::FaultPlan;
use example_participants::{ParticipantKind, wallet};
use participants::branch::MAX_BODY_BYTES;
use serde_json::{Value, json};
use support::Participant;

/// Asserts that `(status, body)` is `status` with exactly `{"error": {"code": code,
/// "message": <non-empty string>}}`.
#[track_caller]
fn assert_error((got, body): (u16, Value), status: u16, code: &str) {
    assert_eq!(got, status, "{body}");
    let outer = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(outer.len(), 1, "only `error`: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(error.len(), 2, "only `code` and `message`: {body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A wallet with fault injection enabled (no fault active) and account `a` funded.
async fn wallet() -> Participant {
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

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    support::decode(request.send().await.unwrap()).await
}

#[tokio::test]
async fn request_errors_have_the_error_body() {
    let w = wallet().await;
    let freeze = json!({"account": "a", "amount": 5});

    // The branch extractor: not JSON, not a branch call, headers that disagree.
    let not_json = w.http.post(w.url("/freeze/try")).body("{oops");
    assert_error(send(not_json).await, 400, "bad_request");
    let no_saga = w
        .http
        .post(w.url("/freeze/try"))
        .json(&json!({"saga_id": "", "step": "f", "phase": "try"}));
    assert_error(send(no_saga).await, 400, "bad_request");
    let mismatch = w
        .http
        .post(w.url("/freeze/try"))
        .header("saga-step", "other")
        .json(&json!({"saga_id": "s", "step": "f", "phase": "try", "input": freeze}));
    assert_error(send(mismatch).await, 400, "bad_request");

    // The barrier: a cancel posted to the try route; a confirm without its try.
    assert_error(
        w.branch("/freeze/try", "s1", "f", "cancel", freeze.clone())
            .await,
        400,
        "wrong_phase",
    );
    assert_error(
        w.branch("/freeze/confirm", "s1", "f", "confirm", freeze.clone())
            .await,
        409,
        "confirm_without_try",
    );

    // The business: a rejection and unusable input.
    assert_error(
        w.branch(
            "/freeze/try",
            "s2",
            "f",
            "try",
            json!({"account": "a", "amount": 101}),
        )
        .await,
        409,
        "insufficient_funds",
    );
    assert_error(
        w.branch("/freeze/try", "s3", "f", "try", json!({"amount": 1}))
            .await,
        422,
        "invalid_input",
    );

    // Admin routes: bad bodies, a bad amount, an unknown account, a path that is not UTF-8.
    let deposit = w.url("/accounts/a/deposit");
    assert_error(
        send(w.http.post(&deposit).body("not json")).await,
        400,
        "bad_request",
    );
    assert_error(
        w.post("/accounts/a/deposit", json!({"amount": "ten"}))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        w.post("/accounts/a/deposit", json!({"amount": 0})).await,
        422,
        "invalid_input",
    );
    assert_error(
        w.post("/accounts/a/deposit", json!({"amount": u64::MAX}))
            .await,
        422,
        "overflow",
    );
    assert_error(w.get("/accounts/nobody").await, 404, "unknown_account");
    assert_error(w.get("/accounts/%FF").await, 400, "bad_request");

    // Fault control.
    let faults = w.url("/_faults");
    assert_error(
        send(w.http.put(&faults).json(&json!({"error_rate": 2}))).await,
        400,
        "bad_request",
    );
    assert_error(
        send(w.http.put(&faults).body("[")).await,
        400,
        "bad_request",
    );
    // An injected failure.
    assert_eq!(
        send(w.http.put(&faults).json(&json!({"error_rate": 1})))
            .await
            .0,
        200
    );
    assert_error(
        w.branch("/freeze/try", "s4", "f", "try", freeze.clone())
            .await,
        500,
        "injected_fault",
    );
    assert_eq!(send(w.http.put(&faults).json(&json!({}))).await.0, 200);

    // The router: no such route, a method the route does not take.
    assert_error(w.get("/no/such/route").await, 404, "not_found");
    assert_error(w.get("/freeze/try").await, 405, "method_not_allowed");
    assert_error(
        send(w.http.delete(w.url("/accounts/a"))).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        send(w.http.post(w.url("/_faults"))).await,
        405,
        "method_not_allowed",
    );
    w.running.shutdown().await;
}

/// A body one byte over the limit is `413`, on a branch route and on an admin route; one
/// within the limit that is not JSON is `400`.
#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let w = wallet().await;
    let too_large = vec![b' '; MAX_BODY_BYTES + 1];
    for path in ["/freeze/try", "/accounts/a/deposit"] {
        let request = w.http.post(w.url(path)).body(too_large.clone());
        assert_error(send(request).await, 413, "payload_too_large");
        let request = w.http.post(w.url(path)).body(vec![b'x'; 1_000]);
        assert_error(send(request).await, 400, "bad_request");
    }
    // Within the limit, a large input goes through.
    let padding = "x".repeat(MAX_BODY_BYTES / 2);
    let input = json!({"account": "a", "amount": 1, "padding": padding});
    assert_eq!(
        w.branch("/freeze/try", "big", "f", "try", input).await.0,
        200
    );
    w.running.shutdown().await;
}

/// Stored data that does not decode: the barrier's own record (`500 storage`), a business
/// record read by a branch call (`500 invariant_violated`) or by an admin read (`500
/// storage`).
#[tokio::test]
async fn storage_errors_have_the_error_body() {
    let w = wallet().await;
    let Participant { running, dir, .. } = w;
    running.shutdown().await;
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        // The barrier's key of branch ("s1", "f"): len(saga_id) as u32 BE, saga_id, step.
        let mut key = 2u32.to_be_bytes().to_vec();
        key.extend_from_slice(b"s1f");
        db.open_tree("barrier")
            .unwrap()
            .insert(key, b"not json".as_slice())
            .unwrap();
        db.open_tree("accounts")
            .unwrap()
            .insert("broken", b"not json".as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let w = support::start_in(dir, ParticipantKind::Wallet, |_| {}, wallet::start).await;
    let freeze = |account: &str| json!({"account": account, "amount": 1});
    assert_error(
        w.branch("/freeze/try", "s1", "f", "try", freeze("a")).await,
        500,
        "storage",
    );
    assert_error(
        w.branch("/freeze/try", "s2", "f", "try", freeze("broken"))
            .await,
        500,
        "invariant_violated",
    );
    assert_error(w.get("/accounts/broken").await, 500, "storage");
    assert_error(w.get("/accounts").await, 500, "storage");
    // Healthy branches are unaffected.
    assert_eq!(
        w.branch("/freeze/try", "s3", "f", "try", freeze("a"))
            .await
            .0,
        200
    );
    w.running.shutdown().await;
}
