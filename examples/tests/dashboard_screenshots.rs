//! The README's dashboard screenshots, taken by the same headless Chromium the dashboard tests
//! use, of realistic data: the example participants, a few `place_order` sagas (one aborted for
//! insufficient funds) and a `ship_order` workflow whose courier cannot cancel a booking, so one
//! saga is stuck.
//!
//! Not part of the suite (it writes into the repository); regenerate with
//!
//! ```sh
//! cargo test -p examples --test dashboard_screenshots -- --ignored
//! ```
//!
//! which writes `docs/img/dashboard-{sagas,saga,participants,workflows}.png` (or into
//! `DASHBOARD_SCREENSHOTS_DIR`).

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use examples::LocalServices;
use headless_chromium::Browser;
use sagas::CoordinatorClient;
use sagas::ParticipantSpec;
use sagas::api::{SagaState, SagaView};
use sagas::workflow::WorkflowSpec;
use serde_json::json;

const ACCOUNT: &str = "alice";
const FUNDS: i64 = 10_000;

/// (order id, amount, points): order-1003 cannot be paid for once the first two commit.
const ORDERS: [(&str, i64, i64); 6] = [
    ("order-1001", 2_500, 25),
    ("order-1002", 1_500, 15),
    ("order-1003", 9_000, 90),
    ("order-1004", 1_000, 10),
    ("order-1005", 750, 7),
    ("order-1006", 1_200, 12),
];

/// A courier service whose bookings cannot be cancelled (its cancel endpoint is down).
async fn start_courier() -> String {
    let app = axum::Router::new()
        .route("/book", post(|| async { StatusCode::OK }))
        .route(
            "/unbook",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":"courier API unavailable"}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn wait_settled(client: &CoordinatorClient, id: &str) -> SagaView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let saga = client.get_saga(id).await.unwrap();
        if saga.state.is_terminal() || saga.state == SagaState::Stuck {
            return saga;
        }
        assert!(tokio::time::Instant::now() < deadline, "{saga:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "writes the README's screenshots into docs/img; run with --ignored"]
async fn dashboard_screenshots() {
    let out = std::env::var_os("DASHBOARD_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/img"));
    std::fs::create_dir_all(&out).unwrap();
    let data = tempfile::tempdir().unwrap();
    let services = LocalServices::start(data.path()).await.unwrap();
    let client = services.client();
    let http = reqwest::Client::new();
    http.post(format!(
        "{}/accounts/{ACCOUNT}/deposit",
        services.wallet.url()
    ))
    .json(&json!({"amount": FUNDS}))
    .send()
    .await
    .unwrap()
    .error_for_status()
    .unwrap();

    let courier: ParticipantSpec = serde_json::from_value(json!({
        "base_url": start_courier().await,
        "actions": {"book": {"action": "/book", "compensate": "/unbook"}},
        "policy": {"timeout_ms": 2000, "retry": {"initial_ms": 20, "max_ms": 100, "settle_max_attempts": 4}}
    }))
    .unwrap();
    client.put_participant("courier", &courier).await.unwrap();
    // Order and courier booking at once, then the payment, then the points.
    let ship_order: WorkflowSpec = serde_json::from_value(json!({
        "business_key": "/order_id",
        "steps": [
            {"name": "create_order", "participant": "order", "action": "create", "after": []},
            {"name": "book_courier", "participant": "courier", "action": "book", "after": []},
            {"name": "freeze_funds", "participant": "wallet", "action": "freeze",
             "after": ["create_order", "book_courier"]},
            {"name": "award_points", "participant": "points", "action": "award"}
        ]
    }))
    .unwrap();
    client
        .put_workflow("ship_order", &ship_order)
        .await
        .unwrap();

    for (order_id, amount, points) in ORDERS {
        let input =
            json!({"order_id": order_id, "account": ACCOUNT, "amount": amount, "points": points});
        let saga = client
            .submit("place_order", input, Some(order_id), Some(10_000))
            .await
            .unwrap()
            .saga;
        wait_settled(&client, &saga.id).await;
    }
    let input = json!({"order_id": "order-2001", "account": ACCOUNT, "amount": 400, "points": 4});
    let shipped = client
        .submit("ship_order", input, None, Some(10_000))
        .await
        .unwrap()
        .saga;
    assert_eq!(
        wait_settled(&client, &shipped.id).await.state,
        SagaState::Committed
    );
    // More than is left: the payment is refused, and the courier booking cannot be undone.
    let input =
        json!({"order_id": "order-2002", "account": ACCOUNT, "amount": 50_000, "points": 500});
    let stuck = client
        .submit("ship_order", input, None, Some(0))
        .await
        .unwrap()
        .saga;
    assert_eq!(
        wait_settled(&client, &stuck.id).await.state,
        SagaState::Stuck
    );

    let browser = Browser::start().await.unwrap();
    let ui = format!("{}/ui", services.coordinator.url());
    browser.goto(&ui).await.unwrap();
    browser
        .wait_for_element(&format!("tr[data-saga-id='{}']", stuck.id))
        .await
        .unwrap();
    browser
        .wait_for_text("#stuck-count", |t| t == "1")
        .await
        .unwrap();
    browser
        .save_screenshot(&out.join("dashboard-sagas.png"))
        .await
        .unwrap();

    browser
        .goto(&format!("{ui}/sagas/{}", stuck.id))
        .await
        .unwrap();
    browser
        .wait_for_element("#timeline tr.call[data-step='book_courier'][data-phase='compensate']")
        .await
        .unwrap();
    // The steps and the timeline, rather than the page's header.
    browser
        .execute("document.getElementById('steps').scrollIntoView()", vec![])
        .await
        .unwrap();
    browser
        .save_screenshot(&out.join("dashboard-saga.png"))
        .await
        .unwrap();

    browser.goto(&format!("{ui}/participants")).await.unwrap();
    browser
        .wait_for_element("tr[data-participant='wallet']")
        .await
        .unwrap();
    browser
        .save_screenshot(&out.join("dashboard-participants.png"))
        .await
        .unwrap();

    browser.goto(&format!("{ui}/workflows")).await.unwrap();
    browser
        .wait_for_element("section[data-workflow='ship_order'] svg.dag")
        .await
        .unwrap();
    browser
        .save_screenshot(&out.join("dashboard-workflows.png"))
        .await
        .unwrap();

    let errors: Vec<_> = browser
        .console_messages()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.is_error())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    browser.close().await;
    services.shutdown().await;
}
