//! The order and points participants over real HTTP.

mod support;

use participants::{ParticipantKind, order, points};
use serde_json::json;

#[tokio::test]
async fn order_create_compensate_and_duplicates() {
    let o = support::start(ParticipantKind::Order, order::start).await;
    let input = json!({"order_id": "o1", "account": "alice", "amount": 30, "points": 5});
    let created = o
        .branch("/create", "s1", "create_order", "action", input.clone())
        .await;
    assert_eq!(
        created,
        (200, json!({"order_id": "o1", "status": "created"}))
    );
    assert_eq!(
        o.branch("/create", "s1", "create_order", "action", input.clone())
            .await,
        created
    );
    let (status, body) = o.get("/orders/o1").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "created", "account": "alice", "amount": 30})
        )
    );

    // Another saga reusing the order id is rejected, and its compensation touches nothing.
    let (status, body) = o
        .branch("/create", "s2", "create_order", "action", input.clone())
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (409, json!("order_exists"))
    );
    let nothing = o
        .branch(
            "/create/compensate",
            "s2",
            "create_order",
            "compensate",
            input.clone(),
        )
        .await;
    assert_eq!(nothing, (200, json!({"nothing_to_undo": true})));
    assert_eq!(o.get("/orders/o1").await.1["status"], "created");

    for _ in 0..2 {
        let cancelled = o
            .branch(
                "/create/compensate",
                "s1",
                "create_order",
                "compensate",
                input.clone(),
            )
            .await;
        assert_eq!(
            cancelled,
            (200, json!({"order_id": "o1", "status": "cancelled"}))
        );
    }
    assert_eq!(
        o.get("/orders").await.1,
        json!({"o1": {"status": "cancelled", "account": "alice", "amount": 30}})
    );

    // Compensation first: null compensation, the late action hangs and creates nothing.
    let input3 = json!({"order_id": "o3", "account": "bob", "amount": 1});
    let null = o
        .branch(
            "/create/compensate",
            "s3",
            "create_order",
            "compensate",
            input3.clone(),
        )
        .await;
    assert_eq!(null, (200, json!({"null_compensation": true})));
    let (status, body) = o
        .branch("/create", "s3", "create_order", "action", input3)
        .await;
    assert_eq!((status, body["error"].clone()), (409, json!("hanging")));
    let (status, body) = o.get("/orders/o3").await;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("unknown_order"))
    );

    let (status, _) = o
        .branch(
            "/create",
            "s4",
            "create_order",
            "action",
            json!({"order_id": "o4", "account": "a", "amount": 0}),
        )
        .await;
    assert_eq!(status, 422);
    o.running.shutdown().await;
}

#[tokio::test]
async fn points_award_revoke_and_duplicates() {
    let p = support::start(ParticipantKind::Points, points::start).await;
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 0})));
    let input = json!({"order_id": "o1", "account": "alice", "amount": 30, "points": 5});
    let awarded = p
        .branch("/award", "s1", "award_points", "action", input.clone())
        .await;
    assert_eq!(
        awarded,
        (200, json!({"account": "alice", "awarded": 5, "points": 5}))
    );
    assert_eq!(
        p.branch("/award", "s1", "award_points", "action", input.clone())
            .await,
        awarded
    );
    let other = json!({"account": "alice", "points": 7});
    assert_eq!(
        p.branch("/award", "s2", "award_points", "action", other.clone())
            .await
            .0,
        200
    );
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 12})));

    for _ in 0..2 {
        let revoked = p
            .branch(
                "/award/compensate",
                "s1",
                "award_points",
                "compensate",
                input.clone(),
            )
            .await;
        assert_eq!(
            revoked,
            (200, json!({"account": "alice", "revoked": 5, "points": 7}))
        );
    }
    assert_eq!(p.get("/points").await.1, json!({"alice": {"points": 7}}));

    let null = p
        .branch(
            "/award/compensate",
            "s3",
            "award_points",
            "compensate",
            other.clone(),
        )
        .await;
    assert_eq!(null, (200, json!({"null_compensation": true})));
    assert_eq!(
        p.branch("/award", "s3", "award_points", "action", other)
            .await
            .0,
        409
    );
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 7})));

    let overflow = json!({"account": "alice", "points": u64::MAX});
    let (status, body) = p
        .branch("/award", "s4", "award_points", "action", overflow)
        .await;
    assert_eq!((status, body["error"].clone()), (422, json!("overflow")));
    let negative = json!({"account": "alice", "points": -1});
    assert_eq!(
        p.branch("/award", "s5", "award_points", "action", negative)
            .await
            .0,
        422
    );
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 7})));
    p.running.shutdown().await;
}
