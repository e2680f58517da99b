//! SIGKILL the coordinator while hundreds of sagas are in flight, restart it on the same port
//! and data directory, SIGKILL it again right after its recovery and restart it once more, and
//! prove nothing is lost: every acknowledged saga keeps its id, every
//! saga settles as committed or aborted, and the books balance.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::watch::BalanceWatch;
use chaos_tests::workload::{self, SagaPlan};
use chaos_tests::{Books, Cluster};
use sagas::api::{SagaState, SagaView};
use tokio::sync::watch;

const SAGAS: usize = 300;
const ACCOUNTS: usize = 6;
const FUNDS: u64 = 2_000;
/// Kill the coordinator once this many submissions were acknowledged.
const KILL_AFTER_ACCEPTED: usize = 90;
/// Overall deadline for submissions and settling.
const DEADLINE: Duration = Duration::from_secs(60);

/// Mixed amounts: every seventh saga asks for more than any account holds (always aborts); the
/// others (40..=120) together ask for more than the accounts hold, so some abort for lack of
/// funds depending on the interleaving.
fn plans() -> Vec<SagaPlan> {
    (0..SAGAS)
        .map(|i| {
            let account = format!("acct-{}", i % ACCOUNTS);
            let amount = if i % 7 == 0 {
                1_000_000
            } else {
                40 + (i as u64 % 5) * 20
            };
            SagaPlan::new("crash", i, &account, amount, 1 + i as u64)
        })
        .collect()
}

/// Where the test is; clients resubmit once the coordinator is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Killed,
    Restarted,
}

/// What one client saw; `saga_id` is known as soon as a submission was acknowledged.
struct ClientOutcome {
    saga_id: Option<String>,
    run: anyhow::Result<ClientRun>,
}

struct ClientRun {
    /// The first acknowledgement (from the first coordinator process or, for clients that were
    /// retrying through the outage, from the restarted one).
    first: SagaView,
    /// The first acknowledgement arrived before the kill, so it came from the first process.
    first_before_kill: bool,
    settled: SagaView,
}

/// One client: submit with its key (retrying through the outage), wait for the restart,
/// resubmit with the same key, then poll until the saga settles.
async fn client_run(
    client: sagas::CoordinatorClient,
    plan: SagaPlan,
    accepted: Arc<AtomicUsize>,
    phase: watch::Receiver<Phase>,
    deadline: Instant,
) -> ClientOutcome {
    let mut saga_id = None;
    let run = client_steps(&client, &plan, &accepted, phase, deadline, &mut saga_id).await;
    ClientOutcome { saga_id, run }
}

async fn client_steps(
    client: &sagas::CoordinatorClient,
    plan: &SagaPlan,
    accepted: &AtomicUsize,
    mut phase: watch::Receiver<Phase>,
    deadline: Instant,
    saga_id: &mut Option<String>,
) -> anyhow::Result<ClientRun> {
    // Retries through the outage. It never abandons a request mid-flight (a client giving up is
    // `abandoned_submissions_still_settle`'s subject); only the coordinator's death cuts it.
    let first = workload::submit_until_accepted(client, plan, None, deadline).await?;
    let first_before_kill = *phase.borrow() == Phase::Running;
    *saga_id = Some(first.saga.id.clone());
    accepted.fetch_add(1, Ordering::SeqCst);
    phase
        .wait_for(|phase| *phase == Phase::Restarted)
        .await
        .context("the test dropped the restart signal")?;
    let again = workload::submit_until_accepted(client, plan, None, deadline).await?;
    ensure!(
        again.saga.id == first.saga.id,
        "key {}: acknowledged as saga {} (before the kill: {first_before_kill}), \
         resubmission after the restart gave saga {} ({})",
        plan.key,
        first.saga.id,
        again.saga.id,
        again.saga.state
    );
    let settled = workload::await_settled(client, &again.saga.id, deadline).await?;
    Ok(ClientRun {
        first: first.saga,
        first_before_kill,
        settled,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_crash_mid_flight() {
    Cluster::run_test(scenario).await;
}

async fn scenario(cluster: &mut Cluster) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut books = Books::funded(cluster.wallet(), "acct", ACCOUNTS, FUNDS).await?;
    let watch = BalanceWatch::start(cluster.wallet().clone(), Duration::from_millis(25));

    let plans = plans();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let clients: Vec<_> = plans
        .iter()
        .map(|plan| {
            tokio::spawn(client_run(
                cluster.client().clone(),
                plan.clone(),
                accepted.clone(),
                phase_rx.clone(),
                deadline,
            ))
        })
        .collect();

    // Kill once enough submissions were acknowledged, so many sagas are mid-flight.
    let kill_deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) < KILL_AFTER_ACCEPTED {
        ensure!(
            Instant::now() < kill_deadline,
            "only {} of {SAGAS} submissions were acknowledged within 30 s",
            accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill_coordinator()?;
    phase_tx.send_replace(Phase::Killed);
    let at_kill = accepted.load(Ordering::SeqCst);
    cluster
        .restart_coordinator()
        .await
        .context("restarting the coordinator")?;
    // Crash again as soon as recovery has resumed the sagas, so the second process dies with
    // resumed branch calls in flight, then come back for good.
    cluster.kill_coordinator()?;
    cluster
        .restart_coordinator()
        .await
        .context("restarting the coordinator after the second kill")?;
    let restarted_after = started.elapsed();
    phase_tx.send_replace(Phase::Restarted);

    let mut runs = Vec::with_capacity(SAGAS);
    let mut errors = Vec::new();
    let mut failed_ids = Vec::new();
    for (plan, client) in plans.iter().zip(clients) {
        let outcome = client.await.context("a client task panicked")?;
        match outcome.run {
            Ok(run) => runs.push((plan, run)),
            Err(e) => {
                errors.push(format!("key {}: {e:#}", plan.key));
                failed_ids.extend(outcome.saga_id);
            }
        }
    }
    let report = watch.stop().await?;
    if !errors.is_empty() {
        let mut post_mortem = String::new();
        for id in failed_ids.iter().take(3) {
            post_mortem.push_str(&workload::saga_report(cluster.client(), id).await);
        }
        anyhow::bail!(
            "{} of {SAGAS} clients failed (coordinator killed after {at_kill} \
             acknowledgements); first ones:\n{}\n{post_mortem}",
            errors.len(),
            workload::first_errors(&errors)
        );
    }

    let (mut acknowledged, mut running) = (0, 0);
    for (plan, run) in &runs {
        if run.first_before_kill {
            acknowledged += 1;
            if !run.first.state.is_terminal() {
                running += 1;
            }
        }
        books.record((*plan).clone(), Some(run.settled.id.clone()));
    }
    let audit = books.audit(cluster).await?;
    // A crash that found nothing in flight tests nothing: some saga must have been resumed.
    let mut resumed = 0;
    for (_, run) in &runs {
        let events = cluster.client().saga_events(&run.settled.id).await?.events;
        if events.iter().any(|e| e.kind == "resumed") {
            resumed += 1;
        }
    }
    ensure!(
        resumed > 0,
        "no saga was in flight when the coordinator was killed"
    );
    audit.ensure_commits_and_aborts()?;
    let committed = runs
        .iter()
        .filter(|(_, r)| r.settled.state == SagaState::Committed)
        .count();
    eprintln!(
        "coordinator killed after {at_kill} acknowledgements; {acknowledged} seen before the \
         kill ({running} of them as running); ready again after the second kill \
         {restarted_after:?} after the start; {committed} committed; {resumed} resumed; \
         total {:?}; {audit}",
        started.elapsed()
    );
    report.ensure_clean()?;
    audit.into_result()?;
    cluster.ensure_no_panics()
}
