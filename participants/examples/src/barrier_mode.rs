//! Whether branch calls go through the SDK's barrier: always, except to prove the chaos
//! harness notices when they do not (`--unsafe-no-barrier`).
//!
//! Without the barrier a business closure runs on every call, in a transaction of its own:
//! duplicates apply twice, a compensation whose forward call never arrived undoes what was
//! never done (or fails), and a forward call after its compensation applies anyway. The SDK
//! has no such switch; it lives here, with the participants that need it.

use participants::{
    BarrierError, BarrierStore, BranchInput, BranchReply, PhaseKind, SledStore, TxError,
};
use sagas::wire::BranchRequest;

use crate::ledger::Business;

/// Whether branch calls go through the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarrierMode {
    /// Through the barrier: idempotent, null compensation, hanging protection.
    #[default]
    Enforced,
    /// FOR CHAOS-HARNESS SANITY CHECKS ONLY: business closures run on every call with no
    /// deduplication, null compensation or hanging protection, so the harness can prove its
    /// checker notices.
    UnsafeDisabled,
}

/// [`BarrierMode::UnsafeDisabled`]: checks the phase, runs `apply` with the request's own
/// input in a transaction of its own (no barrier record read or written) and makes it
/// durable. Rejections are answered, never stored.
///
/// Errors: as `Barrier::run`.
pub(crate) async fn run_unprotected(
    store: &SledStore,
    kind: PhaseKind,
    req: &BranchRequest,
    apply: Business,
) -> Result<BranchReply, BarrierError> {
    kind.check(req.phase)?;
    let outcome = store.transaction(|tx| apply(tx, BranchInput::new(&req.input)));
    let reply = match outcome {
        Ok(body) => BranchReply::ok(body),
        Err(TxError::Rejected(rejection)) => rejection.reply(),
        Err(TxError::Conflict) => {
            return Err(BarrierError::Conflict {
                saga_id: req.saga_id.clone(),
                step: req.step.clone(),
            });
        }
        Err(TxError::Storage(source)) => {
            return Err(BarrierError::Storage {
                saga_id: req.saga_id.clone(),
                step: req.step.clone(),
                source,
            });
        }
    };
    store.durable().await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use participants::{Barrier, SledTx};
    use sagas::wire::Phase;
    use serde_json::{Value, json};

    use super::*;

    fn freeze(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
        let frozen: u64 = tx.load("frozen")?.unwrap_or(0);
        let amount = input.value()["amount"].as_u64().unwrap();
        tx.store("frozen", &(frozen + amount))?;
        Ok(json!({"frozen": amount}))
    }

    #[tokio::test]
    async fn unsafe_mode_really_removes_the_protection() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStore::open(&db, "business").unwrap();
        let req = BranchRequest {
            saga_id: "s1".into(),
            step: "freeze_funds".into(),
            phase: Phase::Try,
            input: json!({"amount": 30}).into(),
        };
        for _ in 0..2 {
            let reply = run_unprotected(&store, PhaseKind::Forward, &req, freeze)
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
        }
        let frozen: u64 =
            serde_json::from_slice(&store.business().get("frozen").unwrap().unwrap()).unwrap();
        assert_eq!(frozen, 60, "the duplicate try froze twice");
        let barrier = Barrier::new(store.clone());
        assert_eq!(barrier.record("s1", "freeze_funds").unwrap(), None);

        let wrong = BranchRequest {
            phase: Phase::Cancel,
            ..req
        };
        assert!(matches!(
            run_unprotected(&store, PhaseKind::Forward, &wrong, freeze).await,
            Err(BarrierError::WrongPhase { .. })
        ));
    }
}
