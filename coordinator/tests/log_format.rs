//! Existing data keeps loading: logs written by earlier coordinators, checked in as raw records
//! (`tests/data/log-v*.json`: every sled tree, keys in hex, values as text), are loaded by
//! today's store and recovered by today's coordinator.
//!
//! - `log-v0.json` was written by the coordinator before the format had a version (commit
//!   371c733): bare JSON records, inputs as JSON values.
//! - `log-v1.json` is format version 1 (a version byte, inputs as text), written by the
//!   generator below at commit fc5c318.
//! - `log-v2.json` is format version 2 (compact binary events, values that are not UTF-8 stored
//!   as `{"hex": ...}`, plans in their own tree, each saga's log one record), written by
//!   `regenerate_the_newest_fixture` below (`REGENERATE_LOG_FIXTURE=2 cargo test -p coordinator
//!   --test log_format -- --ignored`). Never regenerate a fixture to make a failing test pass:
//!   a failure here means existing data would no longer load.
//!
//! All hold the same three sagas: committed with its callback delivered (settled, snapshot),
//! stuck rolling back after a rejected try (no snapshot), and rolling back after a refused call
//! with a snapshot taken mid-flight and a round after it; plus a participant and two versions of
//! a workflow.

#[allow(dead_code)]
mod setup;

use std::path::Path;
use std::sync::Arc;

use coordinator::engine::{
    CallOutcome, CallRef, Created, Decision, Event, Lifecycle, Plan, PlanStep, Saga,
};
use coordinator::testing::{Ownership, RegistryStore, SagaLog, SagaReads, SledStore};
use sagas::api::{SagaState, StepStatus};
use sagas::{CoordinatorClient, Phase, RawJson, RetryPolicy, StepKind};
use serde_json::{Value, json};

const COMMITTED: &str = "0190b6c8-0000-7000-8000-000000000001";
const STUCK: &str = "0190b6c8-0000-7000-8000-000000000002";
const ROLLING_BACK: &str = "0190b6c8-0000-7000-8000-000000000003";
const TREES: [&str; 8] = [
    "events",
    "sagas",
    "plans",
    "active",
    "idempotency",
    "finished",
    "participants",
    "workflows",
];

fn fixture_path(version: u8) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/log-v{version}.json"))
}

/// A sled database in `dir` holding exactly the fixture's records.
fn restore_fixture(version: u8, dir: &Path) {
    let text = std::fs::read_to_string(fixture_path(version)).unwrap();
    let trees: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let db = sled::open(dir).unwrap();
    for (name, records) in trees {
        let tree = db.open_tree(&name).unwrap();
        for record in records.as_array().unwrap() {
            let key = hex_decode(record[0].as_str().unwrap());
            let value = match &record[1] {
                Value::String(text) => text.as_bytes().to_vec(),
                binary => hex_decode(binary["hex"].as_str().unwrap()),
            };
            tree.insert(key, value).unwrap();
        }
    }
    db.flush().unwrap();
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// What both fixtures must load as, through the store.
async fn check_store(store: &SledStore) {
    let input = json!({"order_id": "o-1", "account": "alice", "amount": 2500,
                       "nested": {"z": [1, 2.5, "x"], "a": null}});

    let (committed, seq) = store
        .load(COMMITTED)
        .await
        .unwrap()
        .expect("committed saga");
    assert_eq!(committed.lifecycle, Lifecycle::Committed);
    assert!(committed.is_settled(), "callback delivered");
    assert_eq!(seq, 12);
    assert_eq!(committed.input, input);
    assert_eq!(committed.idempotency_key.as_deref(), Some("order-o-1"));
    assert_eq!(
        committed.plan.steps.len(),
        2,
        "plan restored from the first event"
    );
    assert_eq!(committed.plan.steps[1].kind, StepKind::Tcc);
    assert_eq!(committed.steps[1].attempts, 3);
    assert_eq!(store.events(COMMITTED).await.unwrap().len(), 13);
    assert_eq!(
        store.saga_for_key("order-o-1").await.unwrap().as_deref(),
        Some(COMMITTED)
    );

    let (stuck, _) = store.load(STUCK).await.unwrap().expect("stuck saga");
    assert_eq!(stuck.lifecycle, Lifecycle::Stuck { committing: false });
    assert!(
        stuck.steps[1].rejected,
        "replayed from events: the try was rejected"
    );
    assert_eq!(
        stuck.api_step_status(1),
        StepStatus::Rejected,
        "the rejected step stays visible"
    );
    assert_eq!(stuck.api_undo_status(1), Some(StepStatus::Compensated));

    let (rolling_back, seq) = store.load(ROLLING_BACK).await.unwrap().expect("third saga");
    assert_eq!(seq, 4, "snapshot at 3, one round after it");
    assert_eq!(rolling_back.lifecycle, Lifecycle::Compensating);

    let mut active = store.claim_orphans(usize::MAX).await.unwrap();
    active.sort();
    assert_eq!(active, vec![STUCK.to_string(), ROLLING_BACK.to_string()]);
    let participants = store.participants().await.unwrap();
    assert_eq!(participants.len(), 1);
    assert_eq!(
        participants[0].1.policy.as_ref().map(|p| p.timeout_ms),
        Some(2000)
    );
    let workflows = store.workflows().await.unwrap();
    assert_eq!(workflows.len(), 1);
    assert_eq!(
        (workflows[0].0.as_str(), workflows[0].1),
        ("place_order", 2)
    );
    assert!(
        store
            .workflow_version("place_order", 1)
            .await
            .unwrap()
            .is_some()
    );
}

/// Loads the fixture through the store, then recovers it with a coordinator.
async fn check_fixture(version: u8) {
    let dir = tempfile::tempdir().unwrap();
    restore_fixture(version, dir.path());
    {
        // sled lets go of a database shortly after its last handle is dropped.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(store) => break store,
                Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        check_store(&store).await;
    }
    let coordinator = setup::start(dir.path()).await;
    let client = CoordinatorClient::new(coordinator.url());
    let committed = client.get_saga(COMMITTED).await.unwrap();
    assert_eq!(committed.state, SagaState::Committed);
    assert_eq!(
        committed.input.get(),
        r#"{"account":"alice","amount":2500,"nested":{"a":null,"z":[1,2.5,"x"]},"order_id":"o-1"}"#
    );
    let stuck = client.get_saga(STUCK).await.unwrap();
    assert_eq!(
        stuck.state,
        SagaState::Stuck,
        "recovered as it was: {stuck:?}"
    );
    let events = client.saga_events(COMMITTED).await.unwrap().events;
    assert_eq!(events.len(), 13);
    coordinator.shutdown().await;
}

#[tokio::test]
async fn a_log_written_before_the_format_had_a_version_still_loads() {
    check_fixture(0).await;
}

#[tokio::test]
async fn a_log_in_format_version_1_still_loads() {
    let text = std::fs::read_to_string(fixture_path(1)).unwrap();
    assert!(
        text.contains(r#""\u0001["#),
        "version 1 records start with their version byte"
    );
    check_fixture(1).await;
}

#[tokio::test]
async fn a_log_in_format_version_2_still_loads() {
    let text = std::fs::read_to_string(fixture_path(2)).unwrap();
    let trees: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let logs = trees["events"].as_array().unwrap();
    assert_eq!(logs.len(), 3, "each saga's log is one record");
    assert!(
        logs.iter()
            .all(|log| log[1]["hex"].as_str().unwrap().starts_with("02")),
        "version 2 records start with their version byte"
    );
    assert_eq!(trees["plans"].as_array().unwrap().len(), 1);
    check_fixture(2).await;
}

// ---------------------------------------------------------------------------------------------
// The generator of `log-v1.json` (the same sagas as `log-v0.json`, written by the same steps)
// ---------------------------------------------------------------------------------------------

fn plan() -> Arc<Plan> {
    let step = |name: &str, action: &str, kind: StepKind, deps: Vec<usize>| PlanStep {
        name: name.into(),
        participant: "p".into(),
        action: action.into(),
        kind,
        deps,
        timeout_ms: Some(2_000),
        retry: RetryPolicy {
            initial_ms: 50,
            max_ms: 1_000,
            multiplier: 2.0,
            max_attempts: 3,
            settle_max_attempts: 2,
        },
    };
    Arc::new(Plan {
        steps: vec![
            step("create_order", "create", StepKind::Saga, vec![]),
            step("freeze_funds", "freeze", StepKind::Tcc, vec![0]),
        ],
        timeout_ms: Some(30_000),
    })
}

fn created(id: &str, key: Option<&str>, callback: bool, at: u64) -> Created {
    Created {
        id: id.into(),
        workflow: "place_order".into(),
        workflow_version: 2,
        input: RawJson::from_value(
            &json!({"order_id": "o-1", "account": "alice", "amount": 2500,
                                           "nested": {"z": [1, 2.5, "x"], "a": null}}),
        ),
        callback_url: callback.then(|| "http://127.0.0.1:9/callback".to_string()),
        idempotency_key: key.map(Into::into),
        business_key: None,
        callback_max_attempts: coordinator::engine::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan: plan(),
        at,
    }
}

fn call(step: usize, phase: Phase, attempt: u32) -> CallRef {
    CallRef {
        step,
        phase,
        attempt,
    }
}

fn started(step: usize, phase: Phase, attempt: u32, at: u64) -> Event {
    Event::CallStarted {
        call: call(step, phase, attempt),
        at,
    }
}

fn ended(c: CallRef, outcome: CallOutcome, status: Option<u16>, at: u64) -> Event {
    Event::CallEnded {
        call: c,
        outcome,
        http_status: status,
        latency_ms: 3,
        error: (outcome != CallOutcome::Ok)
            .then(|| format!("HTTP {}: {{\"error\":\"x\"}}", status.unwrap_or(0))),
        retry_at: at + 100,
        at,
    }
}

/// Creates the saga, appends `rounds` (checking each event applies) and optionally snapshots.
async fn write(
    store: &SledStore,
    created: Created,
    rounds: Vec<Vec<Event>>,
    snapshot: bool,
) -> Saga {
    store
        .create(&created, created.idempotency_key.as_deref())
        .await
        .unwrap();
    let mut saga = Saga::create(&created).unwrap();
    let mut seq = 1;
    for round in rounds {
        for e in &round {
            saga.apply(e).unwrap();
        }
        store.append(&saga, seq, &round).unwrap();
        seq += round.len() as u64;
    }
    if snapshot {
        store.save_snapshot(&saga, seq - 1).unwrap();
    }
    saga
}

#[tokio::test]
#[ignore = "writes tests/data/log-v{newest}.json; run only to add a fixture for a new format version"]
async fn regenerate_the_newest_fixture() {
    let newest = coordinator::testing::format::NEWEST_VERSION;
    assert_eq!(
        std::env::var("REGENERATE_LOG_FIXTURE").as_deref(),
        Ok(newest.to_string().as_str()),
        "set REGENERATE_LOG_FIXTURE={newest} to overwrite the checked-in fixture"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    use CallOutcome::{NotSent, Refused, Rejected, Transient};
    use Phase::*;
    write(
        &store,
        created(COMMITTED, Some("order-o-1"), true, 1_000),
        vec![
            vec![
                started(0, Action, 1, 1_001),
                ended(call(0, Action, 1), CallOutcome::Ok, Some(200), 1_002),
                started(1, Try, 1, 1_002),
                ended(call(1, Try, 1), Transient, Some(503), 1_004),
            ],
            vec![
                started(1, Try, 2, 1_104),
                ended(call(1, Try, 2), CallOutcome::Ok, Some(200), 1_105),
                Event::Decided {
                    decision: Decision::Commit,
                    at: 1_105,
                },
            ],
            vec![
                started(1, Confirm, 1, 1_106),
                ended(call(1, Confirm, 1), CallOutcome::Ok, Some(200), 1_107),
                Event::Finished { at: 1_107 },
            ],
            vec![
                Event::CallbackStarted {
                    attempt: 1,
                    at: 1_108,
                },
                Event::CallbackEnded {
                    attempt: 1,
                    delivered: true,
                    http_status: Some(200),
                    error: None,
                    retry_at: 0,
                    at: 1_109,
                },
            ],
        ],
        true,
    )
    .await;
    write(
        &store,
        created(STUCK, None, false, 2_000),
        vec![
            vec![
                started(0, Action, 1, 2_001),
                ended(call(0, Action, 1), CallOutcome::Ok, Some(200), 2_002),
                started(1, Try, 1, 2_002),
                ended(call(1, Try, 1), Rejected, Some(409), 2_003),
                Event::Decided {
                    decision: Decision::Abort {
                        reason: "step freeze_funds was rejected: HTTP 409".into(),
                    },
                    at: 2_003,
                },
            ],
            vec![
                started(1, Cancel, 1, 2_004),
                ended(call(1, Cancel, 1), CallOutcome::Ok, Some(200), 2_005),
                started(0, Compensate, 1, 2_005),
                ended(call(0, Compensate, 1), Transient, Some(500), 2_006),
            ],
            vec![
                started(0, Compensate, 2, 2_106),
                ended(call(0, Compensate, 2), NotSent, None, 2_107),
                Event::Stuck {
                    step: 0,
                    reason: "step create_order compensate failed 2 times".into(),
                    at: 2_107,
                },
            ],
        ],
        false,
    )
    .await;
    let mut saga = write(
        &store,
        created(ROLLING_BACK, Some("order-o-3"), false, 3_000),
        vec![vec![
            Event::Resumed { at: 3_001 },
            started(0, Action, 1, 3_001),
            ended(call(0, Action, 1), Refused, None, 3_002),
        ]],
        true,
    )
    .await;
    let round = vec![Event::Decided {
        decision: Decision::Abort {
            reason: "step create_order was refused".into(),
        },
        at: 3_003,
    }];
    for e in &round {
        saga.apply(e).unwrap();
    }
    store.append(&saga, 4, &round).unwrap();
    let participant: sagas::ParticipantSpec = serde_json::from_value(json!({
        "base_url": "http://127.0.0.1:9",
        "actions": {"create": {"action": "/create", "compensate": "/create/undo"},
                    "freeze": {"try": "/freeze/try", "confirm": "/freeze/confirm", "cancel": "/freeze/cancel"}},
        "policy": {"timeout_ms": 2000}
    }))
    .unwrap();
    store.put_participant("p", &participant).await.unwrap();
    let workflow: sagas::WorkflowSpec = serde_json::from_value(json!({
        "steps": [{"name": "create_order", "participant": "p", "action": "create"},
                  {"name": "freeze_funds", "participant": "p", "action": "freeze", "timeout_ms": 2000}],
        "timeout_ms": 30000
    }))
    .unwrap();
    store
        .put_workflow("place_order", 1, &workflow)
        .await
        .unwrap();
    store
        .put_workflow("place_order", 2, &workflow)
        .await
        .unwrap();
    store.flush().await.unwrap();
    drop(store);

    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let mut trees = serde_json::Map::new();
    for name in TREES {
        let tree = db.open_tree(name).unwrap();
        let records: Vec<Value> = tree
            .iter()
            .map(|item| {
                let (k, v) = item.unwrap();
                let hex =
                    |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
                match String::from_utf8(v.to_vec()) {
                    Ok(text) => json!([hex(&k), text]),
                    Err(_) => json!([hex(&k), {"hex": hex(&v)}]),
                }
            })
            .collect();
        trees.insert(name.into(), records.into());
    }
    std::fs::write(
        fixture_path(newest),
        serde_json::to_string_pretty(&trees).unwrap() + "\n",
    )
    .unwrap();
}
