//! The order and points participants over real HTTP.

mod support;

use example_participants::{ParticipantKind, order, points};
use serde_json::{Value, json};
use support::Participant;

/// A branch call of the order's step `create_order`: `action` at `/create`, `compensate` at
/// `/create/compensate`.
async fn create(o: &Participant, phase: &str, saga_id: &str, input: &Value) -> (u16, Value) {
    let path = saga_path("/create", phase);
    o.branch(&path, saga_id, "create_order", phase, input.clone())
        .await
}

/// A branch call of the points' step `award_points`, likewise at `/award`.
async fn award(p: &Participant, phase: &str, saga_id: &str, input: &Value) -> (u16, Value) {
    let path = saga_path("/award", phase);
    p.branch(&path, saga_id, "award_points", phase, input.clone())
        .await
}

fn saga_path(action: &str, phase: &str) -> String {
    match phase {
        "compensate" => format!("{action}/compensate"),
        _ => action.to_string(),
    }
}

#[tokio::test]
async fn order_create_compensate_and_duplicates() {
    let o = support::start(ParticipantKind::Order, order::start).await;
    let input = json!({"order_id": "o1", "account": "alice", "amount": 30, "points": 5});
    let created = create(&o, "action", "s1", &input).await;
    assert_eq!(
        created,
        (200, json!({"order_id": "o1", "status": "created"}))
    );
    assert_eq!(create(&o, "action", "s1", &input).await, created);
    let (status, body) = o.get("/orders/o1").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "created", "account": "alice", "amount": 30})
        )
    );

    // Another saga reusing the order id is rejected, and its compensation touches nothing.
    let (status, body) = create(&o, "action", "s2", &input).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("order_exists"))
    );
    let nothing = create(&o, "compensate", "s2", &input).await;
    assert_eq!(nothing, (200, json!({"nothing_to_undo": true})));
    assert_eq!(o.get("/orders/o1").await.1["status"], "created");

    for _ in 0..2 {
        let cancelled = create(&o, "compensate", "s1", &input).await;
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
    let null = create(&o, "compensate", "s3", &input3).await;
    assert_eq!(null, (200, json!({"null_compensation": true})));
    let (status, body) = create(&o, "action", "s3", &input3).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("hanging"))
    );
    let (status, body) = o.get("/orders/o3").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("unknown_order"))
    );

    let (status, _) = create(
        &o,
        "action",
        "s4",
        &json!({"order_id": "o4", "account": "a", "amount": 0}),
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
    let awarded = award(&p, "action", "s1", &input).await;
    assert_eq!(
        awarded,
        (200, json!({"account": "alice", "awarded": 5, "points": 5}))
    );
    assert_eq!(award(&p, "action", "s1", &input).await, awarded);
    let other = json!({"account": "alice", "points": 7});
    assert_eq!(award(&p, "action", "s2", &other).await.0, 200);
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 12})));

    for _ in 0..2 {
        let revoked = award(&p, "compensate", "s1", &input).await;
        assert_eq!(
            revoked,
            (200, json!({"account": "alice", "revoked": 5, "points": 7}))
        );
    }
    assert_eq!(p.get("/points").await.1, json!({"alice": {"points": 7}}));

    let null = award(&p, "compensate", "s3", &other).await;
    assert_eq!(null, (200, json!({"null_compensation": true})));
    assert_eq!(award(&p, "action", "s3", &other).await.0, 409);
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 7})));

    let overflow = json!({"account": "alice", "points": u64::MAX});
    let (status, body) = award(&p, "action", "s4", &overflow).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("overflow"))
    );
    let negative = json!({"account": "alice", "points": -1});
    assert_eq!(award(&p, "action", "s5", &negative).await.0, 422);
    assert_eq!(p.get("/points/alice").await, (200, json!({"points": 7})));
    p.running.shutdown().await;
}
