//! Every coordinator of a three-instance cluster SIGKILLed at once with sagas in flight, then
//! all restarted on their ports and the same database: nothing is lost. Every acknowledged
//! saga keeps its id (a resubmission with its key through any instance returns it), every
//! saga settles committed or aborted (the new instances claim the old ones' sagas once their
//! leases expire), and the books balance.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::failover::FailoverClient;
use chaos_tests::polling;
use chaos_tests::workload::{self, SagaPlan};
use chaos_tests::{Books, Cluster, ClusterOptions};
use sagas::api::SagaView;
use tokio::sync::watch;

const INSTANCES: usize = 3;
const SAGAS: usize = 240;
const ACCOUNTS: usize = 6;
const FUNDS: u64 = 2_000;
/// Kill once this many sagas are active in the database.
const KILL_WHEN_ACTIVE: i64 = 60;
const LEASE: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
/// What a coordinator logs when it gave up everything and joined again.
const REJOINED_LINE: &str = "rejoined the cluster";
/// Every participant call takes this much longer, so sagas stay in flight a while.
const CALL_DELAY_MS: u64 = 20;

/// Every seventh saga asks for more than any account holds; the others (40..=120) together
/// ask for more than the accounts hold, so some abort for lack of funds.
fn plans() -> Vec<SagaPlan> {
    (0..SAGAS)
        .map(|i| {
            let account = format!("acct-{}", i % ACCOUNTS);
            let amount = if i % 7 == 0 {
                1_000_000
            } else {
                40 + (i as u64 % 5) * 20
            };
            SagaPlan::new("restart", i, &account, amount, 1 + i as u64)
        })
        .collect()
}

/// One client: submit through `before` (its instance, or the next ones), wait for the
/// restart, resubmit with the same key through `after` (which starts with another instance),
/// then poll until the saga settles.
async fn client_run(
    before: FailoverClient,
    after: FailoverClient,
    plan: SagaPlan,
    accepted: Arc<AtomicUsize>,
    mut restarted: watch::Receiver<bool>,
    deadline: Instant,
) -> anyhow::Result<SagaView> {
    let first = workload::submit_until_accepted(&before, &plan, None, deadline).await?;
    accepted.fetch_add(1, Ordering::SeqCst);
    restarted
        .wait_for(|restarted| *restarted)
        .await
        .context("the test dropped the restart signal")?;
    let again = workload::submit_until_accepted(&after, &plan, None, deadline).await?;
    ensure!(
        again.saga.id == first.saga.id,
        "key {}: acknowledged as saga {} before the crash, resubmission after the restart gave \
         saga {} ({})",
        plan.key,
        first.saga.id,
        again.saga.id,
        again.saga.state
    );
    workload::await_settled(&after, &again.saga.id, deadline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_killed_and_restarted_loses_nothing() {
    let delay = format!("delay_ms={CALL_DELAY_MS}");
    let options = ClusterOptions {
        wallet_args: vec!["--faults".into(), delay.clone().into()],
        order_args: vec!["--faults".into(), delay.clone().into()],
        points_args: vec!["--faults".into(), delay.into()],
        ..ClusterOptions::postgres(INSTANCES, LEASE)
    };
    Cluster::run_test_with(options, scenario).await;
}

async fn scenario(cluster: &mut Cluster) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let database = cluster
        .database()
        .context("a PostgreSQL cluster")?
        .connect()
        .await?;
    let mut books = Books::funded(cluster.wallet(), "acct", ACCOUNTS, FUNDS).await?;
    let plans = plans();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (restarted_tx, restarted_rx) = watch::channel(false);
    let clients: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            tokio::spawn(client_run(
                cluster.failover_client(i % INSTANCES),
                cluster.failover_client((i + 1) % INSTANCES),
                plan.clone(),
                accepted.clone(),
                restarted_rx.clone(),
                deadline,
            ))
        })
        .collect();

    // Kill every instance while many sagas are in flight on all of them.
    let old_instances: Vec<String> = cluster
        .coordinators()
        .iter()
        .map(|c| c.instance_id().context("an instance id in the log"))
        .collect::<anyhow::Result<_>>()?;
    let held_at_kill = polling::until(
        "sagas in flight on every instance",
        Duration::from_secs(60),
        POLL,
        async || {
            let by_owner = database.active_by_owner().await?;
            let total: i64 = by_owner.values().sum();
            let everywhere = old_instances.iter().all(|id| by_owner.contains_key(id));
            Ok((total >= KILL_WHEN_ACTIVE && everywhere).then_some(by_owner))
        },
    )
    .await?;
    for index in 0..INSTANCES {
        cluster.coordinator_mut(index).kill()?;
    }
    let killed_at = Instant::now();
    let acknowledged_at_kill = accepted.load(Ordering::SeqCst);
    let active_at_kill = database.active_sagas().await?;
    for index in 0..INSTANCES {
        cluster
            .coordinator_mut(index)
            .restart()
            .await
            .with_context(|| format!("restarting instance {index}"))?;
    }
    let ready_after = killed_at.elapsed();
    restarted_tx.send_replace(true);

    let mut views = Vec::with_capacity(SAGAS);
    let mut errors = Vec::new();
    for (plan, client) in plans.iter().zip(clients) {
        match client.await.context("a client task panicked")? {
            Ok(view) => views.push((plan, view)),
            Err(e) => errors.push(format!("key {}: {e:#}", plan.key)),
        }
    }
    ensure!(
        errors.is_empty(),
        "{} of {SAGAS} clients failed; first ones:\n{}",
        errors.len(),
        workload::first_errors(&errors)
    );
    let settled_after = killed_at.elapsed();
    ensure!(
        database.active_sagas().await? == 0,
        "sagas still active after every client saw its saga settle"
    );

    // The new instances finished the old ones' sagas: none is held by an old instance.
    let new_instances: Vec<String> = cluster
        .coordinators()
        .iter()
        .map(|c| c.instance_id().context("an instance id in the log"))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        new_instances.iter().all(|id| !old_instances.contains(id)),
        "a restarted instance kept its old id: {old_instances:?} -> {new_instances:?}"
    );
    let mut resumed = 0;
    for (_, view) in &views {
        let events = cluster.client().saga_events(&view.id).await?.events;
        if events.iter().any(|e| e.kind == "resumed") {
            resumed += 1;
        }
    }
    ensure!(
        resumed > 0,
        "no saga was resumed: nothing was in flight when the instances were killed"
    );

    // Instances that gave everything up and rejoined (a lease that ran out under load):
    // allowed, but worth seeing in the report.
    let rejoins: usize = cluster
        .coordinators()
        .iter()
        .map(|c| c.process().log().matches(REJOINED_LINE).count())
        .sum();
    for (plan, view) in &views {
        books.record((*plan).clone(), Some(view.id.clone()));
    }
    let audit = books.audit(cluster).await?;
    audit.ensure_commits_and_aborts()?;
    println!(
        "all {INSTANCES} instances killed with {active_at_kill} sagas active ({held_at_kill:?} by \
         owner), {acknowledged_at_kill} of {SAGAS} acknowledged; ready again after {} ms, every \
         saga settled {} ms after the kill; {resumed} resumed; {rejoins} lease(s) lost and \
         rejoined after the restart; {audit}",
        ready_after.as_millis(),
        settled_after.as_millis()
    );
    audit.into_result()?;
    cluster.ensure_no_panics()
}
