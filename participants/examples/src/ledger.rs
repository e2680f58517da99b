//! The state every example participant's routes share: its business records in one sled
//! tree behind the barrier, and the routes built on it (branch phases, listings).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::routing::{MethodRouter, post};
use participants::branch::Branch;
use participants::{
    Barrier, BarrierStore, BranchInput, BranchReply, PhaseKind, SledStore, SledTx, TxError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::barrier_mode::{self, BarrierMode};

/// A business change as the barrier runs it: reads and writes through the transaction,
/// returns the body of its `200` (see `participants::Barrier`).
pub(crate) type Business = fn(&SledTx<'_>, BranchInput<'_>) -> Result<Value, TxError>;

/// What a participant's routes are given: the barrier over its store, and whether to use it.
#[derive(Clone)]
pub(crate) struct Ledger {
    pub barrier: Barrier<SledStore>,
    pub mode: BarrierMode,
}

impl Ledger {
    /// The store: the business tree and the barrier records.
    pub fn store(&self) -> &SledStore {
        self.barrier.store()
    }

    /// The JSON record at `key` of the business tree, read outside a transaction.
    ///
    /// Errors: `500 storage` (logged) if sled fails or the record does not decode.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BranchReply> {
        match self.store().business().get(key).map_err(storage_failure)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| storage_failure(format!("corrupt record {key:?}: {e}"))),
        }
    }

    /// Every record of the business tree, by key (admin listings for invariant checks).
    ///
    /// Errors: as [`Ledger::get`].
    pub fn all<T: DeserializeOwned>(&self) -> Result<BTreeMap<String, T>, BranchReply> {
        let mut out = BTreeMap::new();
        for entry in self.store().business().iter() {
            let (key, bytes) = entry.map_err(storage_failure)?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| storage_failure(format!("corrupt record {key:?}: {e}")))?;
            out.insert(key, value);
        }
        Ok(out)
    }

    /// Runs an admin change (a deposit) in a transaction of its own and makes it durable
    /// before returning.
    ///
    /// Errors: a rejection's own reply; `500 storage` (logged) if the store fails.
    pub async fn change<T>(
        &self,
        change: impl Fn(&SledTx<'_>) -> Result<T, TxError>,
    ) -> Result<T, BranchReply> {
        let value = self.store().transaction(change).map_err(|e| match e {
            TxError::Rejected(rejection) => rejection.reply(),
            other => storage_failure(other),
        })?;
        self.store().durable().await.map_err(storage_failure)?;
        Ok(value)
    }
}

/// The `POST` route of one branch phase: `apply` behind the barrier (or, in
/// [`BarrierMode::UnsafeDisabled`], without it).
pub(crate) fn branch(kind: PhaseKind, apply: Business) -> MethodRouter<Ledger> {
    post(
        move |State(ledger): State<Ledger>, Branch(req): Branch| async move {
            match ledger.mode {
                BarrierMode::Enforced => ledger.barrier.run(kind, &req, apply).await,
                BarrierMode::UnsafeDisabled => {
                    barrier_mode::run_unprotected(ledger.store(), kind, &req, apply).await
                }
            }
        },
    )
}

/// `GET` of every record of the business tree, by key.
pub(crate) async fn list<T: Serialize + DeserializeOwned>(
    State(ledger): State<Ledger>,
) -> Result<Json<BTreeMap<String, T>>, BranchReply> {
    ledger.all().map(Json)
}

/// A storage failure in an admin route: `500 storage`, logged.
fn storage_failure(e: impl std::fmt::Display) -> BranchReply {
    tracing::error!(error = %e, "storage failure");
    BranchReply::error(500, "storage", e.to_string())
}
