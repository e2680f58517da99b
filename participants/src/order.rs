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

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sled::transaction::TransactionalTree;

use sagas::ActionEndpoints;

use crate::barrier::{BranchReply, BusinessError, PhaseKind, Rejection};
use crate::config::{ParticipantConfig, ParticipantKind};
use crate::records::{self, parse_input};
use crate::server::{self, Ledger, ParticipantError, RunningParticipant, branch, list};

pub const ACTION: &str = "create";
pub const ORDERS_TREE: &str = "orders";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub status: OrderStatus,
    pub account: String,
    pub amount: u64,
}

#[derive(Debug, Deserialize)]
struct CreateInput {
    order_id: String,
    account: String,
    amount: u64,
}

impl CreateInput {
    fn parse(input: &Value) -> Result<Self, Rejection> {
        let parsed: CreateInput = parse_input(input)?;
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
    )
    .await
}

fn create_order(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
    let CreateInput {
        order_id,
        account,
        amount,
    } = CreateInput::parse(input)?;
    if records::load::<Order>(tree, &order_id)?.is_some() {
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
    records::store(tree, &order_id, &order)?;
    Ok(json!({"order_id": order_id, "status": order.status}))
}

fn cancel_order(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
    let CreateInput { order_id, .. } = CreateInput::parse(input)?;
    let mut order: Order = records::load(tree, &order_id)?
        .ok_or_else(|| Rejection::invariant(format!("created order {order_id:?} is gone")))?;
    order.status = OrderStatus::Cancelled;
    records::store(tree, &order_id, &order)?;
    Ok(json!({"order_id": order_id, "status": order.status}))
}

async fn get_order(
    State(o): State<Ledger>,
    Path(id): Path<String>,
) -> Result<Json<Order>, BranchReply> {
    records::get(&o.tree, &id)?.map(Json).ok_or_else(|| {
        BranchReply::error(404, "unknown_order", format!("order {id:?} does not exist"))
    })
}
