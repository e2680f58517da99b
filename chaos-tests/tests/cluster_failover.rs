//! Three coordinators on one PostgreSQL database under load; one is SIGKILLed while it drives
//! sagas. The other two must claim every saga it held once its lease expires and finish them:
//! every saga ends committed or aborted, none is lost, the books balance.
//!
//! It also measures the **failover time**, from the SIGKILL:
//! - *claimed*: until every saga the killed instance held at the kill is held by another
//!   instance (its row's owner and epoch changed), read from the database every 10 ms;
//! - *settled*: until the last of those sagas is committed or aborted.
//!
//! Expected: claimed between 2/3 of the lease (the victim renewed a third of a lease before
//! dying) and 6/5 of it (a claim pass runs every fifth of a lease) after the kill. The lease is
//! 1 s (`CLUSTER_LEASE_MS` overrides it, e.g. 5000 for the coordinator's default); the figures
//! are printed (`-- --nocapture`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chaos_tests::database::Ownership;
use chaos_tests::polling;
use chaos_tests::steady_load::{LoadShape, SteadyLoad};
use chaos_tests::{Books, Cluster, ClusterOptions};

const INSTANCES: usize = 3;
/// The instance killed (not 0, whose client reads the books).
const VICTIM: usize = 1;
const CLIENTS_PER_INSTANCE: usize = 10;
/// Kill once the victim holds this many active sagas.
const KILL_WHEN_HOLDING: usize = 6;
const ACCOUNTS: usize = 6;
const FUNDS: u64 = 1_000_000;
/// Every participant call takes this much longer, so sagas stay in flight a while.
const CALL_DELAY_MS: u64 = 25;
/// Overall deadline of the load and of every wait.
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);

fn lease() -> Duration {
    let ms = std::env::var("CLUSTER_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_sagas_are_finished_by_the_others() {
    let delay = format!("delay_ms={CALL_DELAY_MS}");
    let options = ClusterOptions {
        wallet_args: vec!["--faults".into(), delay.clone().into()],
        order_args: vec!["--faults".into(), delay.clone().into()],
        points_args: vec!["--faults".into(), delay.into()],
        ..ClusterOptions::postgres(INSTANCES, lease())
    };
    Cluster::run_test_with(options, scenario).await;
}

/// What the database says about the sagas the victim held, at one poll.
fn claimed_and_settled(
    held: &BTreeMap<String, Ownership>,
    now: &BTreeMap<String, Ownership>,
    victim: &str,
) -> (bool, bool) {
    let claimed = held.keys().all(|id| {
        now.get(id)
            .is_some_and(|row| !row.active || row.owner.as_deref() != Some(victim))
    });
    let settled = held
        .keys()
        .all(|id| now.get(id).is_some_and(|row| !row.active));
    (claimed, settled)
}

async fn scenario(cluster: &mut Cluster) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let database = cluster
        .database()
        .context("a PostgreSQL cluster")?
        .connect()
        .await?;
    let victim = cluster
        .coordinator(VICTIM)
        .instance_id()
        .context("the victim's instance id is not in its log")?;
    let mut books = Books::funded(cluster.wallet(), "acct", ACCOUNTS, FUNDS).await?;
    let shape = LoadShape {
        tag: "failover".into(),
        accounts: (0..ACCOUNTS).map(|i| format!("acct-{i}")).collect(),
        must_abort_every: 7,
        base_amount: 10,
        deadline,
    };
    let clients = (0..INSTANCES * CLIENTS_PER_INSTANCE)
        .map(|i| cluster.failover_client(i % INSTANCES))
        .collect();
    let load = SteadyLoad::start(clients, &shape);

    // Kill while the victim drives sagas.
    let holding = polling::until(
        "the victim to hold sagas",
        Duration::from_secs(60),
        POLL,
        async || {
            Ok((database.active_sagas_of(&victim).await?.len() >= KILL_WHEN_HOLDING).then_some(()))
        },
    )
    .await;
    if let Err(e) = holding {
        // Say who held what, so that a rare failure can be told apart from a slow machine.
        let by_owner = database.active_by_owner().await?;
        bail!(
            "{e:#}; active sagas by owner: {by_owner:?}; settled so far: {}",
            load.settled()
        );
    }
    let killed_at = Instant::now();
    cluster.coordinator_mut(VICTIM).kill()?;
    let held_ids = database.active_sagas_of(&victim).await?;
    let held = database.ownership(&held_ids).await?;

    let (mut claimed_after, mut settled_after) = (None, None);
    polling::until(
        "the victim's sagas to be claimed and settled",
        Duration::from_secs(60),
        POLL,
        async || {
            let now = database.ownership(&held_ids).await?;
            let (claimed, settled) = claimed_and_settled(&held, &now, &victim);
            if claimed && claimed_after.is_none() {
                claimed_after = Some(killed_at.elapsed());
            }
            if settled && settled_after.is_none() {
                settled_after = Some(killed_at.elapsed());
            }
            Ok(settled.then_some(()))
        },
    )
    .await?;
    let (claimed_after, settled_after) = (
        claimed_after.expect("set when settled"),
        settled_after.expect("set when settled"),
    );

    // The others go on a little, then everything settles.
    let settled_at_claim = load.settled();
    polling::until(
        "more sagas to settle after the failover",
        Duration::from_secs(60),
        POLL,
        async || Ok((load.settled() >= settled_at_claim + 20).then_some(())),
    )
    .await?;
    let records = load.finish().await?;
    let all_settled = polling::until(
        "every saga to settle",
        Duration::from_secs(60),
        POLL,
        async || Ok((database.active_sagas().await? == 0).then_some(())),
    )
    .await;
    if let Err(e) = all_settled {
        let by_owner = database.active_by_owner().await?;
        let live = database.live_instances().await?;
        bail!(
            "{e:#}; still active by owner: {by_owner:?}; live instances: {live:?}; victim: {victim}"
        );
    }

    // Who finished the victim's sagas: others, after a claim (a higher epoch). Only the
    // victim's own last commit, in flight when it died, may have settled one of them.
    let end = database.ownership(&held_ids).await?;
    let mut taken_over = 0;
    let mut settled_by_victim = Vec::new();
    for (id, at_kill) in &held {
        let row = end.get(id).with_context(|| format!("saga {id} is gone"))?;
        if row.owner.as_deref() == Some(victim.as_str()) {
            ensure!(
                row.epoch == at_kill.epoch && !row.active,
                "saga {id} still held by the dead victim: {row:?}"
            );
            settled_by_victim.push(id.clone());
        } else {
            ensure!(
                row.epoch > at_kill.epoch,
                "saga {id} changed hands without a claim: {at_kill:?} -> {row:?}"
            );
            taken_over += 1;
        }
    }
    ensure!(
        taken_over > 0,
        "no saga of the victim was taken over (held at the kill: {}, settled by its own last \
         commit: {})",
        held.len(),
        settled_by_victim.len()
    );

    for record in records {
        books.record(record.plan, record.saga_id);
    }
    let audit = books.audit(cluster).await?;
    audit.ensure_commits_and_aborts()?;
    println!(
        "failover (lease {:?}): the killed instance held {} sagas; {taken_over} taken over \
         ({} settled by its last commit); all claimed {} ms after the SIGKILL, all settled {} \
         ms after it; {audit}; total {:.1} s",
        lease(),
        held.len(),
        settled_by_victim.len(),
        claimed_after.as_millis(),
        settled_after.as_millis(),
        started.elapsed().as_secs_f64()
    );
    audit.into_result()?;
    cluster.ensure_no_panics()
}
