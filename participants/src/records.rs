//! Typed JSON records in sled trees, for the participants' business state.
//!
//! Inside a barrier transaction reads and writes go through [`load`] and [`store`]; a record
//! that does not decode is reported as an invariant violation (`500`, retried) rather than a
//! business rejection, since no input could fix it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::barrier::{BranchReply, BusinessError, Rejection};

/// Decodes a branch input into `T`; unusable input is a `422 invalid_input` rejection.
/// Unknown fields are ignored: steps usually receive the whole saga input.
pub fn parse_input<T: DeserializeOwned>(input: &Value) -> Result<T, Rejection> {
    T::deserialize(input).map_err(|e| Rejection::unprocessable("invalid_input", e.to_string()))
}

pub fn load<T: DeserializeOwned>(
    tree: &TransactionalTree,
    key: &str,
) -> Result<Option<T>, BusinessError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Rejection::invariant(format!("corrupt record {key:?}: {e}")).into()),
    }
}

pub fn store<T: Serialize>(
    tree: &TransactionalTree,
    key: &str,
    value: &T,
) -> Result<(), BusinessError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Rejection::invariant(format!("cannot encode record {key:?}: {e}")))?;
    tree.insert(key, bytes)?;
    Ok(())
}

/// Reads one record outside a transaction (admin reads).
pub fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &str) -> Result<Option<T>, BranchReply> {
    match tree.get(key).map_err(storage_failure)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| storage_failure(format!("corrupt record {key:?}: {e}"))),
    }
}

/// Every record of a tree, by key (admin listings for invariant checks).
pub fn all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<BTreeMap<String, T>, BranchReply> {
    let mut out = BTreeMap::new();
    for entry in tree.iter() {
        let (key, bytes) = entry.map_err(storage_failure)?;
        let key = String::from_utf8_lossy(&key).into_owned();
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| storage_failure(format!("corrupt record {key:?}: {e}")))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// Runs an admin change in a transaction of its own; rejections become their reply.
pub fn transact<T>(
    tree: &sled::Tree,
    change: impl Fn(&TransactionalTree) -> Result<T, BusinessError>,
) -> Result<T, BranchReply> {
    let outcome = tree.transaction(|tx| {
        change(tx).map_err(|e| match e {
            BusinessError::Rejected(r) => ConflictableTransactionError::Abort(r),
            BusinessError::Storage(e) => e.into(),
        })
    });
    match outcome {
        Ok(value) => Ok(value),
        Err(TransactionError::Abort(rejection)) => Err(rejection.reply()),
        Err(TransactionError::Storage(e)) => Err(storage_failure(e)),
    }
}

/// A storage failure in an admin route: `500`, logged.
pub fn storage_failure(e: impl std::fmt::Display) -> BranchReply {
    tracing::error!(error = %e, "storage failure");
    BranchReply::error(500, "storage", e.to_string())
}
