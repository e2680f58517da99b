//! A load generator for a running coordinator, behind the `loadgen` binary.
//!
//! It drives a workflow (by default `place_order`) with unique idempotency keys and `wait_ms`, so
//! that each request measures the whole saga, in one of two modes:
//!
//! - **closed loop** (`--clients N`): N clients, each submits its next saga as soon as the
//!   previous one answered;
//! - **open loop** (`--rate R`): arrivals at fixed intervals of `1/R` seconds, at most
//!   `--max-in-flight` outstanding; latency is measured from the *scheduled* arrival time, so a
//!   stalled coordinator shows up in the tail instead of silently lowering the offered load
//!   (no coordinated omission).
//!
//! Several coordinators of a cluster (`--coordinator URL,URL,...`) share the load: client `i`
//! (closed loop) or arrival `i` (open loop) goes to coordinator `i mod n`.
//!
//! It runs for `--count` sagas or `--duration` seconds, prints a progress line every second on
//! stderr, then a table (throughput, p50/p90/p99/p999/max latency from an HDR histogram,
//! outcomes; `--quiet` prints none of it) and optionally a JSON result. With `--verify` it checks
//! the books afterwards with the harness's [`Books::check`], so that a fast but wrong run
//! cannot pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chaos_tests::books::{Audit, Books, READ_CONCURRENCY, SagaRecord, Services};
use chaos_tests::participant_api::{OrderApi, PointsApi, WalletApi};
use chaos_tests::workload::{SagaPlan, await_settled, submit_until_accepted};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use sagas::CoordinatorClient;
use sagas::api::SagaState;
use sagas::client::ClientError;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::procfs;

/// What each account is funded with: far more than any normal saga can spend.
pub const FUNDING: u64 = 1_000_000_000_000;

/// Command line of the `loadgen` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    about = "Drives sagas against a running coordinator and reports throughput and latency"
)]
pub struct Args {
    /// The coordinator's base URL; several (comma-separated) instances of a cluster share
    /// the load.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:7700")]
    pub coordinator: Vec<String>,
    /// The workflow to submit. Inputs are `place_order`'s: {order_id, account, amount, points}.
    #[arg(long, default_value = "place_order")]
    pub workflow: String,
    /// Closed loop: concurrent clients, each submits as soon as its previous saga answered.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Open loop: arrivals per second at fixed intervals (ignores --clients).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: cap on outstanding requests; arrivals beyond it wait (and the wait counts).
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Number of sagas to run.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Seconds to run (default 10 when --count is not given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// `wait_ms` of each submission: how long the coordinator holds the answer for the saga to
    /// finish.
    #[arg(long, default_value_t = 30_000)]
    pub wait_ms: u64,
    /// Fraction of sagas whose amount exceeds anything the account ever held, so they must
    /// abort.
    #[arg(long, default_value_t = 0.0)]
    pub abort_ratio: f64,
    /// Accounts the sagas are spread over (uniformly at random).
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// The wallet's base URL; when given, every account is funded before the run.
    #[arg(long)]
    pub wallet: Option<String>,
    /// The order service's base URL (for --verify).
    #[arg(long)]
    pub order: Option<String>,
    /// The points service's base URL (for --verify).
    #[arg(long)]
    pub points: Option<String>,
    /// Check the books after the run (needs --wallet, --order, --points and place_order).
    #[arg(long)]
    pub verify: bool,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// The coordinator's pid: report its CPU time (utime+stime) per saga over the run; several
    /// (comma-separated) for a cluster: their sum.
    #[arg(long, value_delimiter = ',')]
    pub coordinator_pid: Vec<u32>,
    /// Prefix of idempotency keys, order ids and accounts (default: `lg-<unix millis>`).
    #[arg(long)]
    pub tag: Option<String>,
    /// No progress lines, messages or table: for callers that report the result themselves.
    #[arg(long)]
    pub quiet: bool,
}

/// What one submission ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered `committed`.
    Committed,
    /// Answered `aborted`.
    Aborted,
    /// Answered, but not terminal within `wait_ms` (or `stuck`).
    NotTerminal(SagaState),
    /// No HTTP answer.
    Transport(&'static str),
    /// An HTTP error answer.
    Api(u16, String),
}

impl Outcome {
    fn of(result: &Result<sagas::client::Submitted, ClientError>) -> Outcome {
        match result {
            Ok(s) => match s.saga.state {
                SagaState::Committed => Outcome::Committed,
                SagaState::Aborted => Outcome::Aborted,
                other => Outcome::NotTerminal(other),
            },
            Err(ClientError::Transport(e)) => Outcome::Transport(if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "other"
            }),
            Err(ClientError::Api { status, code, .. }) => Outcome::Api(*status, code.clone()),
        }
    }

    /// Stable label for the report, e.g. `committed`, `error:http_503_shutting_down`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Committed => "committed".into(),
            Outcome::Aborted => "aborted".into(),
            Outcome::NotTerminal(state) => format!("not_terminal:{state}"),
            Outcome::Transport(kind) => format!("error:transport_{kind}"),
            Outcome::Api(status, code) => format!("error:http_{status}_{code}"),
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Outcome::Committed | Outcome::Aborted)
    }
}

/// Shared, mutex-protected results (a few thousand updates a second: no contention to speak of).
struct Results {
    /// Latency in µs of the sagas that got a terminal answer.
    latency: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    /// Every submitted saga (only with `--verify`).
    records: Vec<SagaRecord>,
    /// Must-abort sagas the coordinator reported committed.
    must_abort_committed: u64,
}

struct Shared {
    args: Args,
    /// One per coordinator; saga `i` goes to `clients[i % n]`.
    clients: Vec<CoordinatorClient>,
    tag: String,
    results: Mutex<Results>,
    done: AtomicU64,
    in_flight: AtomicUsize,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

impl Shared {
    fn account(&self, i: usize) -> String {
        format!("{}-acct-{i}", self.tag)
    }

    /// The plan of saga number `index`: a random account, a small amount, or (with the abort
    /// ratio's probability) an amount above the account's funding, which must abort.
    fn plan(&self, index: u64) -> (SagaPlan, bool) {
        let must_abort =
            self.args.abort_ratio > 0.0 && rand::random::<f64>() < self.args.abort_ratio;
        let account = self.account(rand::random_range(0..self.args.accounts.max(1)));
        let amount = if must_abort {
            FUNDING + 1
        } else {
            rand::random_range(1..=100)
        };
        let plan = SagaPlan::new(&self.tag, index as usize, &account, amount, amount / 10 + 1);
        (plan, must_abort)
    }

    /// Submits saga `index` through coordinator `lane` (mod their number), measuring from
    /// `start` (the scheduled arrival in open loop).
    async fn run_one(&self, index: u64, lane: usize, start: Instant) {
        let (plan, must_abort) = self.plan(index);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.clients[lane % self.clients.len()]
            .submit(
                &self.args.workflow,
                plan.input(),
                Some(&plan.key),
                Some(self.args.wait_ms),
            )
            .await;
        let elapsed = start.elapsed();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = Outcome::of(&result);
        let saga_id = result.ok().map(|s| s.saga.id);
        let mut results = self.results.lock().expect("results lock");
        if outcome.is_terminal() {
            results.latency.saturating_record(
                u64::try_from(elapsed.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
        if must_abort && outcome == Outcome::Committed {
            results.must_abort_committed += 1;
        }
        *results.outcomes.entry(outcome.label()).or_default() += 1;
        if self.args.verify {
            results.records.push(SagaRecord { plan, saga_id });
        }
        drop(results);
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The final result, printed as a table and serialised as JSON.
#[derive(Debug, Clone)]
pub struct Report {
    /// The result as `results.json` holds it.
    pub json: Value,
    /// The books (when verified) were clean and no must-abort saga committed.
    pub ok: bool,
}

/// utime+stime of `pids` together, in microseconds; `None` for no pid.
fn cpu_time_us(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for &pid in pids {
        total += procfs::cpu_time(pid)?.as_micros() as u64;
    }
    Ok(Some(total))
}

fn default_tag() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("lg-{ms}")
}

/// Funds every account with [`FUNDING`].
async fn fund(wallet: &WalletApi, accounts: &[String]) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(accounts)
        .map(|a| wallet.deposit(a, FUNDING))
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Runs the load described by `args` and returns the report (also printed on stdout).
pub async fn run(args: Args) -> anyhow::Result<Report> {
    Ok(run_between(args, async || (), async || ()).await?.0)
}

/// [`run`], calling `at_start` right before the load begins (accounts funded) and `at_end`
/// right after it ends (before the books check), so a caller can measure the load alone;
/// returns what they returned too.
pub async fn run_between<S, E>(
    args: Args,
    at_start: impl AsyncFnOnce() -> S,
    at_end: impl AsyncFnOnce() -> E,
) -> anyhow::Result<(Report, S, E)> {
    if !(0.0..=1.0).contains(&args.abort_ratio) {
        bail!("--abort-ratio must be within [0, 1]");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be positive");
    }
    if args.rate.is_none() && args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.verify
        && (args.wallet.is_none()
            || args.order.is_none()
            || args.points.is_none()
            || args.workflow != "place_order")
    {
        bail!("--verify needs --wallet, --order and --points, and the place_order workflow");
    }
    if args.coordinator.is_empty() {
        bail!("--coordinator needs at least one URL");
    }
    let tag = args.tag.clone().unwrap_or_else(default_tag);
    let clients: Vec<CoordinatorClient> = args
        .coordinator
        .iter()
        .map(|url| CoordinatorClient::new(url.clone()))
        .collect();
    for client in &clients {
        if !client.is_ready().await {
            bail!("the coordinator at {} is not ready", client.base_url());
        }
    }
    let shared = Arc::new(Shared {
        clients,
        tag,
        results: Mutex::new(Results {
            latency: new_histogram(),
            outcomes: BTreeMap::new(),
            records: Vec::new(),
            must_abort_committed: 0,
        }),
        done: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        args,
    });
    let args = &shared.args;
    let accounts: Vec<String> = (0..args.accounts.max(1))
        .map(|i| shared.account(i))
        .collect();
    let mut books = Books::new();
    if let Some(url) = &args.wallet {
        fund(&WalletApi::new(url.clone()), &accounts)
            .await
            .context("funding accounts")?;
        for a in &accounts {
            books.deposit(a, FUNDING);
        }
        if !args.quiet {
            eprintln!("funded {} accounts with {FUNDING} each", accounts.len());
        }
    } else if !args.quiet {
        eprintln!("no --wallet: accounts are not funded (sagas may abort for lack of funds)");
    }

    let count = args.count;
    let duration = match (count, args.duration) {
        (Some(_), _) => None,
        (None, Some(s)) => Some(Duration::from_secs_f64(s)),
        (None, None) => Some(Duration::from_secs(10)),
    };
    let started_probe = at_start().await;
    let cpu_before = cpu_time_us(&args.coordinator_pid)?;
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let progress = (!args.quiet).then(|| tokio::spawn(progress_loop(shared.clone(), started)));

    match args.rate {
        None => {
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(args.clients);
            for lane in 0..args.clients {
                let shared = shared.clone();
                let next = next.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if count.is_some_and(|c| index >= c) {
                            break;
                        }
                        shared.run_one(index, lane, Instant::now()).await;
                    }
                }));
            }
            for task in tasks {
                task.await.context("client task")?;
            }
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            let mut index: u64 = 0;
            loop {
                if count.is_some_and(|c| index >= c) {
                    break;
                }
                let scheduled = started + interval.mul_f64(index as f64);
                if deadline.is_some_and(|d| scheduled >= d) {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let shared = shared.clone();
                tasks.spawn(async move {
                    shared.run_one(index, index as usize, scheduled).await;
                    drop(permit);
                });
                index += 1;
                // Reap finished tasks so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    let cpu_after = cpu_time_us(&args.coordinator_pid)?;
    let ended_probe = at_end().await;

    let (latency, outcomes, records, must_abort_committed) = {
        let mut results = shared.results.lock().expect("results lock");
        (
            results.latency.clone(),
            std::mem::take(&mut results.outcomes),
            std::mem::take(&mut results.records),
            results.must_abort_committed,
        )
    };
    let submitted = shared.done.load(Ordering::Relaxed);
    let terminal = latency.len();
    let throughput = terminal as f64 / elapsed.as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let q = |quantile: f64| ms(latency.value_at_quantile(quantile));
    let cpu_us_per_saga = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if submitted > 0 => Some((a - b) as f64 / submitted as f64),
        _ => None,
    };

    let verify = if args.verify {
        Some(verify(&shared, books, records).await?)
    } else {
        None
    };
    let verify_ok = verify.as_ref().is_none_or(Audit::is_clean);
    let ok = verify_ok && must_abort_committed == 0;

    // The table.
    if !args.quiet {
        let mode = match args.rate {
            Some(r) => format!(
                "open loop, {r} sagas/s, max in flight {}",
                args.max_in_flight
            ),
            None => format!("closed loop, {} clients", args.clients),
        };
        println!("workflow      {} ({mode})", args.workflow);
        println!("sagas         {submitted} submitted, {terminal} terminal");
        println!("elapsed       {:.2} s", elapsed.as_secs_f64());
        println!("throughput    {throughput:.1} sagas/s");
        println!(
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}  mean {:.2}",
            q(0.50),
            q(0.90),
            q(0.99),
            q(0.999),
            ms(latency.max()),
            latency.mean() / 1000.0
        );
        for (label, n) in &outcomes {
            println!("outcome       {label:<40} {n}");
        }
        if must_abort_committed > 0 {
            println!("WRONG         {must_abort_committed} must-abort saga(s) committed");
        }
        if let Some(cpu) = cpu_us_per_saga {
            println!("coordinator   {cpu:.1} µs CPU per saga");
        }
        if let Some(audit) = &verify {
            println!("verify        {audit}");
        }
    }

    let json = json!({
        "workflow": args.workflow,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "clients": args.rate.is_none().then_some(args.clients),
        "rate": args.rate,
        "max_in_flight": args.rate.is_some().then_some(args.max_in_flight),
        "wait_ms": args.wait_ms,
        "abort_ratio": args.abort_ratio,
        "accounts": args.accounts,
        "tag": shared.tag,
        "sagas": submitted,
        "terminal": terminal,
        "elapsed_s": elapsed.as_secs_f64(),
        "throughput": throughput,
        "latency_ms": {
            "p50": q(0.50),
            "p90": q(0.90),
            "p99": q(0.99),
            "p999": q(0.999),
            "max": ms(latency.max()),
            "mean": latency.mean() / 1000.0,
        },
        "outcomes": outcomes,
        "must_abort_committed": must_abort_committed,
        "coordinator_cpu_us_per_saga": cpu_us_per_saga,
        "verify": verify.as_ref().map(|a| json!({
            "clean": a.is_clean(),
            "committed": a.committed,
            "aborted": a.aborted,
            "other": a.other,
            "violations": a.violations.iter().take(100).map(|v| v.to_string()).collect::<Vec<_>>(),
            "violation_count": a.violations.len(),
        })),
        "ok": ok,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((Report { json, ok }, started_probe, ended_probe))
}

/// Prints `done, rate, p99 so far, in flight` on stderr every second.
async fn progress_loop(shared: Arc<Shared>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let (p99, errors) = {
            let results = shared.results.lock().expect("results lock");
            let errors: u64 = results
                .outcomes
                .iter()
                .filter(|(label, _)| !matches!(label.as_str(), "committed" | "aborted"))
                .map(|(_, n)| n)
                .sum();
            (
                results.latency.value_at_quantile(0.99) as f64 / 1000.0,
                errors,
            )
        };
        eprintln!(
            "[{:>5.1}s] done {done:>8}  rate {:>7}/s  p99 {p99:>8.2} ms  not-ok {errors}  in flight {}",
            started.elapsed().as_secs_f64(),
            done - last,
            shared.in_flight.load(Ordering::Relaxed),
        );
        last = done;
    }
}

/// Settles every saga (resubmitting with its key those that never got an id, waiting for the
/// non-terminal ones), reads the participants' state and checks the books.
async fn verify(
    shared: &Shared,
    mut books: Books,
    records: Vec<SagaRecord>,
) -> anyhow::Result<Audit> {
    let args = &shared.args;
    let client = &shared.clients[0];
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    if !args.quiet {
        eprintln!("verifying {} sagas ...", records.len());
    }

    // Resolve ids and wait for the final states.
    let resolved: Vec<anyhow::Result<SagaRecord>> = futures::stream::iter(records)
        .map(|mut record| async move {
            let id = match record.saga_id.clone() {
                Some(id) => id,
                None => {
                    submit_until_accepted(client, &record.plan, Some(args.wait_ms), settle_deadline)
                        .await?
                        .saga
                        .id
                }
            };
            await_settled(client, &id, settle_deadline).await?;
            record.saga_id = Some(id);
            Ok(record)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for record in resolved {
        let record = record?;
        books.record(record.plan, record.saga_id);
    }

    let wallet = WalletApi::new(args.wallet.clone().expect("checked"));
    let order = OrderApi::new(args.order.clone().expect("checked"));
    let points = PointsApi::new(args.points.clone().expect("checked"));
    let services = Services {
        coordinator: client,
        wallet: &wallet,
        order: &order,
        points: &points,
    };
    let mut observed = books.observe_services(services).await?;
    // Only this run's accounts: a wallet reused across runs holds others.
    let prefix = format!("{}-acct-", shared.tag);
    observed
        .accounts
        .retain(|account, _| account.starts_with(&prefix));
    Ok(books.check(&observed))
}
