//! The `place_order` workflow end to end against the real binaries, without faults: commit,
//! abort, idempotent resubmission and many concurrent sagas competing for one account.
//!
//! Every test starts its own cluster on free ports, so they run in parallel.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chaos_tests::watch::BalanceWatch;
use chaos_tests::workload::{self, SagaPlan};
use chaos_tests::{Books, Cluster};
use sagas::ClientError;
use sagas::api::{SagaState, SagaView};

/// How long the coordinator may hold a submission open before answering `202`.
const WAIT_MS: u64 = 10_000;

/// How long any one test waits for its sagas to settle.
const SETTLE: Duration = Duration::from_secs(45);

/// Submits with `wait_ms` and, if the answer is still `202`, polls until the saga settles.
async fn run_to_end(cluster: &Cluster, plan: &SagaPlan) -> anyhow::Result<SagaView> {
    let deadline = Instant::now() + SETTLE;
    let submitted =
        workload::submit_until_accepted(cluster.client(), plan, Some(WAIT_MS), deadline).await?;
    if submitted.saga.state.is_terminal() {
        ensure!(
            submitted.status == 200,
            "saga {} is {} but the submission answered {} (terminal sagas answer 200)",
            submitted.saga.id,
            submitted.saga.state,
            submitted.status
        );
        return Ok(submitted.saga);
    }
    ensure!(
        submitted.status == 202,
        "saga {} is {} but the submission answered {} (running sagas answer 202)",
        submitted.saga.id,
        submitted.saga.state,
        submitted.status
    );
    workload::await_settled(cluster.client(), &submitted.saga.id, deadline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_order_commits() {
    Cluster::run_test(async |cluster| {
        let cluster = &*cluster;
        let mut books = Books::new();
        books.fund(cluster.wallet(), "alice", 1_000).await?;

        let plan = SagaPlan::new("commits", 0, "alice", 250, 25);
        let saga = run_to_end(cluster, &plan).await?;
        books.record(plan.clone(), Some(saga.id.clone()));
        ensure!(
            saga.state == SagaState::Committed,
            "saga {} should be committed, is {} (error {:?}, steps {:?})",
            saga.id,
            saga.state,
            saga.error,
            saga.steps
        );
        ensure!(saga.workflow == "place_order", "workflow {}", saga.workflow);
        ensure!(saga.input == plan.input(), "input echoed as {}", saga.input);

        let account = cluster.wallet().account("alice").await?.context("alice")?;
        ensure!(
            account.balance == 750 && account.frozen == 0,
            "alice should have balance 750 frozen 0, has {account:?}"
        );
        let order = cluster.order().order(&plan.order_id).await?;
        let order = order.with_context(|| format!("order {} was not created", plan.order_id))?;
        ensure!(
            order.status == "created" && order.account == "alice" && order.amount == 250,
            "order {} should be created for alice/250, is {order:?}",
            plan.order_id
        );
        let points = cluster.points().points("alice").await?;
        ensure!(points == 25, "alice should have 25 points, has {points}");

        books.audit(cluster).await?.into_result()?;
        cluster.ensure_no_panics()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_order_aborts_on_insufficient_funds() {
    Cluster::run_test(async |cluster| {
        let cluster = &*cluster;
        let mut books = Books::new();
        books.fund(cluster.wallet(), "bob", 100).await?;

        let plan = SagaPlan::new("aborts", 0, "bob", 500, 50);
        let saga = run_to_end(cluster, &plan).await?;
        books.record(plan.clone(), Some(saga.id.clone()));
        ensure!(
            saga.state == SagaState::Aborted,
            "saga {} should be aborted, is {} (error {:?}, steps {:?})",
            saga.id,
            saga.state,
            saga.error,
            saga.steps
        );

        let account = cluster.wallet().account("bob").await?.context("bob")?;
        ensure!(
            account.balance == 100 && account.frozen == 0,
            "bob should have balance 100 frozen 0, has {account:?}"
        );
        if let Some(order) = cluster.order().order(&plan.order_id).await? {
            ensure!(
                order.status == "cancelled",
                "order {} should be absent or cancelled, is {order:?}",
                plan.order_id
            );
        }
        let points = cluster.points().points("bob").await?;
        ensure!(points == 0, "bob should have no points, has {points}");

        books.audit(cluster).await?.into_result()?;
        cluster.ensure_no_panics()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_with_same_key_returns_same_saga() {
    Cluster::run_test(async |cluster| {
        let cluster = &*cluster;
        let client = cluster.client();
        let mut books = Books::new();
        books.fund(cluster.wallet(), "carol", 1_000).await?;

        // Sequential: the second submission finds the first.
        let plan = SagaPlan::new("resubmit", 0, "carol", 100, 10);
        let first = run_to_end(cluster, &plan).await?;
        let again = plan.submit(client, Some(WAIT_MS)).await?;
        ensure!(
            again.saga.id == first.id,
            "same key {} and body gave saga {} then {}",
            plan.key,
            first.id,
            again.saga.id
        );
        ensure!(
            again.saga.state == first.state && again.status == 200,
            "resubmitting the settled saga {} answered {} with state {} (first saw {})",
            first.id,
            again.status,
            again.saga.state,
            first.state
        );
        books.record(plan.clone(), Some(first.id.clone()));

        // The same key with another body is refused.
        let mut other = plan.clone();
        other.amount += 1;
        match other.submit(client, Some(WAIT_MS)).await {
            Err(ClientError::Api { status: 422, .. }) => {}
            Err(e) => anyhow::bail!("same key with another body should be 422, got {e}"),
            Ok(s) => anyhow::bail!(
                "same key with another body should be 422, got {} with saga {} ({})",
                s.status,
                s.saga.id,
                s.saga.state
            ),
        }

        // Concurrent duplicates race for the key: exactly one saga.
        let plan = SagaPlan::new("resubmit", 1, "carol", 100, 20);
        let racers = (0..8).map(|_| plan.submit(client, Some(WAIT_MS)));
        let answers = futures::future::join_all(racers).await;
        let mut ids = Vec::new();
        for answer in answers {
            ids.push(
                answer
                    .context("a concurrent duplicate submission failed")?
                    .saga
                    .id,
            );
        }
        ids.sort();
        ids.dedup();
        ensure!(
            ids.len() == 1,
            "8 concurrent submissions with key {} created several sagas: {ids:?}",
            plan.key
        );
        let settled = workload::await_settled(client, &ids[0], Instant::now() + SETTLE).await?;
        ensure!(
            settled.state == SagaState::Committed,
            "saga {} should be committed, is {}",
            settled.id,
            settled.state
        );
        books.record(plan, Some(ids[0].clone()));

        // Deducted and awarded once per saga despite the resubmissions.
        books.audit(cluster).await?.into_result()?;
        cluster.ensure_no_panics()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_sagas_never_over_deduct() {
    const SAGAS: usize = 100;
    const FUNDS: u64 = 1_000;
    const AMOUNT: u64 = 30;

    Cluster::run_test(async |cluster| {
        let cluster = &*cluster;
        let client = cluster.client();
        let mut books = Books::new();
        books.fund(cluster.wallet(), "dave", FUNDS).await?;

        let watch = BalanceWatch::start(cluster.wallet().clone(), Duration::from_millis(20));
        let deadline = Instant::now() + SETTLE;
        let plans: Vec<SagaPlan> = (0..SAGAS)
            .map(|i| SagaPlan::new("hundred", i, "dave", AMOUNT, 1 + i as u64))
            .collect();
        let runs = plans
            .iter()
            .map(|plan| workload::submit_and_settle(client, plan, Some(WAIT_MS), deadline));
        let settled = futures::future::join_all(runs).await;
        let report = watch.stop().await?;

        let mut committed = 0;
        for (plan, saga) in plans.iter().zip(settled) {
            let saga = saga?;
            if saga.state == SagaState::Committed {
                committed += 1;
            }
            books.record(plan.clone(), Some(saga.id));
        }
        let audit = books.audit(cluster).await?;
        report.ensure_clean()?;
        let audit = audit.into_result()?;
        let expected = (FUNDS / AMOUNT) as usize;
        ensure!(
            committed == expected,
            "{committed} sagas committed, expected exactly {expected} = floor({FUNDS}/{AMOUNT}) \
             ({audit})"
        );
        let account = cluster.wallet().account("dave").await?.context("dave")?;
        ensure!(
            account.balance == (FUNDS % AMOUNT) as i64 && account.frozen == 0,
            "dave should end with balance {} frozen 0, has {account:?}",
            FUNDS % AMOUNT
        );
        cluster.ensure_no_panics()
    })
    .await;
}

/// Clients that give up on a submission (timeout, disconnect) while the coordinator handles it,
/// then resubmit with the same key: every saga must still run to the end. A submission must not
/// be left persisted but never driven because the client went away mid-request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_submissions_still_settle() {
    const SAGAS: usize = 100;

    Cluster::run_test(async |cluster| {
        let cluster = &*cluster;
        let mut books = Books::new();
        books.fund(cluster.wallet(), "erin", 100_000).await?;

        let plans: Vec<SagaPlan> = (0..SAGAS)
            .map(|i| SagaPlan::new("abandoned", i, "erin", 10, 1))
            .collect();
        // Impatient clients: 1..=15 ms per request, so some give up before the answer and some
        // before the request is handled at all.
        let impatient = plans.iter().enumerate().map(|(i, plan)| {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(1 + (i as u64 % 15)))
                .build()
                .expect("a reqwest client with static settings always builds");
            let client = sagas::CoordinatorClient::with_http(cluster.coordinator_url(), http);
            async move { plan.submit(&client, None).await.is_ok() }
        });
        let answered = futures::future::join_all(impatient)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();

        let deadline = Instant::now() + Duration::from_secs(20);
        let patient = plans.iter().map(|plan| async move {
            let submitted =
                workload::submit_until_accepted(cluster.client(), plan, None, deadline).await?;
            let id = submitted.saga.id;
            match workload::await_settled(cluster.client(), &id, deadline).await {
                Ok(saga) => Ok(saga),
                Err(e) => Err(anyhow::anyhow!(
                    "key {}: {e:#}\n{}",
                    plan.key,
                    workload::saga_report(cluster.client(), &id).await
                )),
            }
        });
        let settled = futures::future::join_all(patient).await;
        let mut failures = Vec::new();
        for (plan, saga) in plans.iter().zip(settled) {
            match saga {
                Ok(saga) => books.record(plan.clone(), Some(saga.id)),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        ensure!(
            failures.is_empty(),
            "{} of {SAGAS} sagas did not settle after their first submission was abandoned \
             ({answered} impatient submissions got an answer); first:\n{}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        );
        let audit = books.audit(cluster).await?;
        ensure!(
            audit.committed == SAGAS,
            "every abandoned saga was affordable and must commit: {audit}"
        );
        audit.into_result()?;
        cluster.ensure_no_panics()
    })
    .await;
}
