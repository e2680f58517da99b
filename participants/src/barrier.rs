//! The branch barrier: exactly-once effects for branch calls that arrive at least once, in any
//! order.
//!
//! The coordinator retries, recovers after crashes and may compensate a step whose forward call
//! is still in flight, so a participant sees duplicates, a `cancel` before its `try` and a `try`
//! after its `cancel`. The barrier keeps ONE record per `(saga_id, step)` holding the stored
//! reply of each phase that ran, and reads and writes it in the same local transaction as the
//! business change ([`BarrierStore::transaction`]). One record per branch matters: racing
//! phases of one branch then conflict on it inside the store, while records split over several
//! keys could suffer write skew.
//!
//! - forward (`try`/`action`): a duplicate gets the stored reply; after an undo it is rejected
//!   as `hanging` (and that rejection is stored); a business rejection (`409`/`422`) discards
//!   the business writes and is stored, so a retry gets the same answer.
//! - undo (`cancel`/`compensate`): a duplicate gets the stored reply; with no forward recorded
//!   it is a null compensation (stored, the business is not called, and a later forward is
//!   hanging); after a rejected forward there is nothing to undo.
//! - confirm: a duplicate gets the stored reply; it is refused without a successful forward.
//!
//! Confirm and undo closures receive the input the forward phase was applied with (its exact
//! text, stored in the record), so they release or commit exactly what the forward reserved
//! whatever their own request carries. Replies are made durable
//! ([`BarrierStore::durable`]) before they are returned.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

use group_commit::GroupCommitError;
use sagas::RawJson;
use sagas::wire::{BranchRequest, Phase};

use crate::input::BranchInput;
use crate::reply::{BranchReply, Rejection};
use crate::store::{BarrierStore, BarrierTx, StoreError, TxError};

/// Errors of the barrier itself, never a business outcome (those are [`BranchReply`]s).
/// Answered `400 wrong_phase` or `500 storage`; the coordinator retries a `500`.
#[derive(Debug, Error)]
pub enum BarrierError {
    /// The store failed, or holds a record it cannot decode ([`StoreError::Corrupt`]).
    #[error("storage failed for step {step:?} of saga {saga_id:?}: {source}")]
    Storage {
        /// The saga of the call.
        saga_id: String,
        /// The step of the call.
        step: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The store gave up retrying a transaction that kept conflicting with concurrent ones.
    #[error("step {step:?} of saga {saga_id:?} kept conflicting with concurrent calls")]
    Conflict {
        /// The saga of the call.
        saga_id: String,
        /// The step of the call.
        step: String,
    },
    /// The outcome was committed but is not known durable, so it is not answered: a crash
    /// could still lose it. The coordinator's retry gets the stored reply once it is.
    #[error("the outcome is not durable: {0}")]
    NotDurable(#[from] GroupCommitError),
    /// A phase posted to the endpoint of another kind of phase (a `cancel` to a `try` route).
    #[error("phase {got} sent to a {expected} endpoint")]
    WrongPhase {
        /// The phase the request carries.
        got: Phase,
        /// The phases the endpoint takes, e.g. `try/action`.
        expected: &'static str,
    },
}

impl BarrierError {
    /// The answer: `400 wrong_phase`, or `500 storage` for every storage failure (logged).
    pub fn reply(&self) -> BranchReply {
        match self {
            BarrierError::WrongPhase { .. } => {
                BranchReply::error(400, "wrong_phase", self.to_string())
            }
            _ => {
                tracing::error!(error = %self, "barrier failure");
                BranchReply::error(500, "storage", self.to_string())
            }
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for BarrierError {
    fn into_response(self) -> axum::response::Response {
        self.reply().into_response()
    }
}

/// The stored replies of one branch `(saga_id, step)`; what a [`BarrierStore`] persists per
/// branch. Each phase's reply is stored when it is decided and replayed to its duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarrierRecord {
    /// The reply of the forward phase (`try`/`action`), success or stored rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<BranchReply>,
    /// The input the forward phase was applied with, as its exact text (only when it
    /// succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_input: Option<RawJson>,
    /// The reply of `confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<BranchReply>,
    /// The reply of the undo phase (`cancel`/`compensate`), including a null compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<BranchReply>,
    /// When a branch call last wrote or read this record, in milliseconds since the Unix
    /// epoch: every call that finds the record (a replayed duplicate, a refused phase)
    /// stamps it again, so the record's age is the time since the coordinator last reached
    /// this branch. The retention sweep ([`crate::retention`]) deletes a record only once it
    /// is old enough. `None` in records written before this field existed; the store gives
    /// those the time it first sees them ([`BarrierStore::aged`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<u64>,
}

/// The three kinds of branch phase, as the barrier treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// `try`/`action`.
    Forward,
    /// `cancel`/`compensate`.
    Undo,
    /// `confirm`.
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

/// The branch barrier over a [`BarrierStore`]. Cheap to clone when the store is.
///
/// A business closure has the shape `Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value,
/// TxError>`: it reads and writes through the transaction handle only, returns the JSON body
/// of its `200`, or an error ([`TxError`]: a [`Rejection`] to refuse, or the store's own
/// conflict or failure passed on with `?`). It may run several times (the store re-runs
/// conflicting transactions), so it must have no other side effect.
#[derive(Clone, Debug)]
pub struct Barrier<S> {
    store: S,
}

impl<S: BarrierStore> Barrier<S> {
    /// The barrier over `store`.
    pub fn new(store: S) -> Self {
        Barrier { store }
    }

    /// The store, e.g. to run an admin change in a transaction of its own and make it
    /// durable.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stored record of one branch, if any phase of it ran.
    ///
    /// Errors: [`BarrierError::Storage`] (including a record that does not decode),
    /// [`BarrierError::Conflict`].
    pub fn record(&self, saga_id: &str, step: &str) -> Result<Option<BarrierRecord>, BarrierError> {
        self.store
            .transaction(|tx| tx.record(saga_id, step))
            .map_err(|e| failure(saga_id, step, e))
    }

    /// Runs a `try`/`action`: `apply` with the request's input at most once per branch, never
    /// after the branch's undo. Returns the reply to send (also for rejections: `409`/`422`
    /// stored, anything else not).
    ///
    /// Errors: see [`Barrier::run`].
    pub async fn forward<F>(
        &self,
        req: &BranchRequest,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
    {
        self.run(PhaseKind::Forward, req, apply).await
    }

    /// Runs a `cancel`/`compensate`: `apply` with the forward phase's input once, and only if
    /// the forward phase succeeded; otherwise records a null compensation (`200
    /// {"null_compensation": true}`) or, after a rejected forward, `200 {"nothing_to_undo":
    /// true}`.
    ///
    /// Errors: see [`Barrier::run`].
    pub async fn undo<F>(&self, req: &BranchRequest, apply: F) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
    {
        self.run(PhaseKind::Undo, req, apply).await
    }

    /// Runs a `confirm`: `apply` with the forward phase's input once, and only after a
    /// successful `try` that was not cancelled (otherwise `409 confirm_without_try` or
    /// `409 confirm_after_cancel`, not stored).
    ///
    /// Errors: see [`Barrier::run`].
    pub async fn confirm<F>(
        &self,
        req: &BranchRequest,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
    {
        self.run(PhaseKind::Confirm, req, apply).await
    }

    /// [`Barrier::forward`], [`Barrier::undo`] or [`Barrier::confirm`], by `kind`: checks the
    /// phase, runs the barrier transaction and makes its outcome durable before returning it.
    ///
    /// Errors: [`BarrierError::WrongPhase`] if `req.phase` is not of `kind` (nothing is
    /// touched); [`BarrierError::Storage`] or [`BarrierError::Conflict`] if the transaction
    /// failed (nothing committed); [`BarrierError::NotDurable`] if it committed but could not
    /// be flushed.
    pub async fn run<F>(
        &self,
        kind: PhaseKind,
        req: &BranchRequest,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
    {
        kind.check(req.phase)?;
        let reply = self.committed(kind, req, apply)?;
        self.store.durable().await?;
        Ok(reply)
    }

    /// One barrier transaction over the branch record and the business data: a duplicate gets
    /// the stored reply; otherwise `kind` decides from the record whether to refuse, to store
    /// a reply without calling the business, or to apply the business change.
    pub(crate) fn committed<F>(
        &self,
        kind: PhaseKind,
        req: &BranchRequest,
        apply: F,
    ) -> Result<BranchReply, BarrierError>
    where
        F: Fn(&S::Tx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
    {
        let (saga_id, step) = (req.saga_id.as_str(), req.step.as_str());
        let now = crate::retention::unix_millis();
        let outcome = self.store.transaction(|tx| {
            let found = tx.record(saga_id, step)?;
            let existed = found.is_some();
            let mut record = found.unwrap_or_default();
            if let Some(stored) = record.reply_mut(kind).clone() {
                // A duplicate: the coordinator still reaches this branch, so the record's age
                // starts again (retention keeps it at least its minimum age from now).
                record.written_at = Some(now);
                tx.put_record(saga_id, step, &record)?;
                return Ok(stored);
            }
            let reply = match kind.decide(&record, req) {
                Decision::Refuse(reply) => {
                    if existed {
                        record.written_at = Some(now);
                        tx.put_record(saga_id, step, &record)?;
                    }
                    return Ok(reply);
                }
                Decision::Record(reply) => reply,
                Decision::Apply => {
                    let input = match kind {
                        PhaseKind::Forward => &req.input,
                        PhaseKind::Undo | PhaseKind::Confirm => forward_input(&record, req)?,
                    };
                    let reply = BranchReply::ok(apply(tx, BranchInput::new(input))?);
                    if kind == PhaseKind::Forward {
                        record.forward_input = Some(req.input.clone());
                    }
                    reply
                }
            };
            *record.reply_mut(kind) = Some(reply.clone());
            record.written_at = Some(now);
            tx.put_record(saga_id, step, &record)?;
            Ok(reply)
        });
        match outcome {
            Err(TxError::Rejected(rejection))
                if kind == PhaseKind::Forward && rejection.is_business() =>
            {
                self.record_rejection(req, &rejection)
            }
            other => settle(req, other),
        }
    }

    /// Stores a business rejection once the business writes were discarded. Runs in its own
    /// transaction, so it re-checks: a racing duplicate or undo may have recorded first.
    fn record_rejection(
        &self,
        req: &BranchRequest,
        rejection: &Rejection,
    ) -> Result<BranchReply, BarrierError> {
        let (saga_id, step) = (req.saga_id.as_str(), req.step.as_str());
        let now = crate::retention::unix_millis();
        let outcome = self.store.transaction(|tx| {
            let mut record = tx.record(saga_id, step)?.unwrap_or_default();
            record.written_at = Some(now);
            if let Some(stored) = record.forward.clone() {
                tx.put_record(saga_id, step, &record)?;
                return Ok(stored);
            }
            let reply = if record.undo.is_some() {
                hanging_reply(req)
            } else {
                rejection.reply()
            };
            record.forward = Some(reply.clone());
            tx.put_record(saga_id, step, &record)?;
            Ok(reply)
        });
        settle(req, outcome)
    }
}

impl PhaseKind {
    /// The kind of `phase`.
    pub fn of(phase: Phase) -> PhaseKind {
        if phase.is_forward() {
            PhaseKind::Forward
        } else if phase.is_undo() {
            PhaseKind::Undo
        } else {
            PhaseKind::Confirm
        }
    }

    /// Whether `got` is a phase of this kind.
    ///
    /// Errors: [`BarrierError::WrongPhase`] when it is not.
    pub fn check(self, got: Phase) -> Result<(), BarrierError> {
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

/// Turns a finished transaction into the reply: rejections that reach here are not stored.
fn settle(
    req: &BranchRequest,
    outcome: Result<BranchReply, TxError>,
) -> Result<BranchReply, BarrierError> {
    outcome.or_else(|e| into_reply(&req.saga_id, &req.step, e))
}

/// A failed transaction of branch `(saga_id, step)`: a rejection is its reply, anything else
/// a [`BarrierError`].
fn into_reply(saga_id: &str, step: &str, e: TxError) -> Result<BranchReply, BarrierError> {
    match e {
        TxError::Rejected(rejection) => Ok(rejection.reply()),
        other => Err(failure(saga_id, step, other)),
    }
}

/// A transaction of branch `(saga_id, step)` that failed for a reason other than a business
/// rejection (a store whose plain read "rejects" is failing too).
fn failure(saga_id: &str, step: &str, e: TxError) -> BarrierError {
    let (saga_id, step) = (saga_id.to_string(), step.to_string());
    match e {
        TxError::Conflict => BarrierError::Conflict { saga_id, step },
        TxError::Storage(source) => BarrierError::Storage {
            saga_id,
            step,
            source,
        },
        TxError::Rejected(rejection) => BarrierError::Storage {
            saga_id,
            step,
            source: StoreError::backend(rejection),
        },
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

/// The input a successful forward phase ran with: confirm and undo act on exactly that. A
/// successful forward always stored it, so its absence is a corrupt record, not a reason to
/// trust the request's own input.
fn forward_input<'r>(
    record: &'r BarrierRecord,
    req: &BranchRequest,
) -> Result<&'r RawJson, TxError> {
    record.forward_input.as_ref().ok_or_else(|| {
        StoreError::Corrupt {
            what: format!(
                "barrier record of step {:?} in saga {:?}",
                req.step, req.saga_id
            ),
            reason: "successful forward phase stored without its input".into(),
        }
        .into()
    })
}

#[cfg(all(test, feature = "sled"))]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::sled_store::{SledStore, SledTx};

    /// A business closure over the sled store, as the tests write them.
    type Business = fn(&SledTx<'_>, BranchInput<'_>) -> Result<Value, TxError>;

    /// A toy account in the business tree: `balance` and `frozen` as JSON numbers.
    fn account(tx: &SledTx<'_>) -> Result<(u64, u64), TxError> {
        let read = |key: &str| -> Result<u64, TxError> {
            Ok(tx
                .business()
                .get(key)?
                .map(|v| serde_json::from_slice(&v).unwrap())
                .unwrap_or(0))
        };
        Ok((read("balance")?, read("frozen")?))
    }

    fn set(tx: &SledTx<'_>, key: &str, value: u64) -> Result<(), TxError> {
        tx.business()
            .insert(key, serde_json::to_vec(&value).unwrap())?;
        Ok(())
    }

    fn amount(input: BranchInput<'_>) -> u64 {
        input.value()["amount"].as_u64().unwrap()
    }

    fn freeze(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
        let (balance, frozen) = account(tx)?;
        // Written before the check on purpose: a rejection must discard it.
        set(tx, "frozen", frozen + amount(input))?;
        if balance - frozen < amount(input) {
            return Err(Rejection::conflict("insufficient_funds", "not enough").into());
        }
        Ok(json!({"frozen": amount(input)}))
    }

    fn release(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
        let (_, frozen) = account(tx)?;
        let left = frozen
            .checked_sub(amount(input))
            .ok_or_else(|| Rejection::invariant("frozen would go negative"))?;
        set(tx, "frozen", left)?;
        Ok(json!({"released": amount(input)}))
    }

    fn deduct(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
        let (balance, frozen) = account(tx)?;
        set(tx, "balance", balance - amount(input))?;
        set(tx, "frozen", frozen - amount(input))?;
        Ok(json!({"deducted": amount(input)}))
    }

    fn counted(
        calls: &AtomicUsize,
        f: Business,
    ) -> impl Fn(&SledTx<'_>, BranchInput<'_>) -> Result<Value, TxError> + '_ {
        move |tx, input| {
            calls.fetch_add(1, Ordering::SeqCst);
            f(tx, input)
        }
    }

    struct Fixture {
        barrier: Barrier<SledStore>,
    }

    /// A barrier over a temporary sled database whose business tree holds `balance`.
    fn fixture(balance: u64) -> Fixture {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStore::open(&db, "business").unwrap();
        store
            .business()
            .insert("balance", serde_json::to_vec(&balance).unwrap())
            .unwrap();
        Fixture {
            barrier: Barrier::new(store),
        }
    }

    impl Fixture {
        /// Runs `req` through the barrier method of its phase; the call must not fail.
        async fn call<F>(&self, req: &BranchRequest, apply: F) -> BranchReply
        where
            F: Fn(&SledTx<'_>, BranchInput<'_>) -> Result<Value, TxError>,
        {
            let reply = match req.phase {
                Phase::Try | Phase::Action => self.barrier.forward(req, apply).await,
                Phase::Cancel | Phase::Compensate => self.barrier.undo(req, apply).await,
                Phase::Confirm => self.barrier.confirm(req, apply).await,
            };
            reply.unwrap()
        }

        fn state(&self) -> (u64, u64) {
            let read = |key: &str| -> u64 {
                self.barrier
                    .store()
                    .business()
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
        let f = fixture(100);
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
        let f = fixture(100);
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
        assert_eq!(late_try.body["error"]["code"], "hanging");
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
        let f = fixture(100);
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
        let f = fixture(100);
        let calls = AtomicUsize::new(0);
        let early = f
            .call(&req("s1", Phase::Confirm, 30), counted(&calls, deduct))
            .await;
        assert_eq!(early.status, 409);
        assert_eq!(early.body["error"]["code"], "confirm_without_try");
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
        assert_eq!(cancel.body["error"]["code"], "undo_after_confirm");
        assert_eq!(f.state(), (70, 0));
    }

    #[tokio::test]
    async fn confirm_after_cancel_is_refused() {
        let f = fixture(100);
        f.call(&req("s1", Phase::Try, 30), freeze).await;
        f.call(&req("s1", Phase::Cancel, 30), release).await;
        let confirm = f.call(&req("s1", Phase::Confirm, 30), deduct).await;
        assert_eq!(confirm.status, 409);
        assert_eq!(confirm.body["error"]["code"], "confirm_after_cancel");
        assert_eq!(f.state(), (100, 0));
    }

    #[tokio::test]
    async fn rejection_discards_business_writes_is_stored_and_replayed() {
        let f = fixture(10);
        let calls = AtomicUsize::new(0);
        let first = f
            .call(&req("s1", Phase::Try, 30), counted(&calls, freeze))
            .await;
        assert_eq!(first.status, 409);
        assert_eq!(first.body["error"]["code"], "insufficient_funds");
        assert_eq!(
            f.state(),
            (10, 0),
            "the write before the rejection was discarded"
        );

        // Even with funds now available, the branch keeps its answer.
        f.barrier
            .store()
            .business()
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
        let f = fixture(100);
        let failing = |_: &SledTx<'_>, _: BranchInput<'_>| -> Result<Value, TxError> {
            Err(Rejection::invariant("boom").into())
        };
        let reply = f.call(&req("s1", Phase::Action, 1), failing).await;
        assert_eq!(reply.status, 500);
        assert_eq!(reply.body["error"]["code"], "invariant_violated");
        assert_eq!(f.barrier.record("s1", "freeze_funds").unwrap(), None);
        let retried = f.call(&req("s1", Phase::Action, 1), freeze).await;
        assert_eq!(retried.status, 200);
    }

    #[tokio::test]
    async fn wrong_phase_is_an_error_not_a_business_outcome() {
        let f = fixture(100);
        let err = f
            .barrier
            .forward(&req("s1", Phase::Cancel, 1), freeze)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            BarrierError::WrongPhase {
                got: Phase::Cancel,
                ..
            }
        ));
        assert_eq!(err.reply().body["error"]["code"], "wrong_phase", "{err:?}");
        assert_eq!(f.barrier.record("s1", "freeze_funds").unwrap(), None);
    }

    #[tokio::test]
    async fn records_of_different_branches_never_collide() {
        let f = fixture(100);
        let mut r = req("ab", Phase::Try, 1);
        r.step = "c".into();
        f.barrier.forward(&r, freeze).await.unwrap();
        assert!(f.barrier.record("ab", "c").unwrap().is_some());
        assert_eq!(f.barrier.record("a", "bc").unwrap(), None);
    }

    /// The saga input travels as its exact text: the forward closure gets it, the record
    /// stores it, and confirm and undo closures get it back byte for byte, numbers beyond 64
    /// bits and spacing included.
    #[tokio::test]
    async fn the_forward_input_is_stored_and_handed_back_as_its_exact_text() {
        const TEXT: &str = r#"{"big": 123456789012345678901234567890}"#;
        let f = fixture(0);
        let seen = Mutex::new(Vec::<String>::new());
        let remember = |_: &SledTx<'_>, input: BranchInput<'_>| -> Result<Value, TxError> {
            seen.lock().unwrap().push(input.text().to_string());
            Ok(json!({}))
        };
        let exact = |saga_id: &str, phase: Phase| BranchRequest {
            saga_id: saga_id.into(),
            step: "big".into(),
            phase,
            input: RawJson::from_text(TEXT).unwrap(),
        };
        // Confirm and undo requests carry some other input: the stored one wins.
        let other = |saga_id: &str, phase: Phase| BranchRequest {
            input: json!({"big": 1}).into(),
            ..exact(saga_id, phase)
        };

        f.call(&exact("tcc", Phase::Try), remember).await;
        let stored = f.barrier.record("tcc", "big").unwrap().unwrap();
        assert_eq!(stored.forward_input.as_ref().map(RawJson::get), Some(TEXT));
        f.call(&other("tcc", Phase::Confirm), remember).await;
        f.call(&exact("saga", Phase::Action), remember).await;
        f.call(&other("saga", Phase::Compensate), remember).await;
        assert_eq!(*seen.lock().unwrap(), vec![TEXT; 4]);
    }

    /// A `try` and its `cancel` race on two threads, 200 times: whichever wins, the account
    /// ends where it started, and the replies tell a consistent story.
    #[tokio::test]
    async fn racing_try_and_cancel_never_leave_funds_frozen() {
        let f = fixture(1_000);
        let (mut applied_then_undone, mut hanging) = (0, 0);
        for i in 0..200 {
            let saga_id = format!("race-{i}");
            let start = std::sync::Barrier::new(2);
            let (try_reply, cancel_reply) = std::thread::scope(|s| {
                let tried = s.spawn(|| {
                    start.wait();
                    f.barrier
                        .committed(PhaseKind::Forward, &req(&saga_id, Phase::Try, 10), freeze)
                        .unwrap()
                });
                let cancelled = s.spawn(|| {
                    start.wait();
                    f.barrier
                        .committed(PhaseKind::Undo, &req(&saga_id, Phase::Cancel, 10), release)
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
                    assert_eq!(try_reply.body["error"]["code"], "hanging", "pair {i}");
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

    #[test]
    fn phase_kinds_check_their_phases() {
        for phase in [
            Phase::Try,
            Phase::Confirm,
            Phase::Cancel,
            Phase::Action,
            Phase::Compensate,
        ] {
            let kind = PhaseKind::of(phase);
            assert!(kind.check(phase).is_ok(), "{phase}");
        }
        assert_eq!(PhaseKind::of(Phase::Compensate), PhaseKind::Undo);
        assert!(PhaseKind::Confirm.check(Phase::Try).is_err());
        assert!(PhaseKind::Forward.check(Phase::Cancel).is_err());
    }

    #[test]
    fn every_barrier_error_answers_with_the_error_body() {
        let storage = BarrierError::Storage {
            saga_id: "s".into(),
            step: "x".into(),
            source: StoreError::Corrupt {
                what: "record".into(),
                reason: "not JSON".into(),
            },
        };
        let conflict = BarrierError::Conflict {
            saga_id: "s".into(),
            step: "x".into(),
        };
        let not_durable = BarrierError::NotDurable(GroupCommitError::Stopped);
        for (err, status, code) in [
            (storage, 500, "storage"),
            (conflict, 500, "storage"),
            (not_durable, 500, "storage"),
        ] {
            let reply = err.reply();
            assert_eq!(reply.status, status, "{err}");
            assert_eq!(reply.body["error"]["code"], code, "{err}");
            assert_eq!(reply.body["error"]["message"], err.to_string());
        }
    }
}
