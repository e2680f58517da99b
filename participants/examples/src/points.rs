//! The points participant: SAGA action `award`.
//!
//! `action` adds `points` to an account (creating it), `compensate` revokes them.
//!
//! Routes:
//! - `POST /award`, `POST /award/compensate`: branch calls, input `{"account", "points"}`;
//! - `GET /points/{account}` -> `{"points"}` (`{"points": 0}` for an account never awarded);
//! - `GET /points` -> `{account: {"points"}}`.
//!
//! Retention (`--retention-secs`, default 1 hour) deletes only the barrier records of settled
//! sagas: balances are shared by every saga and never deleted.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use participants::{BranchInput, BranchReply, PhaseKind, Rejection, SledTx, TxError};
use sagas::ActionEndpoints;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{ParticipantConfig, ParticipantKind};
use crate::extract::PathParam;
use crate::ledger::{Ledger, branch, list};
use crate::server::{self, ParticipantError, RunningParticipant};

/// The action registered with the coordinator.
pub const ACTION: &str = "award";
/// The sled tree of the balances, by account.
const POINTS_TREE: &str = "points";

/// Points held by one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Points held.
    pub points: u64,
}

#[derive(Debug, Deserialize)]
struct AwardInput {
    account: String,
    points: u64,
}

impl AwardInput {
    fn parse(input: BranchInput<'_>) -> Result<Self, Rejection> {
        let parsed: AwardInput = input.parse()?;
        if parsed.account.is_empty() {
            return Err(Rejection::unprocessable(
                "invalid_input",
                "account must not be empty",
            ));
        }
        Ok(parsed)
    }
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
    let routes = Router::new()
        .route("/award", branch(PhaseKind::Forward, add_points))
        .route("/award/compensate", branch(PhaseKind::Undo, revoke_points))
        .route("/points", get(list::<Balance>))
        .route("/points/{account}", get(get_points));
    server::start(
        ParticipantKind::Points,
        config,
        POINTS_TREE,
        actions(),
        routes,
        server::no_business_records,
    )
    .await
}

fn add_points(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let AwardInput { account, points } = AwardInput::parse(input)?;
    let mut balance: Balance = tx.load(&account)?.unwrap_or_default();
    balance.points = balance.points.checked_add(points).ok_or_else(|| {
        Rejection::unprocessable("overflow", format!("points of {account:?} would overflow"))
    })?;
    tx.store(&account, &balance)?;
    Ok(json!({"account": account, "awarded": points, "points": balance.points}))
}

fn revoke_points(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let AwardInput { account, points } = AwardInput::parse(input)?;
    let mut balance: Balance = tx.load(&account)?.unwrap_or_default();
    balance.points = balance.points.checked_sub(points).ok_or_else(|| {
        Rejection::invariant(format!(
            "account {account:?} has fewer than the {points} points awarded"
        ))
    })?;
    tx.store(&account, &balance)?;
    Ok(json!({"account": account, "revoked": points, "points": balance.points}))
}

async fn get_points(
    State(p): State<Ledger>,
    PathParam(account): PathParam<String>,
) -> Result<Json<Balance>, BranchReply> {
    Ok(Json(p.get(&account)?.unwrap_or_default()))
}
