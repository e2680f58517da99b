//! The wallet participant: TCC action `freeze` over accounts with a balance and a frozen part.
//!
//! `try` freezes `amount` if `balance - frozen >= amount`, `confirm` deducts it from both,
//! `cancel` releases it. Every change to an account is a sled transaction on the account's
//! key, so concurrent sagas on one account serialize and can never over-freeze.
//!
//! Routes:
//! - `POST /freeze/try|confirm|cancel`: branch calls, input `{"account", "amount"}`;
//! - `POST /accounts/{id}/deposit` `{"amount"}`: creates or funds an account, returns it;
//! - `GET /accounts/{id}` -> `{"balance", "frozen"}` (404 if unknown);
//! - `GET /accounts` -> `{id: {"balance", "frozen"}}`.
//!
//! Retention (`--retention-secs`, default 1 hour) deletes only the barrier records of settled
//! sagas: balances are shared by every saga and never deleted.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use participants::{BranchInput, BranchReply, PhaseKind, Rejection, SledTx, TxError};
use sagas::ActionEndpoints;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{ParticipantConfig, ParticipantKind};
use crate::extract::{JsonBody, PathParam};
use crate::ledger::{Ledger, branch, list};
use crate::server::{self, ParticipantError, RunningParticipant};

/// The action registered with the coordinator.
pub const ACTION: &str = "freeze";
/// The sled tree of the accounts, by account id.
const ACCOUNTS_TREE: &str = "accounts";

/// One account, in minor units. `frozen <= balance` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Money held, frozen part included.
    pub balance: u64,
    /// The part reserved by `try` calls not yet confirmed or cancelled.
    pub frozen: u64,
}

/// Input of every `freeze` phase.
#[derive(Debug, Deserialize)]
struct FreezeInput {
    account: String,
    amount: u64,
}

impl FreezeInput {
    fn parse(input: BranchInput<'_>) -> Result<Self, Rejection> {
        let parsed: FreezeInput = input.parse()?;
        if parsed.account.is_empty() {
            return Err(Rejection::unprocessable(
                "invalid_input",
                "account must not be empty",
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
        ActionEndpoints::Tcc {
            try_path: "/freeze/try".into(),
            confirm: "/freeze/confirm".into(),
            cancel: "/freeze/cancel".into(),
        },
    )])
}

/// Starts the wallet: opens its database in `config.data_dir`, serves, registers.
pub async fn start(config: ParticipantConfig) -> Result<RunningParticipant, ParticipantError> {
    let routes = Router::new()
        .route("/freeze/try", branch(PhaseKind::Forward, freeze))
        .route("/freeze/confirm", branch(PhaseKind::Confirm, deduct))
        .route("/freeze/cancel", branch(PhaseKind::Undo, release))
        .route("/accounts", get(list::<Account>))
        .route("/accounts/{id}", get(get_account))
        .route("/accounts/{id}/deposit", post(deposit));
    server::start(
        ParticipantKind::Wallet,
        config,
        ACCOUNTS_TREE,
        actions(),
        routes,
        server::no_business_records,
    )
    .await
}

fn freeze(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let FreezeInput { account, amount } = FreezeInput::parse(input)?;
    let mut acct: Account = tx.load(&account)?.ok_or_else(|| {
        Rejection::conflict(
            "unknown_account",
            format!("account {account:?} does not exist"),
        )
    })?;
    let available = acct
        .balance
        .checked_sub(acct.frozen)
        .ok_or_else(|| Rejection::invariant(format!("account {account:?} has frozen > balance")))?;
    if available < amount {
        return Err(Rejection::conflict(
            "insufficient_funds",
            format!("account {account:?} has {available} available, {amount} requested"),
        )
        .into());
    }
    // Cannot overflow: frozen + amount <= balance.
    acct.frozen += amount;
    tx.store(&account, &acct)?;
    Ok(json!({"account": account, "frozen": amount}))
}

fn deduct(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let FreezeInput { account, amount } = FreezeInput::parse(input)?;
    let mut acct: Account = tx
        .load(&account)?
        .ok_or_else(|| Rejection::invariant(format!("confirmed account {account:?} is gone")))?;
    match (
        acct.balance.checked_sub(amount),
        acct.frozen.checked_sub(amount),
    ) {
        (Some(balance), Some(frozen)) => {
            acct.balance = balance;
            acct.frozen = frozen;
        }
        _ => {
            return Err(Rejection::invariant(format!(
                "account {account:?} ({acct:?}) cannot give up {amount} frozen"
            ))
            .into());
        }
    }
    tx.store(&account, &acct)?;
    Ok(json!({"account": account, "deducted": amount}))
}

fn release(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
    let FreezeInput { account, amount } = FreezeInput::parse(input)?;
    let mut acct: Account = tx
        .load(&account)?
        .ok_or_else(|| Rejection::invariant(format!("frozen account {account:?} is gone")))?;
    acct.frozen = acct.frozen.checked_sub(amount).ok_or_else(|| {
        Rejection::invariant(format!(
            "account {account:?} ({acct:?}) has less than {amount} frozen"
        ))
    })?;
    tx.store(&account, &acct)?;
    Ok(json!({"account": account, "released": amount}))
}

#[derive(Debug, Deserialize)]
struct Deposit {
    amount: u64,
}

async fn deposit(
    State(w): State<Ledger>,
    PathParam(id): PathParam<String>,
    JsonBody(Deposit { amount }): JsonBody<Deposit>,
) -> Result<Json<Account>, BranchReply> {
    if amount == 0 {
        return Err(BranchReply::error(
            422,
            "invalid_input",
            "amount must be positive",
        ));
    }
    let account = w
        .change(|tx| {
            let mut acct: Account = tx.load(&id)?.unwrap_or_default();
            acct.balance = acct.balance.checked_add(amount).ok_or_else(|| {
                Rejection::unprocessable("overflow", format!("balance of {id:?} would overflow"))
            })?;
            tx.store(&id, &acct)?;
            Ok(acct)
        })
        .await?;
    Ok(Json(account))
}

async fn get_account(
    State(w): State<Ledger>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Account>, BranchReply> {
    w.get(&id)?.map(Json).ok_or_else(|| {
        BranchReply::error(
            404,
            "unknown_account",
            format!("account {id:?} does not exist"),
        )
    })
}
