//! Saga plans for the `place_order` workflow and deadline-bounded loops that submit them,
//! resubmit them with their idempotency key across coordinator restarts, and wait for them to
//! settle. The loops send to [`Coordinators`]: one coordinator, or a cluster's instances in
//! turn ([`crate::failover::FailoverClient`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use sagas::CoordinatorClient;
use sagas::api::{SagaState, SagaView};
use sagas::client::Submitted;
use serde_json::{Value, json};

use crate::failover::Coordinators;

/// The workflow every plan runs.
pub const WORKFLOW: &str = "place_order";

/// One `place_order` saga a test means to run: its idempotency key and its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPlan {
    /// The `Idempotency-Key` of every submission of this saga.
    pub key: String,
    /// The order it creates (unique per saga).
    pub order_id: String,
    /// The wallet account it charges.
    pub account: String,
    /// What it charges.
    pub amount: u64,
    /// What it awards.
    pub points: u64,
}

impl SagaPlan {
    /// A plan whose key and order id are derived from `tag` and `index` (unique per test).
    pub fn new(tag: &str, index: usize, account: &str, amount: u64, points: u64) -> SagaPlan {
        SagaPlan {
            key: format!("{tag}-key-{index}"),
            order_id: format!("{tag}-order-{index}"),
            account: account.into(),
            amount,
            points,
        }
    }

    /// The workflow input `{"order_id","account","amount","points"}`.
    pub fn input(&self) -> Value {
        json!({
            "order_id": self.order_id,
            "account": self.account,
            "amount": self.amount,
            "points": self.points,
        })
    }

    /// Submits once with the plan's key.
    pub async fn submit(
        &self,
        client: &CoordinatorClient,
        wait_ms: Option<u64>,
    ) -> Result<Submitted, sagas::ClientError> {
        client
            .submit(WORKFLOW, self.input(), Some(&self.key), wait_ms)
            .await
    }
}

/// Backoff between retries of one client: 20 ms doubling to 500 ms.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(20))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(500));
    }
}

/// Submits `plan` with its idempotency key until a coordinator answers 2xx. Transport errors
/// (the coordinator is down or restarting), `429` and `5xx` are retried (on the next instance
/// of a cluster) until `deadline`; any other error is returned at once.
pub async fn submit_until_accepted(
    client: &impl Coordinators,
    plan: &SagaPlan,
    wait_ms: Option<u64>,
    deadline: Instant,
) -> anyhow::Result<Submitted> {
    submit_counting_retries(client, plan, wait_ms, deadline, &AtomicU64::new(0)).await
}

/// [`submit_until_accepted`], adding one to `retries` for every resubmission.
pub async fn submit_counting_retries(
    client: &impl Coordinators,
    plan: &SagaPlan,
    wait_ms: Option<u64>,
    deadline: Instant,
    retries: &AtomicU64,
) -> anyhow::Result<Submitted> {
    let mut backoff = Backoff::new();
    for attempt in 0.. {
        match plan.submit(client.for_attempt(attempt), wait_ms).await {
            Ok(submitted) => return Ok(submitted),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                retries.fetch_add(1, Ordering::Relaxed);
                backoff.wait().await;
            }
            Err(e) => bail!("submitting {} (key {}): {e}", plan.order_id, plan.key),
        }
    }
    unreachable!("the attempts never run out")
}

/// Submits `plan` until accepted, then polls the saga until it settles (both by `deadline`).
pub async fn submit_and_settle(
    client: &impl Coordinators,
    plan: &SagaPlan,
    wait_ms: Option<u64>,
    deadline: Instant,
) -> anyhow::Result<SagaView> {
    let submitted = submit_until_accepted(client, plan, wait_ms, deadline).await?;
    await_settled(client, &submitted.saga.id, deadline).await
}

/// The first 20 of `errors`, one a line, for a failure message.
pub fn first_errors(errors: &[String]) -> String {
    errors
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `GET /v1/sagas/{id}` until the saga is `committed`, `aborted` or `stuck` (which needs
/// an operator and will not move on its own). Transport and `5xx` errors are retried (on the
/// next instance of a cluster); past `deadline` the last state seen is in the error.
pub async fn await_settled(
    client: &impl Coordinators,
    saga_id: &str,
    deadline: Instant,
) -> anyhow::Result<SagaView> {
    let mut backoff = Backoff::new();
    let mut attempt = 0;
    loop {
        let last = match client.for_attempt(attempt).get_saga(saga_id).await {
            Ok(view) if view.state.is_terminal() || view.state == SagaState::Stuck => {
                return Ok(view);
            }
            Ok(view) => format!("state {}", view.state),
            Err(e) if e.is_retryable() => {
                attempt += 1;
                e.to_string()
            }
            Err(e) => bail!("polling saga {saga_id}: {e}"),
        };
        if Instant::now() >= deadline {
            bail!("saga {saga_id} did not settle before the deadline; last: {last}");
        }
        backoff.wait().await;
    }
}

/// A compact post-mortem of one saga for failure messages: its state and steps as the
/// coordinator shows them, and its audit trail.
pub async fn saga_report(client: &CoordinatorClient, saga_id: &str) -> String {
    let mut out = match client.get_saga(saga_id).await {
        Ok(view) => {
            let mut out = format!(
                "saga {saga_id}: state {} error {:?} input {}\n",
                view.state, view.error, view.input
            );
            for step in &view.steps {
                out.push_str(&format!(
                    "  step {} ({}, {:?}): {:?} phase {:?} attempts {} last_error {:?}\n",
                    step.name,
                    step.participant,
                    step.kind,
                    step.status,
                    step.phase,
                    step.attempts,
                    step.last_error
                ));
            }
            out
        }
        Err(e) => format!("saga {saga_id}: cannot read it: {e}\n"),
    };
    match client.saga_events(saga_id).await {
        Ok(events) => {
            for event in &events.events {
                out.push_str(&format!(
                    "  #{} {} {} step {:?} phase {:?} attempt {:?} outcome {:?} http {:?} error {:?}\n",
                    event.seq,
                    event.at,
                    event.kind,
                    event.step,
                    event.phase,
                    event.attempt,
                    event.outcome,
                    event.http_status,
                    event.error
                ));
            }
        }
        Err(e) => out.push_str(&format!("  cannot read its events: {e}\n")),
    }
    out
}
