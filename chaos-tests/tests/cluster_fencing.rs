//! Fencing: a coordinator paused (SIGSTOP) for longer than its lease while it drives sagas
//! loses them to the others, which finish them; when it wakes (SIGCONT) it makes **no write
//! and no call** for the sagas it lost. The books balance.
//!
//! The setup makes "no call" exact. A fault proxy in front of each participant tells the
//! instances apart by source address (each sends from its own `--outbound-address`). Before
//! the pause the proxies hold the answers to the victim's calls (the calls are delivered and
//! handled; the answers wait), and the victim is paused only once every saga it holds waits on
//! such an answer (held answers == sagas it holds in the database, and the steps have a long
//! call timeout and no deadline, so nothing else can make it decide): at the pause, every
//! call it decided has reached the participant. The answers are released while it is paused,
//! so on waking it has news for every one of its sagas and would go on with each. Any request
//! byte from its address after SIGCONT is therefore a call decided after the lease was lost.
//!
//! "No write" is a fingerprint of every saga row (with the `xmin` of its current version, so
//! even a write of the same values shows) and every event, taken once the others settled
//! everything and the load stopped, compared after the victim woke, noticed (it rejoined the
//! cluster as a new instance row), and exited on SIGTERM: a process that has exited writes
//! nothing more. The victim's log says how many of its writes the database refused.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::cluster::outbound_address;
use chaos_tests::database::Connection;
use chaos_tests::failover::FailoverClient;
use chaos_tests::polling;
use chaos_tests::ports;
use chaos_tests::proxy::FaultProxy;
use chaos_tests::steady_load::{LoadShape, SteadyLoad};
use chaos_tests::{Books, Cluster, ClusterOptions};
use sagas::CoordinatorClient;

const INSTANCES: usize = 3;
/// The instance paused (not 0, whose client reads the books).
const VICTIM: usize = 1;
const CLIENTS_PER_INSTANCE: usize = 6;
/// Pause once at least this many of the victim's sagas wait on held answers.
const HELD_AT_PAUSE: u64 = 4;
const ACCOUNTS: usize = 6;
const FUNDS: u64 = 1_000_000;
const LEASE: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);
/// What the victim logs when the database refuses a write of a saga it lost.
const FENCED_LINE: &str = "its writes here are dropped";

/// `place_order` with a call timeout far longer than the test and no saga deadline: while its
/// answers are held, nothing but an answer can make the victim decide anything.
const WORKFLOW_YAML: &str = "\
steps:
  - {name: create_order, participant: order, action: create, timeout_ms: 600000}
  - {name: freeze_funds, participant: wallet, action: freeze, timeout_ms: 600000}
  - {name: award_points, participant: points, action: award, timeout_ms: 600000}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_instance_neither_writes_nor_calls_for_sagas_it_lost() {
    let workflows = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(workflows.path().join("place_order.yaml"), WORKFLOW_YAML)
        .expect("writing the workflow");
    let addrs = ports::free_addrs(3).expect("free ports");
    let mut proxies = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        proxies.push(
            FaultProxy::start(*addr, i as u64)
                .await
                .expect("a fault proxy"),
        );
    }
    let advertise = |i: usize| vec!["--advertise-url".into(), proxies[i].url().into()];
    let options = ClusterOptions {
        wallet_args: advertise(0),
        order_args: advertise(1),
        points_args: advertise(2),
        workflows_dir: Some(workflows.path().to_path_buf()),
        participant_addrs: Some([addrs[0], addrs[1], addrs[2]]),
        ..ClusterOptions::postgres(INSTANCES, LEASE)
    };
    Cluster::run_test_with(options, async |cluster| scenario(cluster, &proxies).await).await;
}

/// What the proxies saw from `ip`, summed.
fn from(proxies: &[FaultProxy], ip: IpAddr) -> (u64, u64, u64) {
    proxies
        .iter()
        .map(|p| p.source(ip))
        .fold((0, 0, 0), |acc, s| {
            (
                acc.0 + s.request_bytes,
                acc.1 + s.held_replies,
                acc.2 + s.open,
            )
        })
}

async fn scenario(cluster: &mut Cluster, proxies: &[FaultProxy]) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let database: Connection = cluster.database().context("PostgreSQL")?.connect().await?;
    let victim = cluster
        .coordinator(VICTIM)
        .instance_id()
        .context("the victim's instance id is not in its log")?;
    let victim_ip = outbound_address(VICTIM);
    let mut books = Books::funded(cluster.wallet(), "acct", ACCOUNTS, FUNDS).await?;

    // Short timeouts: a client polling the paused victim moves on to another instance soon.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let instance =
        |i: usize| CoordinatorClient::with_http(cluster.coordinator(i).url(), http.clone());
    let shape = |tag: &str| LoadShape {
        tag: tag.into(),
        accounts: (0..ACCOUNTS).map(|i| format!("acct-{i}")).collect(),
        must_abort_every: 5,
        base_amount: 3,
        deadline,
    };
    // The others' clients never touch the victim; the victim's fail over once it is paused.
    let others: Vec<usize> = (0..INSTANCES).filter(|&i| i != VICTIM).collect();
    let others_load = SteadyLoad::start(
        (0..(INSTANCES - 1) * CLIENTS_PER_INSTANCE)
            .map(|c| FailoverClient::new(others.iter().map(|&i| instance(i)).collect(), c))
            .collect(),
        &shape("others"),
    );
    let victim_load = SteadyLoad::start(
        (0..CLIENTS_PER_INSTANCE)
            .map(|_| cluster.failover_client_with(&http, VICTIM))
            .collect(),
        &shape("victim"),
    );
    polling::until("both loads to run", WAIT, POLL, async || {
        Ok((victim_load.settled() >= 10 && others_load.settled() >= 10).then_some(()))
    })
    .await?;

    // Bring the victim to a point where every call it decided was delivered.
    for proxy in proxies {
        proxy.hold_replies_to(victim_ip);
    }
    polling::until("answers to the victim to be held", WAIT, POLL, async || {
        Ok((from(proxies, victim_ip).1 >= HELD_AT_PAUSE).then_some(()))
    })
    .await?;
    victim_load.stop_starting();
    let held_at_pause = polling::until(
        "every saga of the victim to wait on a held answer",
        WAIT,
        POLL,
        async || {
            let submitting = victim_load.accepted() < victim_load.started();
            let holding = database.active_sagas_of(&victim).await?.len() as u64;
            let held = from(proxies, victim_ip).1;
            Ok((!submitting && holding > 0 && held == holding).then_some(held))
        },
    )
    .await?;
    cluster.coordinator_mut(VICTIM).pause()?;
    let paused_at = Instant::now();
    let lost_ids = database.active_sagas_of(&victim).await?;
    let at_pause = database.ownership(&lost_ids).await?;
    for proxy in proxies {
        proxy.release_replies();
    }

    // The others claim its sagas once its lease expires, and finish them.
    let claimed_after =
        polling::until("the victim's sagas to be claimed", WAIT, POLL, async || {
            let now = database.ownership(&lost_ids).await?;
            let claimed = lost_ids.iter().all(|id| {
                now.get(id)
                    .is_some_and(|row| row.owner.as_deref() != Some(victim.as_str()))
            });
            Ok(claimed.then(|| paused_at.elapsed()))
        })
        .await?;
    let settled_now = others_load.settled();
    polling::until("the others to go on", WAIT, POLL, async || {
        Ok((others_load.settled() >= settled_now + 10).then_some(()))
    })
    .await?;
    let mut records = others_load.finish().await?;
    records.extend(victim_load.finish().await?);
    polling::until("every saga to settle", WAIT, POLL, async || {
        Ok((database.active_sagas().await? == 0).then_some(()))
    })
    .await?;
    let end = database.ownership(&lost_ids).await?;
    for (id, before) in &at_pause {
        let row = end.get(id).with_context(|| format!("saga {id} is gone"))?;
        ensure!(
            row.owner.as_deref() != Some(victim.as_str()) && row.epoch > before.epoch,
            "saga {id} was not taken over: {before:?} at the pause, {row:?} now"
        );
    }

    // Everything settled and the load stopped: from here on, no row may change.
    let before = database.fingerprint().await?;
    let instances_before = database.instances().await?;
    let (bytes_before, _, _) = from(proxies, victim_ip);
    let victim_log_before = cluster.coordinator(VICTIM).process().log().len();

    cluster.coordinator_mut(VICTIM).resume()?;
    polling::until(
        "the woken victim to rejoin the cluster",
        WAIT,
        POLL,
        async || {
            let now = database.instances().await?;
            Ok((now.len() > instances_before.len()).then_some(()))
        },
    )
    .await?;
    let exit = cluster
        .coordinator_mut(VICTIM)
        .process_mut()
        .terminate(Duration::from_secs(30))
        .await?;
    ensure!(
        exit.is_some_and(|status| status.success()),
        "the woken victim did not stop cleanly on SIGTERM: {exit:?}"
    );
    polling::until(
        "the victim's connections to the proxies to close",
        WAIT,
        POLL,
        async || Ok((from(proxies, victim_ip).2 == 0).then_some(())),
    )
    .await?;

    let after = database.fingerprint().await?;
    let (bytes_after, _, _) = from(proxies, victim_ip);
    let woken_log = cluster.coordinator(VICTIM).process().log()[victim_log_before..].to_string();
    let fenced = woken_log.matches(FENCED_LINE).count();
    ensure!(
        bytes_after == bytes_before,
        "the woken victim sent {} request bytes to the participants for sagas it had lost",
        bytes_after - bytes_before
    );
    ensure!(
        after == before,
        "the woken victim wrote to the database: {before:?} before it woke, {after:?} after"
    );

    for record in records {
        books.record(record.plan, record.saga_id);
    }
    let audit = books.audit(cluster).await?;
    audit.ensure_commits_and_aborts()?;
    println!(
        "fencing: paused the victim with {held_at_pause} answers held for {} sagas; claimed \
         {} ms after the pause; woken: 0 request bytes, 0 rows changed ({} sagas, {} events), \
         {fenced} write(s) refused by the database; {audit}; total {:.1} s",
        lost_ids.len(),
        claimed_after.as_millis(),
        after.sagas,
        after.events,
        started.elapsed().as_secs_f64()
    );
    audit.into_result()?;
    cluster.ensure_no_panics()
}
