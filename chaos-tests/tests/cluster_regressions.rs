//! Coordinator bugs found while testing clusters, each kept as a regression test that fails
//! if the bug comes back. Every test describes the bug it reproduced; the fixes are in the
//! coordinator (registry reads refresh from the shared store; `wait_ms` follows a saga that
//! moves; a lone instance keeps the epoch of a settled saga until its snapshot is written;
//! the lease counts from the join and is renewed from the start; claims run apart from
//! renewals).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::polling;
use chaos_tests::steady_load::{LoadShape, SteadyLoad};
use chaos_tests::workload::SagaPlan;
use chaos_tests::{Books, Cluster, ClusterOptions};
use futures::StreamExt;

const POLL: Duration = Duration::from_millis(10);
const WAIT: Duration = Duration::from_secs(60);

/// A participant registered through one instance is unknown to the API of the others
/// (`GET /v1/participants/{name}` is 404) until they refresh their registry, which only a
/// submission does: "any instance answers any API call with the same result" does not hold
/// for the registry's reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_through_one_instance_is_visible_on_the_others() {
    Cluster::run_test_with(
        ClusterOptions::postgres(2, Duration::from_secs(1)),
        async |cluster| {
            let http = reqwest::Client::new();
            let spec = serde_json::json!({
                "base_url": "http://127.0.0.1:9",
                "actions": {"ship": {"action": "/ship", "compensate": "/unship"}}
            });
            let put = http
                .put(format!(
                    "{}/v1/participants/late-comer",
                    cluster.coordinator(0).url()
                ))
                .json(&spec)
                .send()
                .await?;
            ensure!(put.status().is_success(), "registering: {}", put.status());
            let seen = http
                .get(format!(
                    "{}/v1/participants/late-comer",
                    cluster.coordinator(1).url()
                ))
                .send()
                .await?
                .status();
            ensure!(
                seen.is_success(),
                "instance 1 answers {seen} for a participant registered through instance 0"
            );
            Ok(())
        },
    )
    .await;
}

/// `POST /v1/sagas?wait_ms=N` returns before N with a state that is not terminal when the
/// instance stops driving the saga during the wait (here another instance took it over for
/// an operator's abort; the same happens when the instance's lease runs out): the waiter
/// gets the slot's last state instead of waiting on through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ms_outlasts_a_take_over() {
    let options = ClusterOptions {
        // Every call takes 2 s: the saga is still running when the abort comes.
        order_args: vec!["--faults".into(), "delay_ms=2000".into()],
        ..ClusterOptions::postgres(2, Duration::from_secs(1))
    };
    Cluster::run_test_with(options, async |cluster| {
        Books::funded(cluster.wallet(), "acct", 1, 1_000).await?;
        let plan = SagaPlan::new("wait", 0, "acct-0", 10, 1);
        let first = cluster.coordinator(0).client().clone();
        let waiting = tokio::spawn(async move {
            let started = Instant::now();
            let answer = plan.submit(&first, Some(20_000)).await;
            (started.elapsed(), answer)
        });
        let id = polling::until("the saga to exist", WAIT, POLL, async || {
            let page = cluster.client().list_sagas(None, None, None, None).await?;
            Ok(page.sagas.first().map(|s| s.id.clone()))
        })
        .await?;
        // Through instance 1: it takes the saga over to apply the abort.
        cluster.coordinator(1).client().abort(&id).await?;
        let (waited, answer) = waiting.await?;
        let answer = answer?;
        ensure!(
            answer.saga.state.is_terminal(),
            "wait_ms=20000 answered after {waited:?} with state {} (the saga was taken over \
             by instance 1 meanwhile)",
            answer.saga.state
        );
        Ok(())
    })
    .await;
}

/// A lone instance fences itself out of a saga it just settled. The settle round's events
/// (summary: not active) and its snapshot are queued for the group commit by two calls; when
/// the committer takes the batch between them, the batch with the round commits and its
/// success drops the saga from the epochs the instance holds, so the next batch's snapshot
/// fails the fencing check: the snapshot is dropped, the instance logs "saga is driven by
/// another coordinator now; its writes here are dropped" (there is no other) and the task
/// ends as if taken over before publishing the terminal state, so a submission waiting on it
/// (`wait_ms`) is answered `confirming` and the saga is not counted as finished in
/// `/metrics`. A few in 10,000 sagas with 64 clients (the benchmark's `not terminal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_instance_never_fences_itself() {
    let options = ClusterOptions {
        wallet_args: vec!["--no-work".into()],
        order_args: vec!["--no-work".into()],
        points_args: vec!["--no-work".into()],
        ..ClusterOptions::postgres(1, Duration::from_secs(5))
    };
    Cluster::run_test_with(options, async |cluster| {
        let shape = LoadShape {
            tag: "lone".into(),
            accounts: vec!["acct-0".into()],
            must_abort_every: 0,
            base_amount: 1,
            deadline: Instant::now() + WAIT,
        };
        let load = SteadyLoad::start(
            (0..64).map(|_| cluster.failover_client(0)).collect(),
            &shape,
        );
        let fenced = |cluster: &Cluster| {
            let log = cluster.coordinator(0).process().log();
            log.lines()
                .filter(|l| l.contains("writes here are dropped"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let started = Instant::now();
        let _ = polling::until("a self-fencing, or 20 s", WAIT, POLL, async || {
            Ok(
                (!fenced(cluster).is_empty() || started.elapsed() > Duration::from_secs(20))
                    .then_some(()),
            )
        })
        .await;
        let settled = load.settled();
        load.finish().await?;
        let fenced = fenced(cluster);
        ensure!(
            fenced.is_empty(),
            "the only instance fenced itself out of {} saga(s) it drove ({settled} settled \
             meanwhile):\n{}",
            fenced.len(),
            fenced.join("\n")
        );
        Ok(())
    })
    .await;
}

/// An instance's lease starts when it joins (its `instances` row is written while the store
/// opens), but its first renewal runs only once the registry and workflow files are loaded
/// and the runtime built, and its local view of the lease (`lease_valid_until`) is taken when
/// the runtime is built, not when it joined. A start-up longer than the lease expires the
/// instance in the database before its first renewal (it logs `lease expired` right after
/// `recovery done` and rejoins); one longer than a fifth of the lease lets the local clock
/// trust the lease past its expiry in the database, while recovery already drives the
/// orphans it claimed. Here: a 300 ms lease and a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_instance_keeps_its_first_lease() {
    Cluster::run_test_with(
        ClusterOptions::postgres(1, Duration::from_millis(300)),
        async |cluster| {
            // Ten renewal periods after it is ready.
            let database = cluster.database().context("PostgreSQL")?.connect().await?;
            let ready_at = Instant::now();
            polling::until("ten renewal periods", WAIT, POLL, async || {
                Ok((ready_at.elapsed() >= Duration::from_secs(1)).then_some(()))
            })
            .await?;
            let joins = database.instances().await?.len();
            let log = cluster.coordinator(0).process().log();
            ensure!(
                joins == 1 && !log.contains("lease expired"),
                "the instance lost its first lease during start-up ({joins} instance rows):\n{}",
                log.lines()
                    .filter(|l| l.contains("joined") || l.contains("lease") || l.contains("ready"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            Ok(())
        },
    )
    .await;
}

/// An instance claiming many orphaned sagas resumes each (reading it from the database)
/// inside its lease loop, so no renewal runs meanwhile: past 0.8 × lease it gives up every
/// saga it holds, the ones it just claimed included, and rejoins, and the others claim them
/// again. Here instance 0 is killed holding 2,000 sagas (their calls hang) and instance 1
/// claims them (1,000 per pass) with a 1 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_many_sagas_does_not_cost_the_claimer_its_lease() {
    const SAGAS: usize = 2_000;
    // Every create_order call hangs, and the order participant's policy keeps it that way:
    // no call times out within the test (so its circuit never opens and no saga rolls back)
    // and the bulkhead queues every call. On a loaded machine the default 5 s timeout ran
    // out while the sagas were still being submitted, and most of them rolled back.
    let policy_dir = tempfile::tempdir().expect("a temporary directory");
    let policy = policy_dir.path().join("order-policy.json");
    std::fs::write(
        &policy,
        r#"{"timeout_ms": 3600000, "max_concurrency": 64, "queue_capacity": 10000}"#,
    )
    .expect("the policy file");
    let options = ClusterOptions {
        order_args: vec![
            "--faults".into(),
            "hang=true".into(),
            "--policy".into(),
            policy.into(),
        ],
        ..ClusterOptions::postgres(2, Duration::from_secs(1))
    };
    Cluster::run_test_with(options, async |cluster| {
        let first = cluster.coordinator(0).client().clone();
        let mut pending = futures::stream::iter((0..SAGAS).map(|i| {
            let first = first.clone();
            async move {
                let plan = SagaPlan::new("claim", i, "acct-0", 1, 1);
                plan.submit(&first, None).await
            }
        }))
        .buffer_unordered(32);
        while let Some(submitted) = pending.next().await {
            submitted?;
        }
        let database = cluster.database().context("PostgreSQL")?.connect().await?;
        // What happened before (a short lease may run out during start-up) is not the point.
        let log_at_kill = cluster.coordinator(1).process().log().len();
        cluster.coordinator_mut(0).kill()?;
        // Every one of them: nothing changes them now until instance 1 claims them.
        let active: i64 = database.active_by_owner().await?.values().sum();
        ensure!(
            active == SAGAS as i64,
            "only {active} of {SAGAS} sagas were active at the kill"
        );
        // Claimed: once instance 0's lease expired, instance 1 is the only live instance and
        // holds every active saga.
        polling::until("instance 1 to claim them all", WAIT, POLL, async || {
            let live = database.live_instances().await?;
            let by_owner = database.active_by_owner().await?;
            let claimed = live.len() == 1
                && by_owner.len() == 1
                && by_owner.keys().all(|owner| live.contains(owner))
                && by_owner.values().sum::<i64>() == active;
            Ok(claimed.then_some(()))
        })
        .await?;
        let log = cluster.coordinator(1).process().log()[log_at_kill..].to_string();
        let lease_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("lease") || l.contains("took over") || l.contains("rejoined"))
            .collect();
        ensure!(
            !log.contains("rejoined the cluster"),
            "instance 1 lost its own lease while claiming {active} sagas and rejoined:\n{}",
            lease_lines.join("\n")
        );
        Ok(())
    })
    .await;
}
