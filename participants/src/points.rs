//! The points participant: SAGA action `award`.
//!
//! `action` adds `points` to an account (creating it), `compensate` revokes them.
//!
//! Routes:
//! - `POST /award`, `POST /award/compensate`: branch calls, input `{"account", "points"}`;
//! - `GET /points/{account}` -> `{"points"}` (`{"points": 0}` for an account never awarded);
//! - `GET /points` -> `{account: {"points"}}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sled::transaction::TransactionalTree;

use sagas::ActionEndpoints;

use crate::barrier::{Barrier, BarrierError, BranchReply, BusinessError, Rejection};
use crate::branch::Branch;
use crate::config::{ParticipantConfig, ParticipantKind};
use crate::records::{self, parse_input};
use crate::server::{self, ParticipantError, RunningParticipant, Service};

pub const ACTION: &str = "award";
pub const POINTS_TREE: &str = "points";

/// Points held by one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub points: u64,
}

#[derive(Debug, Deserialize)]
struct AwardInput {
    account: String,
    points: u64,
}

impl AwardInput {
    fn parse(input: &Value) -> Result<Self, Rejection> {
        let parsed: AwardInput = parse_input(input)?;
        if parsed.account.is_empty() {
            return Err(Rejection::unprocessable(
                "invalid_input",
                "account must not be empty",
            ));
        }
        Ok(parsed)
    }
}

#[derive(Clone)]
struct Points {
    barrier: Barrier,
    points: sled::Tree,
}

/// The endpoints registered with the coordinator.
pub fn actions() -> BTreeMap<String, ActionEndpoints> {
    BTreeMap::from([(
        ACTION.to_string(),
        ActionEndpoints::Saga {
            action: "/award".into(),
            compensate: "/award/compensate".into(),
        },
    )])
}

/// Starts the points participant: opens its database in `config.data_dir`, serves, registers.
pub async fn start(config: ParticipantConfig) -> Result<RunningParticipant, ParticipantError> {
    server::start(ParticipantKind::Points, config, |db, barrier| {
        let points = Points {
            barrier,
            points: db.open_tree(POINTS_TREE)?,
        };
        let routes = Router::new()
            .route("/award", post(award))
            .route("/award/compensate", post(revoke))
            .route("/points", get(list_points))
            .route("/points/{account}", get(get_points))
            .with_state(points);
        Ok(Service {
            actions: actions(),
            routes,
        })
    })
    .await
}

async fn award(State(p): State<Points>, Branch(req): Branch) -> Result<BranchReply, BarrierError> {
    p.barrier.forward(&req, &p.points, add_points).await
}

async fn revoke(State(p): State<Points>, Branch(req): Branch) -> Result<BranchReply, BarrierError> {
    p.barrier.undo(&req, &p.points, revoke_points).await
}

fn add_points(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
    let AwardInput { account, points } = AwardInput::parse(input)?;
    let mut balance: Balance = records::load(tree, &account)?.unwrap_or_default();
    balance.points = balance.points.checked_add(points).ok_or_else(|| {
        Rejection::unprocessable("overflow", format!("points of {account:?} would overflow"))
    })?;
    records::store(tree, &account, &balance)?;
    Ok(json!({"account": account, "awarded": points, "points": balance.points}))
}

fn revoke_points(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
    let AwardInput { account, points } = AwardInput::parse(input)?;
    let mut balance: Balance = records::load(tree, &account)?.unwrap_or_default();
    balance.points = balance.points.checked_sub(points).ok_or_else(|| {
        Rejection::invariant(format!(
            "account {account:?} has fewer than the {points} points awarded"
        ))
    })?;
    records::store(tree, &account, &balance)?;
    Ok(json!({"account": account, "revoked": points, "points": balance.points}))
}

async fn get_points(
    State(p): State<Points>,
    Path(account): Path<String>,
) -> Result<Json<Balance>, BranchReply> {
    Ok(Json(records::get(&p.points, &account)?.unwrap_or_default()))
}

async fn list_points(
    State(p): State<Points>,
) -> Result<Json<BTreeMap<String, Balance>>, BranchReply> {
    records::all(&p.points).map(Json)
}
