//! Retention: forgetting the barrier records (and the business records that go with them) of
//! sagas the coordinator has settled, without ever forgetting one a call may still need.
//!
//! # The rule
//!
//! A barrier record answers the calls the coordinator may still send for its branch: a
//! duplicate forward after a lost reply (replayed, not applied twice), a `cancel`/`compensate`
//! retried after a coordinator restart days later, a late `try` arriving after its `cancel`
//! (refused as hanging because the record says the undo ran). So the sweep deletes the record
//! of branch `(saga, step)` only when BOTH hold:
//!
//! 1. **it is old enough**: it was last written at least [`Retention::min_age`] ago (default 1
//!    hour). Every call that finds the record stamps it again
//!    ([`BarrierRecord::written_at`]), so this is the time since the coordinator last reached
//!    the branch; it covers a call sent before the saga ended and delayed on the way;
//! 2. **the coordinator says the saga is settled**: its state is `committed` or `aborted`
//!    (terminal: the coordinator sends nothing more for it), or `unknown` (the coordinator
//!    holds no such saga: its own retention removed it, which it does only to settled sagas; a
//!    participant only holds records of sagas that called it). A `stuck` saga may be retried
//!    by an operator at any time, so its records stay, as do those of `running`,
//!    `confirming` and `compensating` sagas.
//!
//! Anything else keeps the record until the next sweep: the coordinator unreachable, an error
//! answer (a `404` for the whole request from a coordinator without the endpoint, a `403`
//! from a token without the `read` scope), an answer that does not decode or lacks an id.
//! The sweep asks the coordinator in batches (`POST /v1/sagas/states`, at most
//! [`MAX_STATE_IDS`] ids each; [`CoordinatorStates`]) and deletes the records of one batch,
//! with the participant's own records of those sagas ([`Forget`]), in one transaction. A
//! record written again since it was listed (a late call) is kept.
//!
//! The rule trusts the coordinators the participant is configured with to be the ones that
//! call it: pointed at another coordinator (or one whose data was wiped), every saga is
//! `unknown` and every record older than the minimum age is deleted.
//!
//! # Running it
//!
//! [`RetentionTask::spawn`] sweeps every [`Retention::sweep_every`] in the background until
//! [`RetentionTask::shutdown`]; [`sweep`] is one sweep, for tests and own schedulers. Each
//! sweep logs what it deleted and kept; [`RetentionTask::totals`] counts them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sagas::CoordinatorClient;
use sagas::api::{MAX_STATE_IDS, ReportedState};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::barrier::BarrierRecord;
use crate::store::{AgedBranch, BarrierStore, BarrierTx, StoreError, TxError};

/// Milliseconds since the Unix epoch, by the system clock (0 before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long barrier records are kept and how often the sweep runs. In a config file (serde):
/// `{"min_age_secs": 3600, "sweep_every_secs": 60, "batch_size": 500}`, every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// A record is deleted only once it was last written at least this long ago (and its
    /// saga is settled). Default 1 hour: longer than any call may travel after its saga
    /// ended. Longer keeps more history (the chaos harness's books checker reads the orders
    /// after a run: keep it longer than the run).
    #[serde(rename = "min_age_secs", with = "secs")]
    pub min_age: Duration,
    /// Time between sweeps (default 60 s); a sweep goes through every record old enough.
    #[serde(rename = "sweep_every_secs", with = "secs")]
    pub sweep_every: Duration,
    /// Records per batch: one coordinator request and one local transaction each (default
    /// 500, at most [`MAX_STATE_IDS`]).
    pub batch_size: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            min_age: Retention::DEFAULT_MIN_AGE,
            sweep_every: Duration::from_secs(60),
            batch_size: 500,
        }
    }
}

/// A [`Retention`] that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetentionError {
    /// `batch_size` is 0 or over [`MAX_STATE_IDS`].
    #[error("retention batch_size must be 1 to {MAX_STATE_IDS} (got {0})")]
    BatchSize(usize),
    /// `sweep_every` is zero.
    #[error("retention sweep_every must be positive")]
    SweepEvery,
}

impl Retention {
    /// The default minimum age: 1 hour.
    pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3600);

    /// Checks the batch size and the interval.
    ///
    /// Errors: [`RetentionError`] naming the field.
    pub fn validate(&self) -> Result<(), RetentionError> {
        if self.batch_size == 0 || self.batch_size > MAX_STATE_IDS {
            return Err(RetentionError::BatchSize(self.batch_size));
        }
        if self.sweep_every.is_zero() {
            return Err(RetentionError::SweepEvery);
        }
        Ok(())
    }
}

/// Serde of a [`Duration`] as whole seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Why the coordinator's answer about saga states could not be had. The sweep keeps every
/// record it asked about and tries again at its next run.
#[derive(Debug, Error)]
pub enum LookupError {
    /// No coordinator answered, or one answered with an error (`403`: the token lacks the
    /// `read` scope; `404`/`405`: a coordinator without `POST /v1/sagas/states`).
    #[error(transparent)]
    Client(#[from] sagas::ClientError),
    /// There is no coordinator to ask (an empty list was configured).
    #[error("no coordinator to ask for saga states")]
    NoCoordinator,
}

/// Where the sweep learns saga states: the coordinator, or a fake in tests.
pub trait SagaStates: Send + Sync {
    /// The states of `ids` (at most [`MAX_STATE_IDS`]). An id missing from the answer is kept.
    ///
    /// Errors: [`LookupError`]; nothing is deleted then.
    fn states(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, ReportedState>, LookupError>> + Send;
}

/// The coordinator(s) a participant registered with, asked through `POST /v1/sagas/states`
/// (in turn, until one answers; any instance of a cluster answers for all). With
/// `--auth-file` on the coordinator, their token needs the `read` scope.
#[derive(Debug, Clone)]
pub struct CoordinatorStates {
    coordinators: Vec<CoordinatorClient>,
}

impl CoordinatorStates {
    /// Asks `coordinators`, e.g. the clients built for registration; with none, every lookup
    /// fails with [`LookupError::NoCoordinator`] (and nothing is deleted).
    pub fn new(coordinators: Vec<CoordinatorClient>) -> Self {
        CoordinatorStates { coordinators }
    }
}

impl SagaStates for CoordinatorStates {
    async fn states(&self, ids: &[String]) -> Result<BTreeMap<String, ReportedState>, LookupError> {
        let mut last = None;
        for coordinator in &self.coordinators {
            match coordinator.saga_states(ids).await {
                Ok(answer) => return Ok(answer.states),
                Err(e) if e.is_retryable() => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or(LookupError::NoCoordinator, LookupError::from))
    }
}

/// What a participant deletes of its own when the sweep forgets branch `(saga_id, step)`,
/// in the sweep's transaction, from the record about to go (e.g. the order a saga created,
/// found from [`BarrierRecord::forward_input`]). Never a record shared by several sagas (an
/// account balance). Any closure `Fn(&S::Tx<'_>, &AgedBranch, &BarrierRecord) -> Result<(),
/// TxError>` is one; `()` deletes nothing.
///
/// An error rolls the batch back and stops the sweep (a [`TxError::Rejected`] included).
pub trait Forget<S: BarrierStore>: Send + Sync {
    /// Deletes what goes with `branch`, whose record is `record`.
    ///
    /// Errors: see the trait.
    fn forget(
        &self,
        tx: &S::Tx<'_>,
        branch: &AgedBranch,
        record: &BarrierRecord,
    ) -> Result<(), TxError>;
}

impl<S: BarrierStore> Forget<S> for () {
    fn forget(&self, _: &S::Tx<'_>, _: &AgedBranch, _: &BarrierRecord) -> Result<(), TxError> {
        Ok(())
    }
}

impl<S, F> Forget<S> for F
where
    S: BarrierStore,
    F: Fn(&S::Tx<'_>, &AgedBranch, &BarrierRecord) -> Result<(), TxError> + Send + Sync,
{
    fn forget(
        &self,
        tx: &S::Tx<'_>,
        branch: &AgedBranch,
        record: &BarrierRecord,
    ) -> Result<(), TxError> {
        self(tx, branch, record)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Records deleted (their sagas settled).
    pub deleted: u64,
    /// Records old enough but kept: their saga is not settled (or was not in the answer), or
    /// the record was written again since it was listed.
    pub kept: u64,
    /// Coordinator requests made.
    pub lookups: u64,
}

/// Why a sweep stopped early. What it deleted before stays deleted; it tries again at its
/// next run.
#[derive(Debug, Error)]
pub enum SweepError {
    /// The coordinator's answer could not be had: nothing of the batch was deleted.
    #[error("asking the coordinator for saga states failed: {0}")]
    Lookup(#[from] LookupError),
    /// Listing records failed.
    #[error("listing old barrier records failed: {0}")]
    List(#[from] StoreError),
    /// The delete transaction failed (storage, a conflict the store gave up on, or a
    /// [`Forget`] error): rolled back, nothing of the batch was deleted.
    #[error("deleting barrier records failed: {0}")]
    Delete(#[from] TxError),
}

/// One sweep at time `now` (milliseconds since the Unix epoch): every record last written
/// before `now - min_age`, in batches of `retention.batch_size`, deleted (with `forget`'s
/// records) when the coordinator says its saga is settled. See the [module docs](self).
///
/// Errors: [`SweepError`], at the first batch that fails; earlier batches stay deleted.
pub async fn sweep<S, L, F>(
    store: &S,
    states: &L,
    forget: &F,
    retention: &Retention,
    now: u64,
) -> Result<SweepReport, SweepError>
where
    S: BarrierStore,
    L: SagaStates,
    F: Forget<S>,
{
    let cutoff =
        now.saturating_sub(u64::try_from(retention.min_age.as_millis()).unwrap_or(u64::MAX));
    let limit = retention.batch_size.clamp(1, MAX_STATE_IDS);
    let mut report = SweepReport::default();
    let mut after: Option<AgedBranch> = None;
    loop {
        let page = store.aged(cutoff, after.as_ref(), limit)?;
        let Some(last) = page.last().cloned() else {
            return Ok(report);
        };
        let ids: Vec<String> = page
            .iter()
            .map(|b| b.saga_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        report.lookups += 1;
        let answer = states.states(&ids).await?;
        let settled = |saga_id: &str| answer.get(saga_id).is_some_and(|s| s.is_settled());
        let deleted = store.transaction(|tx| {
            let mut deleted = 0u64;
            for branch in page.iter().filter(|b| settled(&b.saga_id)) {
                let Some(mut record) = tx.record(&branch.saga_id, &branch.step)? else {
                    continue;
                };
                match record.written_at {
                    // Written again since it was listed (a late call): young again, kept.
                    Some(t) if t > cutoff => continue,
                    Some(_) => {}
                    // Rewritten without its time (by an older version of this SDK): its age
                    // is unknown, so it ages from now, like any record first seen untimed.
                    None => {
                        record.written_at = Some(now);
                        tx.put_record(&branch.saga_id, &branch.step, &record)?;
                        continue;
                    }
                }
                forget.forget(tx, branch, &record)?;
                tx.remove_record(&branch.saga_id, &branch.step)?;
                deleted += 1;
            }
            Ok(deleted)
        })?;
        report.deleted += deleted;
        report.kept += page.len() as u64 - deleted;
        if page.len() < limit {
            return Ok(report);
        }
        after = Some(last);
    }
}

/// Running totals of a [`RetentionTask`], for logs and tests.
#[derive(Debug, Default)]
pub struct RetentionTotals {
    sweeps: AtomicU64,
    failed: AtomicU64,
    deleted: AtomicU64,
    kept: AtomicU64,
}

impl RetentionTotals {
    /// Sweeps finished, whether they succeeded or not.
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::SeqCst)
    }

    /// Sweeps that stopped on an error.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Records deleted so far.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Times an old-enough record was kept (a record kept by several sweeps counts each time).
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::SeqCst)
    }
}

/// The background sweep: every [`Retention::sweep_every`] (the first one after one interval),
/// until [`RetentionTask::shutdown`] or drop.
#[derive(Debug)]
pub struct RetentionTask {
    stop: watch::Sender<bool>,
    /// `None` once [`RetentionTask::shutdown`] took it.
    task: Option<JoinHandle<()>>,
    totals: Arc<RetentionTotals>,
}

impl RetentionTask {
    /// Starts sweeping `store`, asking `states`, deleting with `forget`; needs a tokio runtime.
    /// Each sweep logs its counts (`info` when it deleted or kept something, `warn` when it
    /// failed).
    pub fn spawn<S, L, F>(store: S, states: L, forget: F, retention: Retention) -> Self
    where
        S: BarrierStore + 'static,
        L: SagaStates + 'static,
        F: Forget<S> + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let totals = Arc::new(RetentionTotals::default());
        let counts = totals.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(retention.sweep_every) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                let outcome = tokio::select! {
                    outcome = sweep(&store, &states, &forget, &retention, unix_millis()) => outcome,
                    _ = stopped.wait_for(|stop| *stop) => return,
                };
                match outcome {
                    Ok(report) => {
                        counts.deleted.fetch_add(report.deleted, Ordering::SeqCst);
                        counts.kept.fetch_add(report.kept, Ordering::SeqCst);
                        if report.deleted + report.kept > 0 {
                            tracing::info!(
                                deleted = report.deleted,
                                kept = report.kept,
                                lookups = report.lookups,
                                min_age_secs = retention.min_age.as_secs(),
                                "retention sweep: deleted the barrier records of settled sagas"
                            );
                        }
                    }
                    Err(e) => {
                        counts.failed.fetch_add(1, Ordering::SeqCst);
                        tracing::warn!(error = %e, "retention sweep stopped; records kept, next sweep tries again");
                    }
                }
                counts.sweeps.fetch_add(1, Ordering::SeqCst);
            }
        });
        RetentionTask {
            stop,
            task: Some(task),
            totals,
        }
    }

    /// What the sweeps did so far.
    pub fn totals(&self) -> &RetentionTotals {
        &self.totals
    }

    /// Stops sweeping: a sweep in progress stops at its next wait (a batch's transaction is
    /// never cut in half). Returns once the task has ended.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RetentionTask {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(all(test, feature = "sled"))]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use sagas::wire::{BranchRequest, Phase};
    use serde_json::{Value, json};

    use super::*;
    use crate::input::BranchInput;
    use crate::reply::BranchReply;
    use crate::sled_store::{BARRIER_TREE, SledStore, SledTx};
    use crate::{Barrier, Rejection};

    const HOUR: u64 = 3_600_000;

    /// A coordinator that answers from a table, or fails; it remembers what it was asked.
    #[derive(Default)]
    struct FakeCoordinator {
        states: BTreeMap<String, ReportedState>,
        fail: bool,
        asked: Mutex<Vec<Vec<String>>>,
    }

    impl FakeCoordinator {
        fn answering(states: &[(&str, ReportedState)]) -> Self {
            FakeCoordinator {
                states: states.iter().map(|(id, s)| (id.to_string(), *s)).collect(),
                ..FakeCoordinator::default()
            }
        }

        fn asked(&self) -> Vec<Vec<String>> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl SagaStates for FakeCoordinator {
        async fn states(
            &self,
            ids: &[String],
        ) -> Result<BTreeMap<String, ReportedState>, LookupError> {
            self.asked.lock().unwrap().push(ids.to_vec());
            if self.fail {
                // What a coordinator without the endpoint answers: a 404 for the request is
                // NOT "every saga unknown".
                return Err(sagas::ClientError::Api {
                    status: 404,
                    code: "not_found".into(),
                    message: "no such route".into(),
                }
                .into());
            }
            Ok(ids
                .iter()
                .filter_map(|id| self.states.get(id).map(|s| (id.clone(), *s)))
                .collect())
        }
    }

    fn barrier() -> Barrier<SledStore> {
        let db = sled::Config::new().temporary(true).open().unwrap();
        Barrier::new(SledStore::open(&db, "business").unwrap())
    }

    fn req(saga_id: &str, step: &str, phase: Phase) -> BranchRequest {
        BranchRequest {
            saga_id: saga_id.into(),
            step: step.into(),
            phase,
            input: json!({"order": format!("order-of-{saga_id}")}).into(),
        }
    }

    /// The forward phase: writes `order-of-{saga}` in the business tree.
    fn create(tx: &SledTx<'_>, input: BranchInput<'_>) -> Result<Value, TxError> {
        let input: Value = input.parse()?;
        tx.store(input["order"].as_str().unwrap(), &"created")?;
        Ok(json!({"created": true}))
    }

    /// Deletes the business record the forward phase wrote, as the example order does.
    fn forget_order(
        tx: &SledTx<'_>,
        _: &AgedBranch,
        record: &BarrierRecord,
    ) -> Result<(), TxError> {
        if let Some(input) = &record.forward_input {
            let input: Value = serde_json::from_str(input.get()).unwrap();
            tx.remove(input["order"].as_str().unwrap())?;
        }
        Ok(())
    }

    async fn run_forward(barrier: &Barrier<SledStore>, saga_id: &str) -> BranchReply {
        barrier
            .forward(&req(saga_id, "create", Phase::Action), create)
            .await
            .unwrap()
    }

    fn has_order(barrier: &Barrier<SledStore>, saga_id: &str) -> bool {
        let key = format!("order-of-{saga_id}");
        barrier.store().business().get(key).unwrap().is_some()
    }

    fn has_record(barrier: &Barrier<SledStore>, saga_id: &str) -> bool {
        barrier.record(saga_id, "create").unwrap().is_some()
    }

    fn retention() -> Retention {
        Retention::default()
    }

    /// One sweep with the default retention, an hour (and a second) from now: every record
    /// written so far is old enough.
    async fn sweep_an_hour_later<F: Forget<SledStore>>(
        barrier: &Barrier<SledStore>,
        coordinator: &FakeCoordinator,
        forget: &F,
    ) -> Result<SweepReport, SweepError> {
        let now = unix_millis() + HOUR + 1_000;
        sweep(barrier.store(), coordinator, forget, &retention(), now).await
    }

    /// The rule: old records of committed, aborted and unknown sagas go (with their business
    /// records); those of stuck, running and compensating sagas, and of sagas the answer
    /// leaves out, stay.
    #[tokio::test]
    async fn settled_and_unknown_sagas_are_forgotten_the_others_kept() {
        let barrier = barrier();
        let sagas = [
            ("committed", Some(ReportedState::Committed)),
            ("aborted", Some(ReportedState::Aborted)),
            ("unknown", Some(ReportedState::Unknown)),
            ("stuck", Some(ReportedState::Stuck)),
            ("running", Some(ReportedState::Running)),
            ("compensating", Some(ReportedState::Compensating)),
            ("left-out", None),
        ];
        for (saga, _) in sagas {
            run_forward(&barrier, saga).await;
        }
        let answers: Vec<(&str, ReportedState)> = sagas
            .iter()
            .filter_map(|(id, s)| s.map(|s| (*id, s)))
            .collect();
        let coordinator = FakeCoordinator::answering(&answers);
        let report = sweep_an_hour_later(&barrier, &coordinator, &forget_order)
            .await
            .unwrap();
        assert_eq!(
            report,
            SweepReport {
                deleted: 3,
                kept: 4,
                lookups: 1
            }
        );
        for (saga, state) in sagas {
            let gone = state.is_some_and(ReportedState::is_settled);
            assert_eq!(has_record(&barrier, saga), !gone, "record of {saga}");
            assert_eq!(has_order(&barrier, saga), !gone, "order of {saga}");
        }
        // Asked once per saga, in one batch.
        assert_eq!(coordinator.asked().len(), 1);
        assert_eq!(coordinator.asked()[0].len(), sagas.len());
    }

    #[tokio::test]
    async fn records_younger_than_the_minimum_age_are_not_even_asked_about() {
        let barrier = barrier();
        let written = unix_millis();
        run_forward(&barrier, "committed").await;
        let coordinator = FakeCoordinator::answering(&[("committed", ReportedState::Committed)]);
        // One second short of the minimum age.
        let now = written + HOUR - 1_000;
        let report = sweep(
            barrier.store(),
            &coordinator,
            &forget_order,
            &retention(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(report, SweepReport::default());
        assert!(coordinator.asked().is_empty());
        assert!(has_record(&barrier, "committed") && has_order(&barrier, "committed"));
    }

    /// No answer (here a `404` for the whole request) is never taken for "unknown".
    #[tokio::test]
    async fn a_failed_lookup_keeps_everything() {
        let barrier = barrier();
        run_forward(&barrier, "s1").await;
        let coordinator = FakeCoordinator {
            fail: true,
            ..FakeCoordinator::answering(&[("s1", ReportedState::Committed)])
        };
        let err = sweep_an_hour_later(&barrier, &coordinator, &forget_order)
            .await
            .unwrap_err();
        assert!(matches!(err, SweepError::Lookup(_)), "{err}");
        assert!(has_record(&barrier, "s1") && has_order(&barrier, "s1"));
    }

    /// A stuck saga's record survives the sweep, so a duplicate forward (an operator's retry
    /// days later) still gets the stored reply and the business is not applied again.
    #[tokio::test]
    async fn a_duplicate_after_a_sweep_that_kept_the_record_replays_the_stored_reply() {
        let barrier = barrier();
        let applied = AtomicUsize::new(0);
        let counted = |tx: &SledTx<'_>, input: BranchInput<'_>| {
            applied.fetch_add(1, Ordering::SeqCst);
            create(tx, input)
        };
        let request = req("stuck", "create", Phase::Action);
        let first = barrier.forward(&request, counted).await.unwrap();
        let coordinator = FakeCoordinator::answering(&[("stuck", ReportedState::Stuck)]);
        let report = sweep_an_hour_later(&barrier, &coordinator, &forget_order)
            .await
            .unwrap();
        assert_eq!((report.deleted, report.kept), (0, 1));
        let again = barrier.forward(&request, counted).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        // And the late undo after it finds the forward: it undoes, not a null compensation.
        let undo = barrier
            .undo(&req("stuck", "create", Phase::Compensate), |_, _| {
                Ok(json!({"undone": true}))
            })
            .await
            .unwrap();
        assert_eq!(undo, BranchReply::ok(json!({"undone": true})));
    }

    /// Every call that finds a record stamps it again: a duplicate makes an old record young.
    #[tokio::test]
    async fn a_duplicate_call_makes_the_record_young_again() {
        let barrier = barrier();
        run_forward(&barrier, "s1").await;
        let first = barrier
            .record("s1", "create")
            .unwrap()
            .unwrap()
            .written_at
            .unwrap();
        // Long enough for the clock to move on.
        let later = loop {
            run_forward(&barrier, "s1").await;
            let t = barrier
                .record("s1", "create")
                .unwrap()
                .unwrap()
                .written_at
                .unwrap();
            if t > first {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let coordinator = FakeCoordinator::answering(&[("s1", ReportedState::Committed)]);
        // Old enough by the first write (cutoff `first + 1`), not by the duplicate's
        // (`later >= first + 1` is not before the cutoff).
        let now = first + HOUR + 1;
        let report = sweep(
            barrier.store(),
            &coordinator,
            &forget_order,
            &retention(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(report.deleted, 0);
        assert!(has_record(&barrier, "s1"));
        // Exactly one index entry: the old one went when the record was stamped again.
        assert_eq!(
            barrier.store().aged(u64::MAX, None, 10).unwrap(),
            vec![AgedBranch {
                saga_id: "s1".into(),
                step: "create".into(),
                written_at: later
            }]
        );
    }

    #[tokio::test]
    async fn sweeps_page_through_every_old_record_in_batches() {
        let barrier = barrier();
        for i in 0..5 {
            run_forward(&barrier, &format!("s{i}")).await;
            // A second step of the same saga.
            barrier
                .forward(&req(&format!("s{i}"), "other", Phase::Action), |_, _| {
                    Ok(json!({}))
                })
                .await
                .unwrap();
        }
        let states: Vec<(String, ReportedState)> = (0..5)
            .map(|i| (format!("s{i}"), ReportedState::Committed))
            .collect();
        let states: Vec<(&str, ReportedState)> =
            states.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let coordinator = FakeCoordinator::answering(&states);
        let retention = Retention {
            batch_size: 3,
            ..Retention::default()
        };
        let now = unix_millis() + HOUR + 1_000;
        let report = sweep(
            barrier.store(),
            &coordinator,
            &forget_order,
            &retention,
            now,
        )
        .await
        .unwrap();
        assert_eq!((report.deleted, report.kept, report.lookups), (10, 0, 4));
        assert!(coordinator.asked().iter().all(|ids| ids.len() <= 3));
        assert!(
            barrier
                .store()
                .aged(u64::MAX, None, 100)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            barrier.store().db().open_tree(BARRIER_TREE).unwrap().len(),
            0
        );
    }

    /// The business deletion runs in the sweep's transaction: when it fails, the barrier
    /// record stays too.
    #[tokio::test]
    async fn a_failing_forget_rolls_the_batch_back() {
        let barrier = barrier();
        run_forward(&barrier, "s1").await;
        let coordinator = FakeCoordinator::answering(&[("s1", ReportedState::Committed)]);
        let failing = |tx: &SledTx<'_>, branch: &AgedBranch, record: &BarrierRecord| {
            forget_order(tx, branch, record)?;
            Err(Rejection::invariant("cannot forget").into())
        };
        let err = sweep_an_hour_later(&barrier, &coordinator, &failing)
            .await
            .unwrap_err();
        assert!(matches!(err, SweepError::Delete(_)), "{err}");
        assert!(has_record(&barrier, "s1") && has_order(&barrier, "s1"));
    }

    /// A record stored before records carried their time ages from when the store first sees
    /// it, never from an older time.
    #[tokio::test]
    async fn records_without_a_time_age_from_when_they_are_first_seen() {
        let barrier = barrier();
        run_forward(&barrier, "new").await;
        // Written by an older version: the same record without `written_at`.
        let tree = barrier.store().db().open_tree(BARRIER_TREE).unwrap();
        let (key, bytes) = tree.iter().next().unwrap().unwrap();
        let mut legacy: Value = serde_json::from_slice(&bytes).unwrap();
        legacy.as_object_mut().unwrap().remove("written_at");
        let mut legacy_key = key.to_vec();
        let at = legacy_key.len() - "create".len() - "new".len();
        legacy_key.splice(at..at + 3, b"old".iter().copied());
        tree.insert(&legacy_key, serde_json::to_vec(&legacy).unwrap())
            .unwrap();
        assert_eq!(
            barrier.record("old", "create").unwrap().unwrap().written_at,
            None
        );

        let first_seen = unix_millis();
        let listed = barrier.store().aged(u64::MAX, None, 10).unwrap();
        let old = listed.iter().find(|b| b.saga_id == "old").expect("indexed");
        assert!(old.written_at >= first_seen, "{old:?}");
        assert_eq!(
            barrier.record("old", "create").unwrap().unwrap().written_at,
            Some(old.written_at)
        );
        // Not old enough an hour after its own (unknown) writing, only after first sight.
        let coordinator = FakeCoordinator::answering(&[("old", ReportedState::Committed)]);
        let report = sweep(
            barrier.store(),
            &coordinator,
            &(),
            &retention(),
            first_seen + 10,
        )
        .await
        .unwrap();
        assert_eq!(report.deleted, 0);
        let report = sweep(
            barrier.store(),
            &coordinator,
            &(),
            &retention(),
            old.written_at + HOUR + 1,
        )
        .await
        .unwrap();
        assert_eq!(report.deleted, 1);
        assert!(!has_record(&barrier, "old"));
    }

    #[tokio::test]
    async fn the_background_task_sweeps_until_shut_down() {
        let barrier = barrier();
        run_forward(&barrier, "s1").await;
        let coordinator = FakeCoordinator::answering(&[("s1", ReportedState::Committed)]);
        let retention = Retention {
            min_age: Duration::ZERO,
            sweep_every: Duration::from_millis(10),
            batch_size: 10,
        };
        let task = RetentionTask::spawn(barrier.store().clone(), coordinator, (), retention);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while task.totals().deleted() < 1 {
            assert!(tokio::time::Instant::now() < deadline, "never swept");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!has_record(&barrier, "s1"));
        task.shutdown().await;
    }

    #[test]
    fn retention_is_configured_in_seconds_and_checked() {
        let parsed: Retention = serde_json::from_str(r#"{"min_age_secs": 7200}"#).unwrap();
        assert_eq!(parsed.min_age, Duration::from_secs(7200));
        assert_eq!(parsed.sweep_every, Retention::default().sweep_every);
        assert_eq!(
            serde_json::to_value(Retention::default()).unwrap(),
            json!({"min_age_secs": 3600, "sweep_every_secs": 60, "batch_size": 500})
        );
        assert!(serde_json::from_str::<Retention>(r#"{"min_age": 1}"#).is_err());
        let too_big = Retention {
            batch_size: MAX_STATE_IDS + 1,
            ..Retention::default()
        };
        assert_eq!(
            too_big.validate(),
            Err(RetentionError::BatchSize(MAX_STATE_IDS + 1))
        );
        assert!(Retention::default().validate().is_ok());
    }
}
