//! The order participant: SAGA action `create`.
//!
//! `action` creates order `order_id` as `created`; `compensate` marks it `cancelled`. An
//! order id already used by another saga is a `409 order_exists` rejection.
//!
//! Routes:
//! - `POST /create`, `POST /create/compensate`: branch calls, input
//!   `{"order_id", "account", "amount"}`;
//! - `GET /orders/{id}` -> `{"status", "account", "amount"}` (404 if unknown);
//! - `GET /orders` -> `{id: {"status", "account", "amount"}}`.
//!
//! Retention (`--retention-secs`, default 1 hour): the order of a saga the coordinator has
//! settled is deleted with the saga's barrier record, once that record is old enough; `GET
//! /orders/{id}` then answers 404.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use participants::{
    AgedBranch, BarrierRecord, BranchInput, BranchReply, PhaseKind, Rejection, SledTx, TxError,
};
use sagas::ActionEndpoints;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{ParticipantConfig, ParticipantKind};
use crate::extract::PathParam;
use crate::ledger::{Ledger, branch, list};
use crate::server::{self, ParticipantError, RunningParticipant};

/// The action registered with the coordinator.
pub const ACTION: &str = "create";
/// The sled tree of the orders, by order id.
const ORDERS_TREE: &str = "orders";

/// The state of an order, `"created"` or `"cancelled"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created by a saga's `action`.
    Created,
    /// Cancelled by its `compensate`.
    Cancelled,
}

/// One order, as `GET /orders/{id}` shows it: `{"status", "account", "amount"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Where the order stands.
    pub status: OrderStatus,
    /// The paying account.
    pub account: String,
    /// The price, in minor units.
    pub amount: u64,
}

#[derive(Debug, Deserialize)]
struct CreateInput {
    order_id: String,
    account: String,
    amount: u64,
}

impl CreateInput {
    fn parse(input: BranchInput<'_>) -> Result<Self, Rejection> {
        let parsed: CreateInput = input.parse()?;
        if parsed.order_id.is_empty() || parsed.account.is_empty() {
            return Err(Rejection::unprocessable(
                "invalid_input",
                "order_id and account must not be empty",
            ));
        }
        if parsed.amount == 0 {
            return Err(Rejection::unprocessable(
                "invalid_input",
                "amount must be positive",
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
            action: "/create".into(),
            compensate: "/create/compensate".into(),
        },
    )])
}

/// Starts the order participant: opens its database in `config.data_dir`, serves, registers.
pub async fn start(config: ParticipantConfig) -> Result<RunningParticipant, ParticipantError> {
    let routes = Router::new()
        .route("/create", branch(PhaseKind::Forward, create_order))
        .route("/create/compensate", branch(PhaseKind::Undo, cancel_order))
        .route("/orders", get(list::<Order>))
        .route("/orders/{id}", get(get_order));
    server::start(
        ParticipantKind::Order,
        config,
        ORDERS_TREE,
        actions(),
        routes,
        forget_order,
    )
    .await
}

fn create_order(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let CreateInput {
        order_id,
        account,
        amount,
    } = CreateInput::parse(input)?;
    if tx.load::<Order>(&order_id)?.is_some() {
        return Err(Rejection::conflict(
            "order_exists",
            format!("order {order_id:?} already exists"),
        )
        .into());
    }
    let order = Order {
        status: OrderStatus::Created,
        account,
        amount,
    };
    tx.store(&order_id, &order)?;
    Ok(json!({"order_id": order_id, "status": order.status}))
}

fn cancel_order(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let CreateInput { order_id, .. } = CreateInput::parse(input)?;
    let mut order: Order = tx
        .load(&order_id)?
        .ok_or_else(|| Rejection::invariant(format!("created order {order_id:?} is gone")))?;
    order.status = OrderStatus::Cancelled;
    tx.store(&order_id, &order)?;
    Ok(json!({"order_id": order_id, "status": order.status}))
}

/// Retention: the order a settled saga created goes with the saga's barrier record, in the
/// sweep's transaction. The record names it: a successful `create` stored its input (a
/// rejected one, `order_exists`, created nothing and names another saga's order). The order
/// is deleted only if it still is the one that input describes.
fn forget_order(tx: &SledTx<'_>, _: &AgedBranch, record: &BarrierRecord) -> Result<(), TxError> {
    let created = record.forward.as_ref().is_some_and(BranchReply::is_success);
    let Some(input) = record.forward_input.as_ref().filter(|_| created) else {
        return Ok(());
    };
    let Ok(CreateInput {
        order_id,
        account,
        amount,
    }) = CreateInput::parse(BranchInput::new(input))
    else {
        return Ok(());
    };
    if let Some(order) = tx.load::<Order>(&order_id)?
        && order.account == account
        && order.amount == amount
    {
        tx.remove(&order_id)?;
    }
    Ok(())
}

async fn get_order(
    State(o): State<Ledger>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Order>, BranchReply> {
    o.get(&id)?.map(Json).ok_or_else(|| {
        BranchReply::error(404, "unknown_order", format!("order {id:?} does not exist"))
    })
}
