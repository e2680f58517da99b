//! The branch barrier: exactly-once effects for branch calls that arrive at least once, in any
//! order.
//!
//! The coordinator retries, recovers after crashes and may compensate a step whose forward call
//! is still in flight, so a participant sees duplicates, a `cancel` before its `try` and a `try`
//! after its `cancel`. The barrier keeps ONE record per `(saga_id, step)` holding the stored
//! reply of each phase that ran, and reads and writes it in the same sled transaction as the
//! business change. One key per branch matters: racing phases of one branch then conflict on
//! that key inside sled, while records split over several keys could suffer write skew.
//!
//! - forward (`try`/`action`): a duplicate gets the stored reply; after an undo it is rejected
//!   as `hanging` (and that rejection is stored); a business rejection (`409`/`422`) discards
//!   the business writes and is stored, so a retry gets the same answer.
//! - undo (`cancel`/`compensate`): a duplicate gets the stored reply; with no forward recorded
//!   it is a null compensation (stored, the business is not called, and a later forward is
//!   hanging); after a rejected forward there is nothing to undo.
//! - confirm: a duplicate gets the stored reply; it is refused without a successful forward.
//!
//! Confirm and undo closures receive the input the forward phase was applied with, so they
//! release or commit exactly what the forward reserved whatever their own request carries.
//! Replies are made durable (group commit) before they are returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use thiserror::Error;

use sagas::RawJson;
use sagas::api::{ErrorBody, ErrorDetail};
use sagas::wire::{BranchRequest, Phase};

use crate::durability::GroupCommit;

/// Name of the sled tree holding the barrier records.
pub const BARRIER_TREE: &str = "barrier";

/// An HTTP status and a JSON body: what a branch call (or an admin call) answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchReply {
    pub status: u16,
    pub body: Value,
}

impl BranchReply {
    pub fn ok(body: Value) -> Self {
        BranchReply { status: 200, body }
    }

    /// A reply with the protocol's error body `{"error": {"code", "message"}}`, the same as
    /// the coordinator's.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        };
        BranchReply {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl IntoResponse for BranchReply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// Why a business closure did not apply its change. `409`/`422` are business rejections
/// (final for a forward phase); any other status is a failure the coordinator retries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{status} {error}: {message}")]
pub struct Rejection {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl Rejection {
    /// `409`: the request is valid but the state forbids it (e.g. insufficient funds).
    pub fn conflict(error: &str, message: impl Into<String>) -> Self {
        Rejection {
            status: 409,
            error: error.into(),
            message: message.into(),
        }
    }

    /// `422`: the input itself is unusable (missing field, zero amount, overflow).
    pub fn unprocessable(error: &str, message: impl Into<String>) -> Self {
        Rejection {
            status: 422,
            error: error.into(),
            message: message.into(),
        }
    }

    /// `500`: the stored state contradicts what the barrier guarantees. Never stored, so the
    /// coordinator keeps retrying (and eventually marks the saga `stuck` for an operator).
    pub fn invariant(message: impl Into<String>) -> Self {
        Rejection {
            status: 500,
            error: "invariant_violated".into(),
            message: message.into(),
        }
    }

    fn is_business(&self) -> bool {
        matches!(self.status, 409 | 422)
    }

    pub fn reply(&self) -> BranchReply {
        BranchReply::error(self.status, &self.error, self.message.clone())
    }
}

/// What a business closure fails with: a rejection, or a transactional storage error that
/// must be passed back to sled (it may just mean "conflict, run the closure again").
#[derive(Debug, Error)]
pub enum BusinessError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Storage(#[from] UnabortableTransactionError),
}

/// Errors of the barrier itself (never a business outcome).
#[derive(Debug, Error)]
pub enum BarrierError {
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("corrupt barrier record for saga {saga_id:?} step {step:?}: {source}")]
    CorruptRecord {
        saga_id: String,
        step: String,
        source: serde_json::Error,
    },
    #[error("phase {got} sent to a {expected} endpoint")]
    WrongPhase { got: Phase, expected: &'static str },
}

impl IntoResponse for BarrierError {
    fn into_response(self) -> Response {
        let reply = match &self {
            BarrierError::WrongPhase { .. } => {
                BranchReply::error(400, "wrong_phase", self.to_string())
            }
            _ => {
                tracing::error!(error = %self, "barrier failure");
                BranchReply::error(500, "storage", self.to_string())
            }
        };
        reply.into_response()
    }
}

/// Whether the barrier protects business closures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarrierMode {
    #[default]
    Enforced,
    /// FOR CHAOS-HARNESS SANITY CHECKS ONLY: closures run on every call with no deduplication,
    /// null compensation or hanging protection, so the harness can prove its checker notices.
    UnsafeDisabled,
}

/// The stored replies of one branch `(saga_id, step)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarrierRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<BranchReply>,
    /// The input the forward phase was applied with, as its exact text (only when it
    /// succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_input: Option<RawJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<BranchReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<BranchReply>,
}

/// Why a barrier transaction aborted.
enum TxAbort {
    Rejected(Rejection),
    Corrupt(serde_json::Error),
}

type TxResult<T> = Result<T, ConflictableTransactionError<TxAbort>>;

/// The branch barrier over one sled database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Barrier {
    records: sled::Tree,
    commit: GroupCommit,
    mode: BarrierMode,
}

impl Barrier {
    /// Opens (or creates) the barrier tree of `db`, enforced.
    pub fn open(db: &sled::Db) -> Result<Self, BarrierError> {
        Self::open_with_mode(db, BarrierMode::Enforced)
    }

    pub fn open_with_mode(db: &sled::Db, mode: BarrierMode) -> Result<Self, BarrierError> {
        if mode == BarrierMode::UnsafeDisabled {
            tracing::warn!(
                "branch barrier DISABLED: duplicate, early and late branch calls are not handled"
            );
        }
        Ok(Barrier {
            records: db.open_tree(BARRIER_TREE)?,
            commit: GroupCommit::new(db),
            mode,
        })
    }

    pub fn mode(&self) -> BarrierMode {
        self.mode
    }

    /// The group commit the barrier flushes with; admin writes can share it.
    pub fn group_commit(&self) -> &GroupCommit {
        &self.commit
    }

    /// The stored record of one branch, if any phase of it ran.
    pub fn record(&self, saga_id: &str, step: &str) -> Result<Option<BarrierRecord>, BarrierError> {
        match self.records.get(record_key(saga_id, step))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                BarrierError::CorruptRecord {
                    saga_id: saga_id.into(),
                    step: step.into(),
                    source,
                }
            }),
        }
    }

    /// Runs a `try`/`action`: `apply(business, input)` at most once per branch, never after
    /// the branch's undo. `apply` may run several times (sled retries on conflict), so it must
    /// touch nothing but the transactional tree it is given: no other side effects, and no
    /// plain sled calls, which would deadlock against the transaction.
    pub async fn forward<F>(
        &self,
        req: &BranchRequest,
        business: &sled::Tree,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    {
        self.run(PhaseKind::Forward, req, business, apply).await
    }

    /// Runs a `cancel`/`compensate`: `apply(business, forward_input)` once, and only if the
    /// forward phase succeeded; otherwise records a null compensation.
    pub async fn undo<F>(
        &self,
        req: &BranchRequest,
        business: &sled::Tree,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    {
        self.run(PhaseKind::Undo, req, business, apply).await
    }

    /// Runs a `confirm`: `apply(business, forward_input)` once, and only after a successful
    /// `try` that was not cancelled.
    pub async fn confirm<F>(
        &self,
        req: &BranchRequest,
        business: &sled::Tree,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    {
        self.run(PhaseKind::Confirm, req, business, apply).await
    }

    /// [`Barrier::forward`], [`Barrier::undo`] or [`Barrier::confirm`], by `kind`: checks the
    /// phase, runs the barrier transaction and makes its outcome durable before returning it.
    pub(crate) async fn run<F>(
        &self,
        kind: PhaseKind,
        req: &BranchRequest,
        business: &sled::Tree,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    {
        kind.expect(req.phase)?;
        let reply = self.committed(kind, req, business, apply)?;
        self.commit.flush().await?;
        Ok(reply)
    }

    /// One barrier transaction over the branch record and the business tree: a duplicate gets
    /// the stored reply; otherwise `kind` decides from the record whether to refuse, to store
    /// a reply without calling the business, or to apply the business change.
    fn committed<F>(
        &self,
        kind: PhaseKind,
        req: &BranchRequest,
        business: &sled::Tree,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    {
        if self.mode == BarrierMode::UnsafeDisabled {
            return run_unprotected(req, business, apply);
        }
        let key = record_key(&req.saga_id, &req.step);
        let outcome = (&self.records, business).transaction(|(records, tree)| {
            let mut record = read_record(records, &key)?;
            if let Some(stored) = record.reply_mut(kind).clone() {
                return Ok(stored);
            }
            let reply = match kind.decide(&record, req) {
                Decision::Refuse(reply) => return Ok(reply),
                Decision::Record(reply) => reply,
                Decision::Apply => {
                    let input = match kind {
                        PhaseKind::Forward => &req.input,
                        PhaseKind::Undo | PhaseKind::Confirm => forward_input(&record)?,
                    };
                    let reply =
                        BranchReply::ok(apply(tree, &input.to_value()).map_err(abort_business)?);
                    if kind == PhaseKind::Forward {
                        record.forward_input = Some(req.input.clone());
                    }
                    reply
                }
            };
            *record.reply_mut(kind) = Some(reply.clone());
            write_record(records, &key, &record)?;
            Ok(reply)
        });
        match outcome {
            Err(TransactionError::Abort(TxAbort::Rejected(rejection)))
                if kind == PhaseKind::Forward && rejection.is_business() =>
            {
                self.record_rejection(req, &key, &rejection)
            }
            other => settle(req, other),
        }
    }

    /// Stores a business rejection once the business writes were discarded. Runs in its own
    /// transaction, so it re-checks: a racing duplicate or undo may have recorded first.
    fn record_rejection(
        &self,
        req: &BranchRequest,
        key: &[u8],
        rejection: &Rejection,
    ) -> Result<BranchReply, BarrierError> {
        let outcome = self.records.transaction(|records| {
            let mut record = read_record(records, key)?;
            if let Some(stored) = &record.forward {
                return Ok(stored.clone());
            }
            let reply = if record.undo.is_some() {
                hanging_reply(req)
            } else {
                rejection.reply()
            };
            record.forward = Some(reply.clone());
            write_record(records, key, &record)?;
            Ok(reply)
        });
        settle(req, outcome)
    }
}

/// The three kinds of branch phase, as the barrier treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    /// `try`/`action`.
    Forward,
    /// `cancel`/`compensate`.
    Undo,
    Confirm,
}

/// What a phase does on its first arrival at a branch, given the branch's record.
enum Decision {
    /// Answer this and store nothing: a later call of the same phase is decided again.
    Refuse(BranchReply),
    /// Store this reply without calling the business.
    Record(BranchReply),
    /// Apply the business change and store its reply.
    Apply,
}

impl PhaseKind {
    fn expect(self, got: Phase) -> Result<(), BarrierError> {
        let (accepted, expected) = match self {
            PhaseKind::Forward => (got.is_forward(), "try/action"),
            PhaseKind::Undo => (got.is_undo(), "cancel/compensate"),
            PhaseKind::Confirm => (got == Phase::Confirm, "confirm"),
        };
        if accepted {
            Ok(())
        } else {
            Err(BarrierError::WrongPhase { got, expected })
        }
    }

    /// The barrier's rules for a phase that has no stored reply yet.
    fn decide(self, record: &BarrierRecord, req: &BranchRequest) -> Decision {
        match self {
            // Hanging: the undo came first, so the forward must never apply.
            PhaseKind::Forward if record.undo.is_some() => Decision::Record(hanging_reply(req)),
            PhaseKind::Forward => Decision::Apply,
            // A coordinator bug: refuse, store nothing, let an operator look.
            PhaseKind::Undo if record.confirm.is_some() => {
                Decision::Refuse(refusal(req, "undo_after_confirm", "was already confirmed"))
            }
            PhaseKind::Undo => match &record.forward {
                None => Decision::Record(BranchReply::ok(json!({"null_compensation": true}))),
                Some(forward) if !forward.is_success() => {
                    Decision::Record(BranchReply::ok(json!({"nothing_to_undo": true})))
                }
                Some(_) => Decision::Apply,
            },
            PhaseKind::Confirm if !record.forward.as_ref().is_some_and(BranchReply::is_success) => {
                Decision::Refuse(refusal(req, "confirm_without_try", "has no successful try"))
            }
            PhaseKind::Confirm if record.undo.is_some() => Decision::Refuse(refusal(
                req,
                "confirm_after_cancel",
                "was already cancelled",
            )),
            PhaseKind::Confirm => Decision::Apply,
        }
    }
}

impl BarrierRecord {
    /// The stored reply of the phase `kind`.
    fn reply_mut(&mut self, kind: PhaseKind) -> &mut Option<BranchReply> {
        match kind {
            PhaseKind::Forward => &mut self.forward,
            PhaseKind::Undo => &mut self.undo,
            PhaseKind::Confirm => &mut self.confirm,
        }
    }
}

/// A `409` for a phase the branch's state forbids, e.g. a confirm after a cancel.
fn refusal(req: &BranchRequest, error: &str, state: &str) -> BranchReply {
    BranchReply::error(
        409,
        error,
        format!("step {:?} of saga {:?} {state}", req.step, req.saga_id),
    )
}

/// `BarrierMode::UnsafeDisabled`: the closure alone, in a transaction of its own.
fn run_unprotected<F>(
    req: &BranchRequest,
    business: &sled::Tree,
    apply: F,
) -> Result<BranchReply, BarrierError>
where
    F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
{
    let input = req.input.to_value();
    let outcome = business.transaction(|tree| {
        Ok(BranchReply::ok(
            apply(tree, &input).map_err(abort_business)?,
        ))
    });
    settle(req, outcome)
}

/// Turns a finished transaction into the reply: rejections that reach here are not stored.
fn settle(
    req: &BranchRequest,
    outcome: Result<BranchReply, TransactionError<TxAbort>>,
) -> Result<BranchReply, BarrierError> {
    match outcome {
        Ok(reply) => Ok(reply),
        Err(TransactionError::Abort(TxAbort::Rejected(rejection))) => Ok(rejection.reply()),
        Err(TransactionError::Abort(TxAbort::Corrupt(source))) => {
            Err(BarrierError::CorruptRecord {
                saga_id: req.saga_id.clone(),
                step: req.step.clone(),
                source,
            })
        }
        Err(TransactionError::Storage(e)) => Err(BarrierError::Storage(e)),
    }
}

fn abort_business(e: BusinessError) -> ConflictableTransactionError<TxAbort> {
    match e {
        BusinessError::Rejected(r) => ConflictableTransactionError::Abort(TxAbort::Rejected(r)),
        BusinessError::Storage(e) => e.into(),
    }
}

fn hanging_reply(req: &BranchRequest) -> BranchReply {
    BranchReply::error(
        409,
        "hanging",
        format!(
            "{} of step {:?} in saga {:?} arrived after its undo; nothing applied",
            req.phase, req.step, req.saga_id
        ),
    )
}

/// `len(saga_id) (u32 BE) ++ saga_id ++ step`: unambiguous for any strings.
fn record_key(saga_id: &str, step: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + saga_id.len() + step.len());
    key.extend_from_slice(&(saga_id.len() as u32).to_be_bytes());
    key.extend_from_slice(saga_id.as_bytes());
    key.extend_from_slice(step.as_bytes());
    key
}

fn read_record(records: &TransactionalTree, key: &[u8]) -> TxResult<BarrierRecord> {
    match records.get(key)? {
        None => Ok(BarrierRecord::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ConflictableTransactionError::Abort(TxAbort::Corrupt(e))),
    }
}

/// The input a successful forward phase ran with: confirm and undo act on exactly that. A
/// successful forward always stored it, so its absence is a corrupt record, not a reason to
/// trust the request's own input.
fn forward_input(record: &BarrierRecord) -> TxResult<&RawJson> {
    record.forward_input.as_ref().ok_or_else(|| {
        let missing = <serde_json::Error as serde::de::Error>::custom(
            "successful forward phase stored without its input",
        );
        ConflictableTransactionError::Abort(TxAbort::Corrupt(missing))
    })
}

fn write_record(records: &TransactionalTree, key: &[u8], record: &BarrierRecord) -> TxResult<()> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| ConflictableTransactionError::Abort(TxAbort::Corrupt(e)))?;
    records.insert(key, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A toy account in one business tree: `balance` and `frozen` as JSON numbers.
    fn account(tree: &TransactionalTree) -> Result<(u64, u64), BusinessError> {
        let read = |key: &str| -> Result<u64, BusinessError> {
            Ok(tree
                .get(key)?
                .map(|v| serde_json::from_slice(&v).unwrap())
                .unwrap_or(0))
        };
        Ok((read("balance")?, read("frozen")?))
    }

    fn set(tree: &TransactionalTree, key: &str, value: u64) -> Result<(), BusinessError> {
        tree.insert(key, serde_json::to_vec(&value).unwrap())?;
        Ok(())
    }

    fn amount(input: &Value) -> u64 {
        input["amount"].as_u64().unwrap()
    }

    fn freeze(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
        let (balance, frozen) = account(tree)?;
        // Written before the check on purpose: a rejection must discard it.
        set(tree, "frozen", frozen + amount(input))?;
        if balance - frozen < amount(input) {
            return Err(Rejection::conflict("insufficient_funds", "not enough").into());
        }
        Ok(json!({"frozen": amount(input)}))
    }

    fn release(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
        let (_, frozen) = account(tree)?;
        let left = frozen
            .checked_sub(amount(input))
            .ok_or_else(|| Rejection::invariant("frozen would go negative"))?;
        set(tree, "frozen", left)?;
        Ok(json!({"released": amount(input)}))
    }

    fn deduct(tree: &TransactionalTree, input: &Value) -> Result<Value, BusinessError> {
        let (balance, frozen) = account(tree)?;
        set(tree, "balance", balance - amount(input))?;
        set(tree, "frozen", frozen - amount(input))?;
        Ok(json!({"deducted": amount(input)}))
    }

    fn counted<'a>(
        calls: &'a AtomicUsize,
        f: fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
    ) -> impl Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError> + 'a {
        move |tree, input| {
            calls.fetch_add(1, Ordering::SeqCst);
            f(tree, input)
        }
    }

    struct Fixture {
        barrier: Barrier,
        business: sled::Tree,
    }

    fn fixture(mode: BarrierMode, balance: u64) -> Fixture {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let business = db.open_tree("business").unwrap();
        business
            .insert("balance", serde_json::to_vec(&balance).unwrap())
            .unwrap();
        Fixture {
            barrier: Barrier::open_with_mode(&db, mode).unwrap(),
            business,
        }
    }

    impl Fixture {
        /// Runs `req` through the barrier method of its phase; the call must not fail.
        async fn call<F>(&self, req: &BranchRequest, apply: F) -> BranchReply
        where
            F: Fn(&TransactionalTree, &Value) -> Result<Value, BusinessError>,
        {
            let reply = match req.phase {
                Phase::Try | Phase::Action => {
                    self.barrier.forward(req, &self.business, apply).await
                }
                Phase::Cancel | Phase::Compensate => {
                    self.barrier.undo(req, &self.business, apply).await
                }
                Phase::Confirm => self.barrier.confirm(req, &self.business, apply).await,
            };
            reply.unwrap()
        }

        fn state(&self) -> (u64, u64) {
            let read = |key: &str| -> u64 {
                self.business
                    .get(key)
                    .unwrap()
                    .map(|v| serde_json::from_slice(&v).unwrap())
                    .unwrap_or(0)
            };
            (read("balance"), read("frozen"))
        }
    }

    fn req(saga_id: &str, phase: Phase, amount: u64) -> BranchRequest {
        BranchRequest {
            saga_id: saga_id.into(),
            step: "freeze_funds".into(),
            phase,
            input: json!({"amount": amount}).into(),
        }
    }

    #[tokio::test]
    async fn duplicate_forward_replays_the_stored_reply_and_applies_once() {
        let f = fixture(BarrierMode::Enforced, 100);
        let calls = AtomicUsize::new(0);
        let first = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        let second = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(first, BranchReply::ok(json!({"frozen": 30})));
        assert_eq!(second, first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.state(), (100, 30));
    }

    #[tokio::test]
    async fn null_compensation_skips_the_business_and_makes_the_late_try_hang() {
        let f = fixture(BarrierMode::Enforced, 100);
        let calls = AtomicUsize::new(0);
        let cancel = f
            .call(&req("s1", Phase::Cancel, 30), counted(&calls, release))
            .await;
        assert_eq!(cancel, BranchReply::ok(json!({"null_compensation": true})));
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let late_try = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(late_try.status, 409);
        assert_eq!(late_try.body["error"], "hanging");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(f.state(), (100, 0));

        // The hanging rejection is stored: a retry of the try gets it again.
        let again = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(again, late_try);
        let record = f.barrier.record("s1", "freeze_funds").unwrap().unwrap();
        assert_eq!(record.forward, Some(late_try));
        assert_eq!(record.undo, Some(cancel));
    }

    #[tokio::test]
    async fn duplicate_cancel_releases_once_using_the_try_input() {
        let f = fixture(BarrierMode::Enforced, 100);
        let calls = AtomicUsize::new(0);
        f.call(&req("s1", Phase::Try, 30), freeze).await;
        // The cancel carries a different amount: the barrier hands the try's input instead.
        let first = f
            .call(&req("s1", Phase::Cancel, 99), counted(&calls, release))
            .await;
        let second = f
            .call(&req("s1", Phase::Cancel, 99), counted(&calls, release))
            .await;
        assert_eq!(first, BranchReply::ok(json!({"released": 30})));
        assert_eq!(second, first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.state(), (100, 0));
    }

    #[tokio::test]
    async fn confirm_runs_once_and_only_after_a_successful_try() {
        let f = fixture(BarrierMode::Enforced, 100);
        let calls = AtomicUsize::new(0);
        let early = f
            .call(&req("s1", Phase::Confirm, 30), counted(&calls, deduct))
            .await;
        assert_eq!(early.status, 409);
        assert_eq!(early.body["error"], "confirm_without_try");
        // Not stored: once the try lands, the confirm goes through.
        f.call(&req("s1", Phase::Try, 30), freeze).await;
        let first = f
            .call(&req("s1", Phase::Confirm, 30), counted(&calls, deduct))
            .await;
        let second = f
            .call(&req("s1", Phase::Confirm, 30), counted(&calls, deduct))
            .await;
        assert_eq!(first, BranchReply::ok(json!({"deducted": 30})));
        assert_eq!(second, first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.state(), (70, 0));

        let cancel = f.call(&req("s1", Phase::Cancel, 30), release).await;
        assert_eq!(cancel.body["error"], "undo_after_confirm");
        assert_eq!(f.state(), (70, 0));
    }

    #[tokio::test]
    async fn confirm_after_cancel_is_refused() {
        let f = fixture(BarrierMode::Enforced, 100);
        f.call(&req("s1", Phase::Try, 30), freeze).await;
        f.call(&req("s1", Phase::Cancel, 30), release).await;
        let confirm = f.call(&req("s1", Phase::Confirm, 30), deduct).await;
        assert_eq!(confirm.status, 409);
        assert_eq!(confirm.body["error"], "confirm_after_cancel");
        assert_eq!(f.state(), (100, 0));
    }

    #[tokio::test]
    async fn rejection_discards_business_writes_is_stored_and_replayed() {
        let f = fixture(BarrierMode::Enforced, 10);
        let calls = AtomicUsize::new(0);
        let first = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(first.status, 409);
        assert_eq!(first.body["error"], "insufficient_funds");
        assert_eq!(
            f.state(),
            (10, 0),
            "the write before the rejection was discarded"
        );

        // Even with funds now available, the branch keeps its answer.
        f.business
            .insert("balance", serde_json::to_vec(&1000u64).unwrap())
            .unwrap();
        let second = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(second, first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let cancel = f
            .call(&req("s1", Phase::Cancel, 30), counted(&calls, release))
            .await;
        assert_eq!(cancel, BranchReply::ok(json!({"nothing_to_undo": true})));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.state(), (1000, 0));
    }

    #[tokio::test]
    async fn failures_other_than_409_and_422_are_not_stored() {
        let f = fixture(BarrierMode::Enforced, 100);
        let failing = |_: &TransactionalTree, _: &Value| -> Result<Value, BusinessError> {
            Err(Rejection::invariant("boom").into())
        };
        let reply = f.call(&req("s1", Phase::Action, 1), failing).await;
        assert_eq!(reply.status, 500);
        assert_eq!(f.barrier.record("s1", "freeze_funds").unwrap(), None);
        let retried = f.call(&req("s1", Phase::Action, 1), freeze).await;
        assert_eq!(retried.status, 200);
    }

    #[tokio::test]
    async fn wrong_phase_is_an_error_not_a_business_outcome() {
        let f = fixture(BarrierMode::Enforced, 100);
        let err = f
            .barrier
            .forward(&req("s1", Phase::Cancel, 1), &f.business, freeze)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            BarrierError::WrongPhase {
                got: Phase::Cancel,
                ..
            }
        ));
        assert_eq!(f.barrier.record("s1", "freeze_funds").unwrap(), None);
    }

    #[tokio::test]
    async fn keys_of_different_branches_never_collide() {
        assert_ne!(record_key("ab", "c"), record_key("a", "bc"));
        let f = fixture(BarrierMode::Enforced, 100);
        let mut r = req("ab", Phase::Try, 1);
        r.step = "c".into();
        f.barrier.forward(&r, &f.business, freeze).await.unwrap();
        assert_eq!(f.barrier.record("a", "bc").unwrap(), None);
    }

    #[tokio::test]
    async fn unsafe_mode_really_removes_the_protection() {
        let f = fixture(BarrierMode::UnsafeDisabled, 100);
        for _ in 0..2 {
            let reply = f.call(&req("s1", Phase::Try, 30), freeze).await;
            assert_eq!(reply.status, 200);
        }
        assert_eq!(f.state(), (100, 60), "the duplicate try froze twice");
        assert_eq!(f.barrier.record("s1", "freeze_funds").unwrap(), None);
    }

    /// A `try` and its `cancel` race on two threads, 200 times: whichever wins, the account
    /// ends where it started, and the replies tell a consistent story.
    #[test]
    fn racing_try_and_cancel_never_leave_funds_frozen() {
        let f = fixture(BarrierMode::Enforced, 1_000);
        let (mut applied_then_undone, mut hanging) = (0, 0);
        for i in 0..200 {
            let saga_id = format!("race-{i}");
            let start = std::sync::Barrier::new(2);
            let (try_reply, cancel_reply) = std::thread::scope(|s| {
                let tried = s.spawn(|| {
                    start.wait();
                    f.barrier
                        .committed(
                            PhaseKind::Forward,
                            &req(&saga_id, Phase::Try, 10),
                            &f.business,
                            freeze,
                        )
                        .unwrap()
                });
                let cancelled = s.spawn(|| {
                    start.wait();
                    f.barrier
                        .committed(
                            PhaseKind::Undo,
                            &req(&saga_id, Phase::Cancel, 10),
                            &f.business,
                            release,
                        )
                        .unwrap()
                });
                (tried.join().unwrap(), cancelled.join().unwrap())
            });
            assert_eq!(cancel_reply.status, 200, "pair {i}: {cancel_reply:?}");
            match try_reply.status {
                200 => {
                    assert_eq!(cancel_reply.body, json!({"released": 10}), "pair {i}");
                    applied_then_undone += 1;
                }
                409 => {
                    assert_eq!(try_reply.body["error"], "hanging", "pair {i}");
                    assert_eq!(
                        cancel_reply.body,
                        json!({"null_compensation": true}),
                        "pair {i}"
                    );
                    hanging += 1;
                }
                other => panic!("pair {i}: unexpected try status {other}: {try_reply:?}"),
            }
            assert_eq!(f.state(), (1_000, 0), "pair {i}");
        }
        eprintln!("try applied then cancelled: {applied_then_undone}, try hanging: {hanging}");
    }
}
