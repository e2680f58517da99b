//! Sends branch calls to participants and classifies their answers.
//!
//! One pooled HTTP client serves every participant (connections are reused, `TCP_NODELAY`
//! set). The answer becomes a `CallEnded` event: `2xx` ok, `409`/`422` rejected, anything else
//! transient; a connection that could not be opened never carried the request, so it is
//! `NotSent` and needs no compensation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use sagas::wire::{
    HEADER_IDEMPOTENCY_KEY, HEADER_SAGA_ID, HEADER_SAGA_PHASE, HEADER_SAGA_STEP, HEADER_TRACEPARENT,
};
use sagas::{BranchRequest, RetryPolicy};

use crate::clock::Clock;
use crate::engine::{CallOutcome, CallRef, Event, Millis, Saga};
use crate::registry::Registry;

pub struct Dispatcher {
    http: reqwest::Client,
    registry: Arc<Registry>,
    clock: Clock,
}

/// Everything needed to send one call, taken from the saga so the call can run on its own task.
pub struct BranchCall {
    pub call: CallRef,
    pub saga_id: String,
    pub step: String,
    pub participant: String,
    pub action: String,
    pub timeout_ms: Option<u64>,
    pub retry: RetryPolicy,
    pub input: serde_json::Value,
}

impl BranchCall {
    pub fn new(saga: &Saga, call: CallRef) -> BranchCall {
        let step = &saga.plan.steps[call.step];
        BranchCall {
            call,
            saga_id: saga.id.clone(),
            step: step.name.clone(),
            participant: step.participant.clone(),
            action: step.action.clone(),
            timeout_ms: step.timeout_ms,
            retry: step.retry.clone(),
            input: saga.input.clone(),
        }
    }
}

/// The delay before attempt `attempt + 1`, with jitter, following `policy`.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_ms))
        .with_max_delay(Duration::from_millis(policy.max_ms))
        .with_factor(policy.multiplier as f32)
        .with_jitter()
        .with_max_times(attempt.max(1) as usize)
        .build()
        .nth(attempt.max(1) as usize - 1)
        .unwrap_or(Duration::from_millis(policy.max_ms))
        // Jitter may double a delay; keep the documented ceiling.
        .min(Duration::from_millis(policy.max_ms))
}

impl Dispatcher {
    pub fn new(registry: Arc<Registry>, clock: Clock) -> Dispatcher {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .expect("a reqwest client with static settings always builds");
        Dispatcher {
            http,
            registry,
            clock,
        }
    }

    /// Sends the call and returns the `CallEnded` event describing its outcome.
    pub async fn send(&self, branch: BranchCall) -> Event {
        let started = Instant::now();
        let (outcome, http_status, error) = self.exchange(&branch).await;
        let latency = started.elapsed();
        let latency_ms = latency.as_millis() as u64;
        crate::telemetry::branch_call(&branch.participant, branch.call.phase, outcome, latency);
        let now: Millis = self.clock.now();
        let retry_at = now + retry_delay(&branch.retry, branch.call.attempt).as_millis() as u64;
        if outcome != CallOutcome::Ok {
            tracing::debug!(saga = %branch.saga_id, step = %branch.step, phase = %branch.call.phase,
                attempt = branch.call.attempt, ?outcome, ?http_status, error = ?error, "branch call failed");
        }
        Event::CallEnded {
            call: branch.call,
            outcome,
            http_status,
            latency_ms,
            error,
            retry_at,
            at: now,
        }
    }

    async fn exchange(&self, branch: &BranchCall) -> (CallOutcome, Option<u16>, Option<String>) {
        let phase = branch.call.phase;
        let Some(participant) = self.registry.participant(&branch.participant) else {
            return (
                CallOutcome::NotSent,
                None,
                Some(format!(
                    "participant {} is not registered",
                    branch.participant
                )),
            );
        };
        let Some(path) = participant
            .actions
            .get(&branch.action)
            .and_then(|a| a.path(phase))
        else {
            let message = format!(
                "participant {} has no {phase} endpoint for action {}",
                branch.participant, branch.action
            );
            return (CallOutcome::NotSent, None, Some(message));
        };
        let url = format!("{}{}", participant.base_url.trim_end_matches('/'), path);
        let timeout =
            Duration::from_millis(branch.timeout_ms.unwrap_or(participant.policy.timeout_ms));
        let body = BranchRequest {
            saga_id: branch.saga_id.clone(),
            step: branch.step.clone(),
            phase,
            input: branch.input.clone(),
        };
        let span_id = uuid::Uuid::now_v7().as_u64_pair().1;
        let trace_id = branch.saga_id.replace('-', "");
        let request = self
            .http
            .post(url)
            .timeout(timeout)
            .header(HEADER_SAGA_ID, &branch.saga_id)
            .header(HEADER_SAGA_STEP, &branch.step)
            .header(HEADER_SAGA_PHASE, phase.as_str())
            .header(HEADER_IDEMPOTENCY_KEY, body.idempotency_key())
            .header(
                HEADER_TRACEPARENT,
                format!("00-{trace_id:0>32.32}-{span_id:016x}-01"),
            )
            .json(&body);
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let outcome = match status {
                    200..=299 => CallOutcome::Ok,
                    409 | 422 => CallOutcome::Rejected,
                    _ => CallOutcome::Transient,
                };
                let error = if outcome == CallOutcome::Ok {
                    None
                } else {
                    let text = response.text().await.unwrap_or_default();
                    Some(format!(
                        "HTTP {status}: {}",
                        text.chars().take(300).collect::<String>()
                    ))
                };
                (outcome, Some(status), error)
            }
            Err(e) if e.is_connect() => (
                CallOutcome::NotSent,
                None,
                Some(format!("connect: {}", error_chain(&e))),
            ),
            Err(e) if e.is_timeout() => (
                CallOutcome::Transient,
                None,
                Some(format!("timed out after {} ms", timeout.as_millis())),
            ),
            Err(e) => (CallOutcome::Transient, None, Some(error_chain(&e))),
        }
    }
}

/// The error and its sources, so "error sending request" says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_under_the_ceiling() {
        let policy = RetryPolicy {
            initial_ms: 100,
            max_ms: 1_000,
            multiplier: 2.0,
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = retry_delay(&policy, 1);
            assert!(
                first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
                "{first:?}"
            );
            let later = retry_delay(&policy, 10);
            assert!(
                later >= Duration::from_millis(100) && later <= Duration::from_millis(1_000),
                "{later:?}"
            );
        }
        assert!(retry_delay(&policy, 4) >= Duration::from_millis(800));
    }
}
