//! Participants' retention against a real coordinator: the barrier records and orders of
//! committed and aborted sagas disappear once old enough; those of a stuck saga (which an
//! operator may retry at any time) remain; account balances are never touched.

use std::time::Duration;

use example_participants::faults::FaultPlan;
use example_participants::{ParticipantConfig, ParticipantKind, RunningParticipant};
use participants::Retention;
use sagas::api::SagaState;
use sagas::{CoordinatorClient, ParticipantPolicy};
use serde_json::{Value, json};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Ok`, failing with its last error past [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn start(
    kind: ParticipantKind,
    data: &std::path::Path,
    coordinator: &str,
    adjust: impl FnOnce(&mut ParticipantConfig),
) -> RunningParticipant {
    let mut config = ParticipantConfig::new(kind)
        .with_listen("127.0.0.1:0".parse().unwrap())
        .with_data_dir(data.join(kind.name()))
        .with_coordinator(coordinator);
    config.retention = Some(Retention {
        min_age: Duration::from_millis(300),
        sweep_every: Duration::from_millis(50),
        batch_size: 100,
    });
    adjust(&mut config);
    match kind {
        ParticipantKind::Wallet => example_participants::wallet::start(config).await,
        ParticipantKind::Order => example_participants::order::start(config).await,
        ParticipantKind::Points => example_participants::points::start(config).await,
    }
    .unwrap()
}

async fn http_json(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_settled_sagas_go_and_those_of_a_stuck_saga_stay() {
    let data = tempfile::tempdir().unwrap();
    let mut options = coordinator::CoordinatorOptions::ephemeral(data.path().join("coordinator"));
    options.workflows = Some(examples::workflow_dir());
    let coordinator = coordinator::start(options).await.unwrap();
    let url = coordinator.url();
    let client = CoordinatorClient::new(url.clone());

    // The wallet gives up at once, so a saga whose cancel fails turns stuck quickly.
    let mut policy = ParticipantPolicy::default();
    policy.retry.initial_ms = 5;
    policy.retry.max_ms = 20;
    policy.retry.max_attempts = 1;
    policy.retry.settle_max_attempts = 1;
    let wallet = start(ParticipantKind::Wallet, data.path(), &url, |c| {
        c.faults = Some(FaultPlan::default());
        c.policy = Some(policy);
    })
    .await;
    let order = start(ParticipantKind::Order, data.path(), &url, |_| {}).await;
    let points = start(ParticipantKind::Points, data.path(), &url, |_| {}).await;
    for name in ["wallet", "order", "points"] {
        eventually("registration", async || {
            client
                .get_participant(name)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
    }
    let http = reqwest::Client::new();
    for (account, amount) in [("rich", 10_000), ("poor", 10)] {
        let deposit = http
            .post(format!("{}/accounts/{account}/deposit", wallet.url()))
            .json(&json!({"amount": amount}));
        assert_eq!(http_json(deposit).await.0, 200);
    }
    let submit = async |order_id: &str, account: &str, amount: u64| {
        let input =
            json!({"order_id": order_id, "account": account, "amount": amount, "points": 7});
        client
            .submit("place_order", input, Some(order_id), Some(10_000))
            .await
            .unwrap()
            .saga
    };

    let mut settled = Vec::new();
    for i in 0..3 {
        let saga = submit(&format!("o-{i}"), "rich", 100).await;
        assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
        settled.push((saga.id, format!("o-{i}")));
    }
    let aborted = submit("o-poor", "poor", 500).await;
    assert_eq!(aborted.state, SagaState::Aborted, "{aborted:?}");
    settled.push((aborted.id, "o-poor".to_string()));

    // Every wallet call fails: the try gives up, its cancel too: stuck.
    let faults = http
        .put(format!("{}/_faults", wallet.url()))
        .json(&json!({"error_rate": 1.0}));
    assert_eq!(http_json(faults).await.0, 200);
    // Not terminal, so no waiting for it in the submission.
    let input = json!({"order_id": "o-stuck", "account": "rich", "amount": 100, "points": 7});
    let stuck = client
        .submit("place_order", input, Some("o-stuck"), Some(0))
        .await
        .unwrap()
        .saga;
    let stuck = eventually("the saga turns stuck", async || {
        let saga = client
            .get_saga(&stuck.id)
            .await
            .map_err(|e| e.to_string())?;
        if saga.state == SagaState::Stuck {
            Ok(saga)
        } else {
            Err(format!("still {:?}", saga.state))
        }
    })
    .await;
    let faults = http
        .put(format!("{}/_faults", wallet.url()))
        .json(&json!({}));
    assert_eq!(http_json(faults).await.0, 200);
    let stuck_seen_at = order.retention().unwrap().totals().kept();

    // The settled sagas' records go, at every participant, with their orders.
    eventually("the records of settled sagas are deleted", async || {
        for (saga_id, order_id) in &settled {
            for (participant, step) in [
                (&order, "create_order"),
                (&wallet, "freeze_funds"),
                (&points, "award_points"),
            ] {
                if participant
                    .barrier()
                    .record(saga_id, step)
                    .unwrap()
                    .is_some()
                {
                    return Err(format!("{step} of {saga_id} still recorded"));
                }
            }
            let (status, body) =
                http_json(http.get(format!("{}/orders/{order_id}", order.url()))).await;
            if status != 404 {
                return Err(format!("order {order_id}: {status} {body}"));
            }
        }
        Ok(())
    })
    .await;

    // The stuck saga's order record was looked at by a sweep once old enough, and kept.
    eventually("a sweep keeps the stuck saga's record", async || {
        let kept = order.retention().unwrap().totals().kept();
        if kept > stuck_seen_at {
            Ok(())
        } else {
            Err(format!("kept {kept}"))
        }
    })
    .await;
    let record = order.barrier().record(&stuck.id, "create_order").unwrap();
    assert!(
        record.is_some_and(|r| r.forward.is_some()),
        "the stuck saga's record"
    );
    let (status, body) = http_json(http.get(format!("{}/orders/o-stuck", order.url()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        client.get_saga(&stuck.id).await.unwrap().state,
        SagaState::Stuck
    );

    // Balances are not per-saga records: untouched.
    let (status, rich) = http_json(http.get(format!("{}/accounts/rich", wallet.url()))).await;
    assert_eq!(
        (status, &rich["balance"]),
        (200, &json!(10_000 - 300)),
        "{rich}"
    );
    let (_, poor) = http_json(http.get(format!("{}/accounts/poor", wallet.url()))).await;
    assert_eq!(poor, json!({"balance": 10, "frozen": 0}));
    let (_, awarded) = http_json(http.get(format!("{}/points/rich", points.url()))).await;
    assert_eq!(awarded, json!({"points": 21}));
    for participant in [&wallet, &order, &points] {
        assert_eq!(participant.retention().unwrap().totals().failed(), 0);
    }

    for participant in [wallet, order, points] {
        participant.shutdown().await;
    }
    coordinator.shutdown().await;
}
