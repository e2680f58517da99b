//! SIGKILL each participant in turn while sagas are in flight, restart it on the same port and
//! data directory, and prove that every saga still settles as committed or aborted with the
//! books balanced: the coordinator retries transient failures, participants are idempotent and
//! handle null compensation and hanging `try`s.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::watch::BalanceWatch;
use chaos_tests::workload::{self, SagaPlan};
use chaos_tests::{Books, Cluster, Participant};
use sagas::api::SagaState;

const SAGAS: usize = 120;
const ACCOUNTS: usize = 4;
const FUNDS: u64 = 1_500;
const DEADLINE: Duration = Duration::from_secs(60);
const STAGGER: Duration = Duration::from_millis(8);
const FIRST_KILL: Duration = Duration::from_millis(200);
const KILL_EVERY: Duration = Duration::from_millis(300);
const DOWNTIME: Duration = Duration::from_millis(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_crashes_mid_flight() {
    Cluster::run_test(scenario).await;
}

async fn scenario(cluster: &mut Cluster) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut books = Books::funded(cluster.wallet(), "p-acct", ACCOUNTS, FUNDS).await?;
    let watch = BalanceWatch::start(cluster.wallet().clone(), Duration::from_millis(25));

    let plans: Vec<SagaPlan> = (0..SAGAS)
        .map(|i| {
            let account = format!("p-acct-{}", i % ACCOUNTS);
            let amount = if i % 6 == 0 {
                999_999
            } else {
                50 + (i as u64 % 4) * 25
            };
            SagaPlan::new("pcrash", i, &account, amount, 1 + i as u64)
        })
        .collect();
    // Clients start 8 ms apart, so traffic spans about a second and every kill below lands
    // on sagas in flight.
    let clients: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let client = cluster.client().clone();
            let plan = plan.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STAGGER * i as u32).await;
                workload::submit_and_settle(&client, &plan, None, deadline).await
            })
        })
        .collect();

    // The fault schedule: each participant in turn is SIGKILLed, stays down a while and comes
    // back on the same port and data directory.
    for (round, participant) in Participant::ALL.into_iter().enumerate() {
        tokio::time::sleep_until((started + FIRST_KILL + KILL_EVERY * round as u32).into()).await;
        cluster.kill_participant(participant)?;
        tokio::time::sleep(DOWNTIME).await;
        cluster
            .restart_participant(participant)
            .await
            .with_context(|| format!("restarting {}", participant.name()))?;
    }

    let mut errors = Vec::new();
    let mut committed = 0;
    for (plan, client) in plans.iter().zip(clients) {
        match client.await.context("a client task panicked")? {
            Ok(saga) => {
                if saga.state == SagaState::Committed {
                    committed += 1;
                }
                books.record(plan.clone(), Some(saga.id));
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let report = watch.stop().await?;
    ensure!(
        errors.is_empty(),
        "{} of {SAGAS} clients failed; first ones:\n{}",
        errors.len(),
        workload::first_errors(&errors)
    );
    let audit = books.audit(cluster).await?;
    // How many branch calls the kills broke (a weak schedule would break none).
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for record in books.sagas() {
        if let Some(id) = &record.saga_id {
            for event in cluster.client().saga_events(id).await?.events {
                if event.kind == "call_ended" {
                    let outcome = event.outcome.unwrap_or_default();
                    *outcomes.entry(outcome).or_default() += 1;
                }
            }
        }
    }
    eprintln!(
        "participants killed and restarted; branch call outcomes {outcomes:?} (`not_sent` and \
         `transient` are calls the kills broke); {committed} committed; total {:?}; {audit}",
        started.elapsed()
    );
    let broken = outcomes.get("transient").copied().unwrap_or(0)
        + outcomes.get("not_sent").copied().unwrap_or(0);
    ensure!(broken > 0, "the kills broke no branch call: {outcomes:?}");
    audit.ensure_commits_and_aborts()?;
    report.ensure_clean()?;
    audit.into_result()?;
    cluster.ensure_no_panics()
}
