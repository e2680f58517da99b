//! The chaos run: a cluster behind fault proxies, a steady `place_order` load from many
//! clients, SIGKILLs and network faults for a configurable period, then the invariant check.
//!
//! [`run`] does, in order:
//!
//! 1. starts one [`FaultProxy`] per participant and the cluster, each participant advertising
//!    its proxy so the coordinator's branch calls go through it; the coordinator loads a copy
//!    of `place_order` whose steps have a 1 s call timeout and a retry budget that outlasts the
//!    fault period (see [`WORKFLOW_YAML`]), so blackholed calls resolve quickly and a saga
//!    only turns `stuck` if something is really wrong;
//! 2. funds the accounts and starts a [`BalanceWatch`];
//! 3. for [`ChaosConfig::duration`]: `clients` tasks submit sagas one after another (about one
//!    in seven asks for more than any account ever holds and must abort); a transport error,
//!    `429` or `5xx` makes the client resubmit the same body with the same `Idempotency-Key`;
//!    a fault scheduler gives every proxy a new fault mix every 0.5 to 3 s; a killer SIGKILLs a
//!    process every `kill_interval` (± 50 %), in shuffled rounds over the four processes so
//!    every one dies as often as the others, keeps it down 50 ms to 1 s and restarts it on its
//!    own port and data directory;
//! 4. stops the faults, waits for the clients, then for every saga to settle (the time this
//!    takes is the time to quiescence), and checks the books ([`crate::books`]) plus: sagas that
//!    had to abort did, no service panicked, the watch never saw a negative amount.
//!
//! Everything random (accounts, amounts, kill moments and victims, downtimes, fault mixes,
//! proxies' per-connection draws) comes from [`ChaosConfig::seed`]; thread scheduling and
//! timing still vary between runs, so a seed reproduces the schedule, not every interleaving.
//!
//! **PostgreSQL mode** ([`ChaosConfig::store`] [`CoordinatorStore::Postgres`],
//! [`ChaosConfig::coordinators`] instances): the coordinators share one database on a
//! throwaway server; each is a victim of the kill schedule like every participant (the
//! others claim its sagas once its lease expires; it comes back as a new instance); client
//! `i` prefers instance `i mod n` and resubmits or polls through the next ones when it does
//! not answer. The same checks apply at the end; the report also counts the calls each
//! instance made (the proxies tell them apart by source address).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sagas::api::{SagaState, SagaView};
use serde::Serialize;

use crate::books::{Books, SagaRecord, Violation};
use crate::cluster::{Cluster, ClusterOptions, CoordinatorStore, Participant};
use crate::failover::FailoverClient;
use crate::ports;
use crate::proxy::{FaultMix, FaultProxy, ProxyStats};
use crate::watch::BalanceWatch;
use crate::workload::{SagaPlan, await_settled, submit_counting_retries};

/// The workflow the chaos run loads instead of `sagas/place_order.yaml`: the same steps, with
/// a 1 s per-call timeout (the participants register the default 5 s) and a settle budget of
/// 500 attempts, so confirm/cancel/compensate keep retrying through the fault period.
pub const WORKFLOW_YAML: &str = "\
# place_order for the chaos harness: same steps as sagas/place_order.yaml, short call timeout.
steps:
  - name: create_order
    participant: order
    action: create
    timeout_ms: 1000
    retry: {initial_ms: 50, max_ms: 1000, multiplier: 2.0, max_attempts: 4, settle_max_attempts: 500}
  - name: freeze_funds
    participant: wallet
    action: freeze
    timeout_ms: 1000
    retry: {initial_ms: 50, max_ms: 1000, multiplier: 2.0, max_attempts: 4, settle_max_attempts: 500}
  - name: award_points
    participant: points
    action: award
    timeout_ms: 1000
    retry: {initial_ms: 50, max_ms: 1000, multiplier: 2.0, max_attempts: 4, settle_max_attempts: 500}
";

/// What each account is funded with.
pub const FUNDING: u64 = 200_000;
/// Largest amount of an ordinary saga.
const MAX_AMOUNT: u64 = 500;
/// Share of sagas that ask for more than [`FUNDING`] and must abort.
const MUST_ABORT_RATE: f64 = 1.0 / 7.0;
/// How long a submission waits for the outcome (`wait_ms`).
const SUBMIT_WAIT_MS: u64 = 2_000;
/// How long a client polls one saga during the run before it moves on.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

/// Which network faults the proxies inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultProfile {
    /// Calm phases, latency, resets, blackholes, dropped replies and mixtures of them.
    Mixed,
    /// Dropped replies most of the time (with a few resets) at the wallet and points: every
    /// such call was delivered and is retried, the case a participant without a barrier gets
    /// wrong. The order participant's calls pass: its business refuses a second order with
    /// the same id by itself, so dropping its replies would only abort sagas before they
    /// reach the money and the points.
    DropReplies,
    /// No network faults (kills only).
    None,
}

/// One chaos run's settings.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seeds every random choice (see the module docs).
    pub seed: u64,
    /// The fault period: kills and network faults happen during it, then stop.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Mean time between two kills; zero disables kills.
    pub kill_interval: Duration,
    /// How long sagas may take to settle once faults stop.
    pub settle_timeout: Duration,
    /// Wallet accounts the sagas spread over, each funded with [`FUNDING`].
    pub accounts: usize,
    /// Which network faults the proxies inject.
    pub profile: FaultProfile,
    /// Start the participants with `--unsafe-no-barrier` (sanity check of the checker).
    pub unsafe_no_barrier: bool,
    /// Print a progress line on stderr every second. Off by default: written straight to
    /// stderr, it would get past a test harness's output capture; the `chaos` binary turns it on.
    pub progress: bool,
    /// Mean pause of a client between two sagas (uniform in 0..2x); zero for none.
    pub think_time: Duration,
    /// Keep the processes' data directories and logs when the run finds violations (off for
    /// the sanity check, which fails on purpose).
    pub keep_dirs_on_failure: bool,
    /// Where the coordinators keep their log: sled (one coordinator) or a database on the
    /// process's throwaway PostgreSQL server.
    pub store: CoordinatorStore,
    /// Coordinator processes; more than one needs PostgreSQL.
    pub coordinators: usize,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            seed: 1,
            duration: Duration::from_secs(60),
            clients: 16,
            kill_interval: Duration::from_secs(3),
            settle_timeout: Duration::from_secs(120),
            accounts: 8,
            profile: FaultProfile::Mixed,
            unsafe_no_barrier: false,
            progress: false,
            think_time: Duration::ZERO,
            keep_dirs_on_failure: true,
            store: CoordinatorStore::Sled,
            coordinators: 1,
        }
    }
}

/// A process the kill schedule may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// Coordinator instance `i`.
    Coordinator(usize),
    /// A participant.
    Participant(Participant),
}

/// Every process of `cluster`, coordinators first, with their names.
fn victims(cluster: &Cluster) -> Vec<(Victim, String)> {
    let coordinators = cluster.coordinators().iter().map(|c| {
        (
            Victim::Coordinator(c.index()),
            c.process().name().to_string(),
        )
    });
    let participants = Participant::ALL
        .into_iter()
        .map(|p| (Victim::Participant(p), p.name().to_string()));
    coordinators.chain(participants).collect()
}

/// How the store is described in the report.
fn describe_store(config: &ChaosConfig) -> String {
    match &config.store {
        CoordinatorStore::Sled => "sled, 1 coordinator".into(),
        CoordinatorStore::Postgres(postgres) => format!(
            "PostgreSQL, {} coordinator(s), lease {}",
            config.coordinators.max(1),
            postgres
                .lease
                .map_or_else(|| "the default".into(), |l| format!("{} ms", l.as_millis()))
        ),
    }
}

/// What a run did and found. Serializes to the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// No violation.
    pub passed: bool,
    /// [`ChaosConfig::seed`].
    pub seed: u64,
    /// [`ChaosConfig::profile`].
    pub profile: FaultProfile,
    /// [`ChaosConfig::unsafe_no_barrier`].
    pub unsafe_no_barrier: bool,
    /// [`ChaosConfig::clients`].
    pub clients: usize,
    /// [`ChaosConfig::think_time`].
    pub think_time_ms: u64,
    /// [`ChaosConfig::duration`].
    pub fault_period_secs: f64,
    /// [`ChaosConfig::kill_interval`].
    pub kill_interval_ms: u64,
    /// [`ChaosConfig::store`] and [`ChaosConfig::coordinators`], in words.
    pub store: String,
    /// The whole run, start-up to report.
    pub elapsed_secs: f64,
    /// Sagas the clients started (each with its own key).
    pub sagas: u64,
    /// Sagas the coordinator acknowledged (got an id).
    pub accepted: u64,
    /// Sagas found committed at the end.
    pub committed: usize,
    /// Sagas found aborted at the end.
    pub aborted: usize,
    /// Accepted but neither committed nor aborted at the end.
    pub unsettled: usize,
    /// Of the aborted ones, how many asked for more than any account holds.
    pub must_abort: u64,
    /// Aborted sagas by why they rolled back: their error up to the first `:` (`step
    /// freeze_funds was rejected`, `circuit open for participant order`, ...).
    pub abort_reasons: BTreeMap<String, u64>,
    /// Resubmissions with the same key after a transport error, `429` or `5xx`.
    pub resubmissions: u64,
    /// SIGKILLs per process name (`coordinator` or `coordinator-0`, ..., `wallet`, ...).
    pub kills: BTreeMap<String, u64>,
    /// With several coordinators: requests the proxies saw from each instance (by its
    /// `--outbound-address`), summed over the participants.
    pub calls_by_coordinator: BTreeMap<String, u64>,
    /// Fault mixes set on the proxies (one per proxy per phase).
    pub fault_phases: u64,
    /// Per participant: what its proxy did.
    pub network: BTreeMap<String, ProxyStats>,
    /// The sum over the proxies.
    pub network_total: ProxyStats,
    /// From the end of the faults until the last saga settled; `None` if some never did.
    pub time_to_quiescence_secs: Option<f64>,
    /// Times the balance watch read the wallet.
    pub watch_polls: u64,
    /// Every broken invariant, in words.
    pub violations: Vec<String>,
    /// Extra context for the violations (suspect sagas, their steps).
    pub details: Vec<String>,
}

impl ChaosReport {
    /// Every invariant held.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// SIGKILLs over all services.
    pub fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kills = self
            .kills
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let n = &self.network_total;
        let quiescence = self
            .time_to_quiescence_secs
            .map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"));
        writeln!(
            f,
            "chaos run: seed {}, {} clients, {:.0} s of faults ({:?}), kill every ~{} ms{}",
            self.seed,
            self.clients,
            self.fault_period_secs,
            self.profile,
            self.kill_interval_ms,
            if self.unsafe_no_barrier {
                ", participants WITHOUT barrier"
            } else {
                ""
            }
        )?;
        let mut rows: Vec<(&str, String)> = vec![
            ("store", self.store.clone()),
            ("sagas", self.sagas.to_string()),
            ("  accepted", self.accepted.to_string()),
            ("  committed", self.committed.to_string()),
            (
                "  aborted",
                format!("{} ({} asked for too much)", self.aborted, self.must_abort),
            ),
            ("  unsettled", self.unsettled.to_string()),
            ("  aborted because", {
                let mut reasons: Vec<(&String, &u64)> = self.abort_reasons.iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(a.1));
                reasons
                    .iter()
                    .map(|(why, n)| format!("{why} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            ("  resubmissions", self.resubmissions.to_string()),
            (
                "kills (SIGKILL)",
                format!("{} ({kills})", self.total_kills()),
            ),
            (
                "network faults",
                format!(
                    "{} in {} phases: latency {}, reset {}, blackhole {}, reply dropped {}",
                    n.faults(),
                    self.fault_phases,
                    n.latency,
                    n.reset,
                    n.blackhole,
                    n.reply_dropped
                ),
            ),
            (
                "  proxied requests",
                format!(
                    "{} on {} connections ({} passed; {} connections refused while a \
                     participant was down)",
                    n.requests, n.connections, n.passed, n.upstream_refused
                ),
            ),
            ("time to quiescence", quiescence),
        ];
        if !self.calls_by_coordinator.is_empty() {
            let calls = self
                .calls_by_coordinator
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push(("  by coordinator", calls));
        }
        rows.extend([
            ("elapsed", format!("{:.1} s", self.elapsed_secs)),
            ("balance samples", self.watch_polls.to_string()),
            ("violations", self.violations.len().to_string()),
        ]);
        for (name, value) in rows {
            writeln!(f, "  {name:<20} {value}")?;
        }
        for violation in self.violations.iter().take(50) {
            writeln!(f, "  - {violation}")?;
        }
        if self.violations.len() > 50 {
            writeln!(f, "  ... and {} more", self.violations.len() - 50)?;
        }
        for detail in self.details.iter().take(20) {
            writeln!(f, "    {detail}")?;
        }
        write!(
            f,
            "{}",
            if self.passed() {
                "PASS: every invariant holds"
            } else {
                "FAIL: invariants violated"
            }
        )
    }
}

/// Live counters shared by the clients, the killer, the fault scheduler and the progress line.
#[derive(Debug, Default)]
struct Live {
    started: AtomicU64,
    accepted: AtomicU64,
    committed: AtomicU64,
    aborted: AtomicU64,
    resubmissions: AtomicU64,
    /// Per victim, in the order of [`victims`].
    kills: Vec<AtomicU64>,
    fault_phases: AtomicU64,
    faults_over: AtomicBool,
}

/// Runs one chaos run to the end and returns its report. Errors only when the harness cannot
/// do its job (a process does not come back up); broken invariants are in the report.
pub async fn run(config: ChaosConfig) -> anyhow::Result<ChaosReport> {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let started_at = Instant::now();
    let workflows = tempfile::Builder::new()
        .prefix("chaos-workflows-")
        .tempdir()
        .context("cannot create the workflow directory")?;
    std::fs::write(workflows.path().join("place_order.yaml"), WORKFLOW_YAML)?;

    let participant_addrs = ports::free_addrs(3)?;
    let mut proxies = Vec::with_capacity(3);
    for (i, addr) in participant_addrs.iter().enumerate() {
        proxies.push(FaultProxy::start(*addr, config.seed.wrapping_add(1000 + i as u64)).await?);
    }
    let proxies = Arc::new(proxies);
    let participant_args = |i: usize| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--advertise-url".into(), proxies[i].url().into()];
        if config.unsafe_no_barrier {
            args.push("--unsafe-no-barrier".into());
        }
        args
    };
    let options = ClusterOptions {
        wallet_args: participant_args(0),
        order_args: participant_args(1),
        points_args: participant_args(2),
        workflows_dir: Some(workflows.path().to_path_buf()),
        participant_addrs: Some([
            participant_addrs[0],
            participant_addrs[1],
            participant_addrs[2],
        ]),
        coordinators: config.coordinators.max(1),
        store: config.store.clone(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(options).await?;
    let victims = victims(&cluster);

    let mut books = Books::new();
    let accounts: Vec<String> = (0..config.accounts).map(|i| format!("acct-{i}")).collect();
    for account in &accounts {
        books.fund(cluster.wallet(), account, FUNDING).await?;
    }
    let watch = BalanceWatch::start(cluster.wallet().clone(), Duration::from_millis(50));

    let live = Arc::new(Live {
        kills: victims.iter().map(|_| AtomicU64::new(0)).collect(),
        ..Live::default()
    });
    let records = Arc::new(Mutex::new(Vec::<SagaRecord>::new()));
    let faults_start = Instant::now();
    let faults_end = faults_start + config.duration;
    let hard_deadline = faults_end + config.settle_timeout;

    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut client_tasks = Vec::with_capacity(config.clients);
    for idx in 0..config.clients {
        let rng = StdRng::seed_from_u64(config.seed.wrapping_mul(31).wrapping_add(idx as u64));
        client_tasks.push(tokio::spawn(client_loop(
            idx,
            rng,
            cluster.failover_client_with(&http, idx),
            accounts.clone(),
            live.clone(),
            records.clone(),
            faults_end,
            hard_deadline,
            config.think_time,
        )));
    }
    let scheduler = tokio::spawn(fault_schedule(
        config.profile,
        StdRng::seed_from_u64(config.seed ^ 0x6661_756c_7473),
        proxies.clone(),
        live.clone(),
        faults_end,
    ));
    let progress = config.progress.then(|| {
        tokio::spawn(progress_line(
            live.clone(),
            victims.iter().map(|(_, name)| name.clone()).collect(),
            proxies.clone(),
            faults_start,
            config.duration,
        ))
    });

    let kill_result = kill_schedule(
        &mut cluster,
        &victims,
        StdRng::seed_from_u64(config.seed ^ 0x6b69_6c6c),
        config.kill_interval,
        &live,
        faults_end,
    )
    .await;
    // Faults stop: calm proxies (the scheduler's last act) and every process up.
    let scheduled = scheduler.await.context("the fault scheduler panicked");
    for proxy in proxies.iter() {
        proxy.set_mix(FaultMix::PASS);
    }
    live.faults_over.store(true, Ordering::Relaxed);
    let faults_over_at = Instant::now();
    let restarted = ensure_running(&mut cluster).await;
    let kill_result = kill_result.and(scheduled).and(restarted);
    if let Err(e) = kill_result {
        if let Some(progress) = progress {
            progress.abort();
        }
        for task in &client_tasks {
            task.abort();
        }
        // Already failing with the run's own error; the watch's report would add nothing.
        let _ = watch.stop().await;
        cluster.keep_dirs();
        let tails = cluster.log_tails(40);
        return Err(e.context(format!("the chaos run could not go on\n{tails}")));
    }

    // Clients stop starting sagas at the end of the faults; let them finish what they hold.
    for task in client_tasks {
        let left =
            hard_deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
        let abort = task.abort_handle();
        match tokio::time::timeout(left, task).await {
            Err(_) => abort.abort(),
            // A client's panic is a harness bug: its share of the load would be missing.
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(_) => {}
        }
    }

    // Quiescence: every accepted saga settled.
    let records: Vec<SagaRecord> =
        std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
    let ids: Vec<String> = records.iter().filter_map(|r| r.saga_id.clone()).collect();
    let settle_client = cluster.failover_client(0);
    let settled = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let client = settle_client.clone();
            async move { await_settled(&client, &id, hard_deadline).await.ok() }
        })
        .buffer_unordered(16)
        .collect::<Vec<Option<SagaView>>>()
        .await;
    let time_to_quiescence = settled
        .iter()
        .all(|view| view.as_ref().is_some_and(|v| v.state.is_terminal()))
        .then(|| faults_over_at.elapsed());
    let abort_reasons = abort_reasons(settled.iter().flatten());
    if let Some(progress) = progress {
        progress.abort();
    }
    let watch_report = watch.stop().await?;

    // The books.
    for record in &records {
        books.record(record.plan.clone(), record.saga_id.clone());
    }
    let observed = books
        .observe(&cluster)
        .await
        .context("reading the books after the run")?;
    let audit = books.check(&observed);
    let mut violations: Vec<Violation> = audit.violations.clone();
    violations.extend(watch_report.violations.iter().cloned());
    for line in cluster.panic_lines() {
        let (service, line) = line.split_once(": ").unwrap_or(("?", &line));
        violations.push(Violation::ServicePanic {
            service: service.into(),
            line: line.into(),
        });
    }
    let details = explain(&cluster, &violations, &records).await;

    let mut network = BTreeMap::new();
    let mut network_total = ProxyStats::default();
    for (participant, proxy) in Participant::ALL.iter().zip(proxies.iter()) {
        let stats = proxy.stats();
        network_total.add(&stats);
        network.insert(participant.name().to_string(), stats);
    }
    let report = ChaosReport {
        passed: violations.is_empty(),
        seed: config.seed,
        profile: config.profile,
        unsafe_no_barrier: config.unsafe_no_barrier,
        clients: config.clients,
        think_time_ms: config.think_time.as_millis() as u64,
        fault_period_secs: config.duration.as_secs_f64(),
        kill_interval_ms: config.kill_interval.as_millis() as u64,
        store: describe_store(&config),
        elapsed_secs: started_at.elapsed().as_secs_f64(),
        sagas: live.started.load(Ordering::Relaxed),
        accepted: ids.len() as u64,
        committed: audit.committed,
        aborted: audit.aborted,
        unsettled: audit.other,
        must_abort: audit.must_abort as u64,
        abort_reasons,
        resubmissions: live.resubmissions.load(Ordering::Relaxed),
        kills: victims
            .iter()
            .zip(&live.kills)
            .map(|((_, name), k)| (name.clone(), k.load(Ordering::Relaxed)))
            .collect(),
        calls_by_coordinator: calls_by_coordinator(&cluster, &proxies),
        fault_phases: live.fault_phases.load(Ordering::Relaxed),
        network,
        network_total,
        time_to_quiescence_secs: time_to_quiescence.map(|d| d.as_secs_f64()),
        watch_polls: watch_report.polls,
        violations: violations.iter().map(ToString::to_string).collect(),
        details,
    };
    if !report.passed() && config.keep_dirs_on_failure {
        // Keep the data directories and logs of a failed run for a post-mortem.
        cluster.keep_dirs();
    }
    drop(cluster);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    idx: usize,
    mut rng: StdRng,
    client: FailoverClient,
    accounts: Vec<String>,
    live: Arc<Live>,
    records: Arc<Mutex<Vec<SagaRecord>>>,
    faults_end: Instant,
    hard_deadline: Instant,
    think_time: Duration,
) {
    let tag = format!("c{idx}");
    let mut n = 0;
    while Instant::now() < faults_end {
        if !think_time.is_zero() {
            tokio::time::sleep(think_time.mul_f64(rng.random_range(0.0..2.0))).await;
        }
        let account = &accounts[rng.random_range(0..accounts.len())];
        let amount = if rng.random_bool(MUST_ABORT_RATE) {
            FUNDING + rng.random_range(1..=1_000)
        } else {
            rng.random_range(1..=MAX_AMOUNT)
        };
        let plan = SagaPlan::new(&tag, n, account, amount, amount / 10 + 1);
        n += 1;
        live.started.fetch_add(1, Ordering::Relaxed);
        let submitted = submit_counting_retries(
            &client,
            &plan,
            Some(SUBMIT_WAIT_MS),
            hard_deadline,
            &live.resubmissions,
        )
        .await
        .inspect_err(|e| eprintln!("client {idx}: giving up: {e:#}"))
        .ok();
        let id = submitted.as_ref().map(|s| s.saga.id.clone());
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SagaRecord {
                plan: plan.clone(),
                saga_id: id.clone(),
            });
        let Some(submitted) = submitted else { continue };
        live.accepted.fetch_add(1, Ordering::Relaxed);
        let state = if submitted.saga.state.is_terminal() {
            Some(submitted.saga.state)
        } else {
            let patience = (Instant::now() + CLIENT_PATIENCE).min(hard_deadline);
            await_settled(&client, &submitted.saga.id, patience)
                .await
                .ok()
                .map(|view| view.state)
        };
        match state {
            Some(SagaState::Committed) => live.committed.fetch_add(1, Ordering::Relaxed),
            Some(SagaState::Aborted) => live.aborted.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// A test's setting from the environment variable `name` (a number), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fault mix for one phase of the proxy in front of `participant`.
fn pick_mix(profile: FaultProfile, participant: Participant, rng: &mut StdRng) -> FaultMix {
    match profile {
        FaultProfile::None => FaultMix::PASS,
        FaultProfile::DropReplies if participant == Participant::Order => FaultMix::PASS,
        FaultProfile::DropReplies => FaultMix {
            drop_reply_rate: rng.random_range(0.3..0.6),
            reset_rate: 0.05,
            ..FaultMix::PASS
        },
        FaultProfile::Mixed => match rng.random_range(0..6) {
            0 => FaultMix::PASS,
            1 => FaultMix {
                latency_rate: 0.5,
                latency_ms: rng.random_range(50..400),
                ..FaultMix::PASS
            },
            2 => FaultMix {
                reset_rate: rng.random_range(0.05..0.25),
                ..FaultMix::PASS
            },
            3 => FaultMix {
                blackhole_rate: rng.random_range(0.05..0.15),
                ..FaultMix::PASS
            },
            4 => FaultMix {
                drop_reply_rate: rng.random_range(0.05..0.3),
                ..FaultMix::PASS
            },
            _ => FaultMix {
                latency_rate: 0.2,
                latency_ms: 100,
                reset_rate: 0.1,
                blackhole_rate: 0.05,
                drop_reply_rate: 0.1,
            },
        },
    }
}

async fn fault_schedule(
    profile: FaultProfile,
    mut rng: StdRng,
    proxies: Arc<Vec<FaultProxy>>,
    live: Arc<Live>,
    faults_end: Instant,
) {
    while Instant::now() < faults_end {
        for (participant, proxy) in Participant::ALL.into_iter().zip(proxies.iter()) {
            proxy.set_mix(pick_mix(profile, participant, &mut rng));
            live.fault_phases.fetch_add(1, Ordering::Relaxed);
        }
        let phase = Duration::from_millis(rng.random_range(500..3_000));
        let left = faults_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(phase.min(left)).await;
    }
    for proxy in proxies.iter() {
        proxy.set_mix(FaultMix::PASS);
    }
}

/// SIGKILLs a process every `interval` (± 50 %) in shuffled rounds over every process, keeps
/// it down 50 ms to 1 s and restarts it, until `faults_end`.
async fn kill_schedule(
    cluster: &mut Cluster,
    victims: &[(Victim, String)],
    mut rng: StdRng,
    interval: Duration,
    live: &Live,
    faults_end: Instant,
) -> anyhow::Result<()> {
    if interval.is_zero() {
        tokio::time::sleep_until(faults_end.into()).await;
        return Ok(());
    }
    let mut round: Vec<usize> = Vec::new();
    loop {
        let wait = interval.mul_f64(rng.random_range(0.5..1.5));
        let downtime = Duration::from_millis(rng.random_range(50..1_000));
        if round.is_empty() {
            round = (0..victims.len()).collect();
            round.shuffle(&mut rng);
        }
        let index = round.pop().expect("refilled above");
        if Instant::now() + wait >= faults_end {
            tokio::time::sleep_until(faults_end.into()).await;
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        let (victim, name) = &victims[index];
        match *victim {
            Victim::Coordinator(i) => cluster.coordinator_mut(i).kill()?,
            Victim::Participant(p) => cluster.kill_participant(p)?,
        }
        live.kills[index].fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(downtime).await;
        match *victim {
            Victim::Coordinator(i) => cluster.coordinator_mut(i).restart().await,
            Victim::Participant(p) => cluster.restart_participant(p).await,
        }
        .with_context(|| format!("restarting {name} after a SIGKILL"))?;
    }
}

/// Restarts any process that is not running (none should be: the killer restarts its victim).
async fn ensure_running(cluster: &mut Cluster) -> anyhow::Result<()> {
    for i in 0..cluster.coordinator_count() {
        if !cluster.coordinator_mut(i).is_running() {
            cluster.coordinator_mut(i).restart().await?;
        }
    }
    for p in Participant::ALL {
        if !cluster.participant_running(p) {
            cluster.restart_participant(p).await?;
        }
    }
    Ok(())
}

/// Aborted sagas counted by their error up to the first `:`, the part that does not depend on
/// the saga.
fn abort_reasons<'a>(views: impl Iterator<Item = &'a SagaView>) -> BTreeMap<String, u64> {
    let mut reasons = BTreeMap::new();
    for view in views.filter(|v| v.state == SagaState::Aborted) {
        let error = view.error.as_deref().unwrap_or("no error recorded");
        let why = error.split(':').next().unwrap_or(error).trim().to_string();
        *reasons.entry(why).or_default() += 1;
    }
    reasons
}

/// Requests from each coordinator instance, summed over the proxies (several instances only).
fn calls_by_coordinator(cluster: &Cluster, proxies: &[FaultProxy]) -> BTreeMap<String, u64> {
    if cluster.coordinator_count() < 2 {
        return BTreeMap::new();
    }
    cluster
        .coordinators()
        .iter()
        .filter_map(|c| {
            let ip = c.outbound_address()?;
            let requests = proxies.iter().map(|p| p.source(ip).requests).sum();
            Some((c.process().name().to_string(), requests))
        })
        .collect()
}

async fn progress_line(
    live: Arc<Live>,
    names: Vec<String>,
    proxies: Arc<Vec<FaultProxy>>,
    start: Instant,
    period: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let committed = get(&live.committed);
        let aborted = get(&live.aborted);
        let kills: Vec<u64> = live.kills.iter().map(get).collect();
        // `c1 w1 o1 p1`, or `c0:1 c1:0 c2:1 w1 o1 p1` with several coordinators.
        let by_process = names
            .iter()
            .zip(&kills)
            .map(|(name, n)| match name.strip_prefix("coordinator-") {
                Some(i) => format!("c{i}:{n}"),
                None => format!("{}{n}", &name[..1]),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut net = ProxyStats::default();
        for proxy in proxies.iter() {
            net.add(&proxy.stats());
        }
        let phase = if live.faults_over.load(Ordering::Relaxed) {
            "settling".to_string()
        } else {
            format!(
                "faults {:.0}/{:.0} s",
                start.elapsed().as_secs_f64(),
                period.as_secs_f64()
            )
        };
        let mixes: Vec<String> = proxies.iter().map(|p| p.mix().label()).collect();
        let line = format!(
            "[{:>5.0}s] {phase} | sagas {} started, {} done ({committed} committed, {aborted} \
             aborted) | kills {} ({by_process}) | net faults {} | mix [{}]",
            start.elapsed().as_secs_f64(),
            get(&live.started),
            committed + aborted,
            kills.iter().sum::<u64>(),
            net.faults(),
            mixes.join(" / "),
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// For each account whose points or money do not add up, the sagas on it that retried a step
/// (a retried call after a dropped reply is where a double apply comes from).
async fn explain(
    cluster: &Cluster,
    violations: &[Violation],
    records: &[SagaRecord],
) -> Vec<String> {
    let mut accounts: Vec<&str> = violations
        .iter()
        .filter_map(|v| match v {
            Violation::Points { account, .. } | Violation::MoneyNotConserved { account, .. } => {
                Some(account.as_str())
            }
            _ => None,
        })
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut details = Vec::new();
    for account in accounts.into_iter().take(3) {
        let mut suspects = Vec::new();
        for record in records.iter().filter(|r| r.plan.account == account) {
            let Some(id) = &record.saga_id else { continue };
            let Ok(view) = cluster.client().get_saga(id).await else {
                continue;
            };
            let retried: Vec<String> = view
                .steps
                .iter()
                .filter(|s| s.attempts > 1)
                .map(|s| {
                    format!(
                        "{} {} x{}",
                        s.name,
                        s.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                        s.attempts
                    )
                })
                .collect();
            if !retried.is_empty() {
                suspects.push(format!(
                    "saga {id} ({}, amount {}, points {}): retried {}",
                    view.state,
                    record.plan.amount,
                    record.plan.points,
                    retried.join(", ")
                ));
            }
            if suspects.len() >= 5 {
                break;
            }
        }
        if !suspects.is_empty() {
            details.push(format!(
                "account {account}: sagas that retried a call (a double apply comes from one): {}",
                suspects.join("; ")
            ));
        }
    }
    details
}

/// Writes the JSON summary.
pub fn write_summary(report: &ChaosReport, path: &PathBuf) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
