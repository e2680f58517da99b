//! Benchmark mode: with `--no-work`, branch calls are answered at once and change nothing.

mod support;

use example_participants::{ParticipantKind, order, wallet};
use serde_json::json;

#[tokio::test]
async fn branch_calls_are_answered_without_doing_anything() {
    let w = support::start_in(
        tempfile::tempdir().unwrap(),
        ParticipantKind::Wallet,
        |config| config.no_work = true,
        wallet::start,
    )
    .await;
    let freeze = json!({"account": "nobody", "amount": 5});
    // Without --no-work this `try` is a 409: the account does not exist.
    for (path, phase) in [
        ("/freeze/try", "try"),
        ("/freeze/confirm", "confirm"),
        ("/freeze/cancel", "cancel"),
    ] {
        assert_eq!(
            w.branch(path, "s1", "freeze_funds", phase, freeze.clone())
                .await,
            (200, json!({"no_work": true})),
            "{path}"
        );
    }
    assert_eq!(w.get("/accounts/nobody").await.0, 404);
    // Health and admin routes work as usual.
    assert_eq!(w.get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(
        w.post("/accounts/a/deposit", json!({"amount": 10})).await,
        (200, json!({"balance": 10, "frozen": 0}))
    );
    w.running.shutdown().await;

    let o = support::start_in(
        tempfile::tempdir().unwrap(),
        ParticipantKind::Order,
        |config| config.no_work = true,
        order::start,
    )
    .await;
    let input = json!({"order_id": "o1", "account": "a", "amount": 3});
    for (path, phase) in [("/create", "action"), ("/create/compensate", "compensate")] {
        assert_eq!(
            o.branch(path, "s1", "create_order", phase, input.clone())
                .await,
            (200, json!({"no_work": true})),
            "{path}"
        );
    }
    assert_eq!(o.get("/orders/o1").await.0, 404);
    o.running.shutdown().await;
}
