//! Sends branch calls to participants through each participant's lane, and classifies the
//! answers.
//!
//! - [`lane`]: per participant, built from its registered policy: a [`bulkhead`] (bounded
//!   concurrency and queue), a [`breaker`] (circuit breaker) and an outbound rate limiter;
//! - one pooled HTTP client serves every participant (connections reused, `TCP_NODELAY`);
//! - every call carries the saga's trace context (`traceparent`, see [`crate::trace_context`])
//!   and, with span export on, gets a span of its own ([`crate::otlp`]).
//!
//! Outcomes: `2xx` ok, `409`/`422` rejected, anything else transient. A connection that could
//! not be opened never carried the request (`NotSent`); a call refused by the breaker or the
//! bulkhead was never sent either (`Refused`). Neither needs compensation. A request that
//! cannot even be built (a header or URL that registration validation would refuse today,
//! stored before it did) is `NotSent` too, and is no fault of the participant: it never
//! counts against its circuit breaker, and it is built before the breaker or the bulkhead is
//! asked, so it takes no probe and no slot.

pub mod breaker;
pub mod bulkhead;
pub mod lane;
pub mod recent;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use opentelemetry::KeyValue;
use sagas::wire::idempotency_key;
use sagas::wire::{
    HEADER_IDEMPOTENCY_KEY, HEADER_SAGA_ID, HEADER_SAGA_PHASE, HEADER_SAGA_STEP,
    HEADER_TRACEPARENT, TraceParent,
};
use sagas::{Phase, RetryPolicy};
use serde_json::value::RawValue;

use crate::alerts::{AlertFacts, AlertKind, Alerts};
use crate::clock::Clock;
use crate::config::CallbackOptions;
use crate::engine::{CallOutcome, CallRef, Event, Input, Millis, Saga};
use crate::otlp::SpanExport;
use crate::outbound::Outbound;
use crate::registry::Registry;
use crate::telemetry::Circuit;
use lane::{Lane, LaneStats};

/// Sends every branch call and completion callback of one coordinator.
pub struct Dispatcher {
    /// One pooled client for every participant (connections reused, `TCP_NODELAY`).
    http: reqwest::Client,
    registry: Arc<Registry>,
    clock: Clock,
    /// One lane per participant, rebuilt when its registration changes.
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    callbacks: CallbackOptions,
    /// Told when a participant's circuit opens.
    alerts: Alerts,
    /// Span export, when on.
    spans: Option<SpanExport>,
    /// Where calls may go, and their signing.
    outbound: Outbound,
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
    pub input: Input,
    /// The saga's trace context: the call's span (or, without span export, the call itself)
    /// descends from it.
    pub trace: TraceParent,
}

/// The wire body of a branch call (`sagas::BranchRequest`), borrowed: the input goes out as
/// the text the saga holds.
#[derive(serde::Serialize)]
struct BranchBody<'a> {
    saga_id: &'a str,
    step: &'a str,
    phase: Phase,
    input: &'a RawValue,
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
            trace: crate::trace_context::saga_trace(&saga.id, saga.trace),
        }
    }
}

/// How one exchange ended, before it becomes an event.
struct Exchange {
    outcome: CallOutcome,
    http_status: Option<u16>,
    error: Option<String>,
    /// For a refusal: when trying again makes sense (the circuit half-opens).
    retry_after: Option<Duration>,
}

impl Exchange {
    fn failed(outcome: CallOutcome, error: String) -> Exchange {
        Exchange {
            outcome,
            http_status: None,
            error: Some(error),
            retry_after: None,
        }
    }

    /// What the participant's circuit breaker learns from this exchange, if anything.
    fn health(&self) -> Option<bool> {
        match self.outcome {
            // A business answer means the participant is healthy.
            CallOutcome::Ok | CallOutcome::Rejected => Some(true),
            // No answer, or a connection that could not be opened.
            CallOutcome::Transient | CallOutcome::NotSent => Some(false),
            CallOutcome::Refused => None,
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

/// Where a dispatcher reports: alerts, and spans when exported.
pub struct Reporting {
    /// Circuit-open alerts go here.
    pub alerts: Alerts,
    /// Calls get spans here, when span export is on.
    pub spans: Option<SpanExport>,
}

impl Dispatcher {
    /// A dispatcher for the participants of `registry`, sending callbacks as `callbacks` says,
    /// where and as `outbound` allows (guarded, signed), reporting to `reporting`.
    pub fn new(
        registry: Arc<Registry>,
        clock: Clock,
        callbacks: CallbackOptions,
        outbound: Outbound,
        reporting: Reporting,
    ) -> Dispatcher {
        let http = outbound.client(
            reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256),
        );
        Dispatcher {
            http,
            registry,
            clock,
            lanes: Mutex::new(HashMap::new()),
            callbacks,
            alerts: reporting.alerts,
            spans: reporting.spans,
            outbound,
        }
    }

    /// Where calls may go, and their signing.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// What a participant's breaker transitions do: move its gauge; and when it opens from
    /// closed, log and alert (a failed probe re-opening it is the same incident).
    fn circuit_observer(&self, participant: &str) -> breaker::OnChange {
        let alerts = self.alerts.clone();
        let participant = participant.to_string();
        Arc::new(move |from, to| {
            crate::telemetry::circuit_changed(&participant, from, to);
            if from == Circuit::Closed && to == Circuit::Open {
                let message = format!(
                    "circuit opened for participant {participant} after consecutive failed calls: \
                     its forward calls fail fast (those sagas roll back) and confirm, cancel and \
                     compensate wait until a probe call succeeds"
                );
                tracing::warn!(%participant, "ALERT: {message}");
                alerts.raise(
                    AlertKind::CircuitOpen,
                    AlertFacts {
                        participant: Some(participant.clone()),
                        message,
                        ..AlertFacts::default()
                    },
                );
            }
        })
    }

    /// The participant's lane, rebuilt if its registration changed since the lane was built.
    fn lane(&self, participant: &str) -> Option<Arc<Lane>> {
        let spec = self.registry.participant(participant)?;
        let mut lanes = self.lanes.lock().expect("lanes lock poisoned");
        match lanes.get(participant) {
            Some(lane) if Arc::ptr_eq(&lane.spec, &spec) => Some(lane.clone()),
            _ => {
                let observer = self.circuit_observer(participant);
                let lane = Arc::new(Lane::new(participant, spec, observer));
                lanes.insert(participant.to_string(), lane.clone());
                Some(lane)
            }
        }
    }

    /// Live circuit state and load of a participant's lane.
    pub fn lane_stats(&self, participant: &str) -> LaneStats {
        match self.lane(participant) {
            Some(lane) => LaneStats {
                circuit: lane.breaker.state(),
                in_flight: lane.bulkhead.in_flight(),
                queued: lane.bulkhead.queued(),
                recent: lane.recent.summary(),
            },
            None => LaneStats {
                circuit: "closed",
                in_flight: 0,
                queued: 0,
                recent: recent::Recent::default().summary(),
            },
        }
    }

    /// Sends the call and returns the `CallEnded` event describing its outcome.
    pub async fn send(&self, branch: BranchCall) -> Event {
        let started = Instant::now();
        if branch.call.attempt > 1 {
            crate::telemetry::branch_call_retried(&branch.participant, branch.call.phase);
        }
        let span = self.spans.as_ref().map(|spans| {
            spans.call(
                "saga.branch_call",
                branch.trace,
                vec![
                    KeyValue::new("saga.id", branch.saga_id.clone()),
                    KeyValue::new("saga.participant", branch.participant.clone()),
                    KeyValue::new("saga.step", branch.step.clone()),
                    KeyValue::new("saga.action", branch.action.clone()),
                    KeyValue::new("saga.phase", branch.call.phase.as_str()),
                    KeyValue::new("saga.attempt", i64::from(branch.call.attempt)),
                ],
            )
        });
        // The participant's work descends from this call's span; without one, from the saga's.
        let traceparent = span.as_ref().map_or(branch.trace, crate::otlp::context_of);
        let exchange = self.exchange(&branch, traceparent).await;
        let latency = started.elapsed();
        crate::telemetry::branch_call(
            &branch.participant,
            branch.call.phase,
            exchange.outcome,
            latency,
        );
        if let Some(span) = span {
            crate::otlp::end_call(
                span,
                exchange.outcome.as_str(),
                exchange.http_status,
                exchange.error.as_deref(),
            );
        }
        let now: Millis = self.clock.now();
        // A retry time only matters for a call that failed.
        let delay = match (exchange.outcome, exchange.retry_after) {
            (CallOutcome::Ok, _) => Duration::ZERO,
            (_, Some(after)) => after,
            (_, None) => retry_delay(&branch.retry, branch.call.attempt),
        };
        let retry_at = crate::clock::later(now, delay);
        if exchange.outcome != CallOutcome::Ok {
            tracing::debug!(saga = %branch.saga_id, step = %branch.step, phase = %branch.call.phase,
                attempt = branch.call.attempt, outcome = ?exchange.outcome, status = ?exchange.http_status,
                error = ?exchange.error, "branch call failed");
        }
        Event::CallEnded {
            call: branch.call,
            outcome: exchange.outcome,
            http_status: exchange.http_status,
            latency_ms: latency.as_millis() as u64,
            error: exchange.error,
            retry_at,
            at: now,
        }
    }

    async fn exchange(&self, branch: &BranchCall, traceparent: TraceParent) -> Exchange {
        let phase = branch.call.phase;
        let Some(lane) = self.lane(&branch.participant) else {
            let error = format!("participant {} is not registered", branch.participant);
            return Exchange::failed(CallOutcome::NotSent, error);
        };
        let spec = &lane.spec;
        let Some(path) = spec.actions.get(&branch.action).and_then(|a| a.path(phase)) else {
            let error = format!(
                "participant {} has no {phase} endpoint for action {}",
                branch.participant, branch.action
            );
            return Exchange::failed(CallOutcome::NotSent, error);
        };
        let timeout = Duration::from_millis(
            branch
                .timeout_ms
                .unwrap_or(spec.effective_policy().timeout_ms),
        );
        let request = match self.request(branch, &spec.base_url, path, timeout, traceparent) {
            Ok(mut request) => {
                if let Err(error) = self.outbound.check_target(&request) {
                    return Exchange::failed(CallOutcome::NotSent, error);
                }
                self.outbound.sign(&mut request);
                request
            }
            // Nothing left this process: no compensation owed, no fault of the participant.
            Err(e) => {
                let error = format!("request cannot be built, not sent: {}", error_chain(&e));
                return Exchange::failed(CallOutcome::NotSent, error);
            }
        };

        if !lane.breaker.permits() {
            return Exchange {
                outcome: CallOutcome::Refused,
                http_status: None,
                error: Some(format!(
                    "circuit open for participant {}",
                    branch.participant
                )),
                retry_after: Some(lane.breaker.open_for()),
            };
        }
        // Waiting for a slot counts against the call's timeout: a hung participant makes its
        // own callers give up, and nobody else's.
        let slot = match lane.bulkhead.enter(timeout).await {
            Ok(slot) => slot,
            Err(refusal) => {
                return Exchange {
                    outcome: CallOutcome::Refused,
                    http_status: None,
                    error: Some(format!("participant {}: {refusal}", branch.participant)),
                    retry_after: Some(timeout.min(Duration::from_secs(1))),
                };
            }
        };
        if let Some(limiter) = &lane.limiter {
            limiter.until_ready().await;
        }
        let sent = Instant::now();
        let exchange = self.execute(request, timeout).await;
        drop(slot);
        let health = exchange.health();
        if let Some(healthy) = health {
            lane.recent.record(!healthy, sent.elapsed());
        }
        match health {
            Some(true) => lane.breaker.on_success(),
            Some(false) => lane.breaker.on_failure(),
            None => {}
        }
        exchange
    }

    /// The HTTP request of a branch call; an error means it cannot be sent at all.
    fn request(
        &self,
        branch: &BranchCall,
        base_url: &str,
        path: &str,
        timeout: Duration,
        traceparent: TraceParent,
    ) -> Result<reqwest::Request, reqwest::Error> {
        let phase = branch.call.phase;
        let body = BranchBody {
            saga_id: &branch.saga_id,
            step: &branch.step,
            phase,
            input: branch.input.raw(),
        };
        let url = format!("{}{}", base_url.trim_end_matches('/'), path);
        self.http
            .post(url)
            .timeout(timeout)
            .header(HEADER_SAGA_ID, &branch.saga_id)
            .header(HEADER_SAGA_STEP, &branch.step)
            .header(HEADER_SAGA_PHASE, phase.as_str())
            .header(
                HEADER_IDEMPOTENCY_KEY,
                idempotency_key(&branch.saga_id, &branch.step, phase),
            )
            .header(HEADER_TRACEPARENT, traceparent.to_string())
            .json(&body)
            .build()
    }

    async fn execute(&self, request: reqwest::Request, timeout: Duration) -> Exchange {
        match self.http.execute(request).await {
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
                Exchange {
                    outcome,
                    http_status: Some(status),
                    error,
                    retry_after: None,
                }
            }
            Err(e) if e.is_connect() => Exchange::failed(
                CallOutcome::NotSent,
                format!("connect: {}", error_chain(&e)),
            ),
            Err(e) if e.is_timeout() => Exchange::failed(
                CallOutcome::Transient,
                format!("timed out after {} ms", timeout.as_millis()),
            ),
            Err(e) => Exchange::failed(CallOutcome::Transient, error_chain(&e)),
        }
    }

    /// POSTs a finished saga to its callback URL, in the saga's trace `trace`; returns the
    /// `CallbackEnded` event.
    pub async fn callback(
        &self,
        url: &str,
        body: &sagas::api::SagaView,
        attempt: u32,
        trace: TraceParent,
    ) -> Event {
        let span = self.spans.as_ref().map(|spans| {
            spans.call(
                "saga.callback",
                trace,
                vec![
                    KeyValue::new("saga.id", body.id.clone()),
                    KeyValue::new("saga.attempt", i64::from(attempt)),
                ],
            )
        });
        let traceparent = span.as_ref().map_or(trace, crate::otlp::context_of);
        let request = self
            .http
            .post(url)
            .timeout(self.callbacks.timeout)
            .header(HEADER_TRACEPARENT, traceparent.to_string())
            .json(body)
            .build();
        let result = match request {
            Ok(mut request) => match self.outbound.check_target(&request) {
                Ok(()) => {
                    self.outbound.sign(&mut request);
                    self.http
                        .execute(request)
                        .await
                        .map_err(|e| error_chain(&e))
                }
                Err(refused) => Err(refused),
            },
            Err(e) => Err(error_chain(&e)),
        };
        let (delivered, http_status, error) = match result {
            Ok(response) if response.status().is_success() => {
                (true, Some(response.status().as_u16()), None)
            }
            Ok(response) => {
                let status = response.status().as_u16();
                (false, Some(status), Some(format!("HTTP {status}")))
            }
            Err(e) => (false, None, Some(e)),
        };
        if let Some(span) = span {
            let outcome = if delivered { "delivered" } else { "failed" };
            crate::otlp::end_call(span, outcome, http_status, error.as_deref());
        }
        let now = self.clock.now();
        let retry_at = crate::clock::later(now, retry_delay(&self.callbacks.retry, attempt));
        Event::CallbackEnded {
            attempt,
            delivered,
            http_status,
            error,
            retry_at,
            at: now,
        }
    }
}

/// The error and its sources, so "error sending request" says why.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
    fn the_borrowed_body_is_a_branch_request_on_the_wire() {
        let input = Input::from_text(
            r#"{"account": "a", "amount": 5, "big": 123456789012345678901234567890}"#,
        )
        .unwrap();
        let body = BranchBody {
            saga_id: "s1",
            step: "freeze_funds",
            phase: Phase::Try,
            input: input.raw(),
        };
        let request: sagas::BranchRequest =
            serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(request.saga_id, "s1");
        assert_eq!(request.step, "freeze_funds");
        assert_eq!(request.phase, Phase::Try);
        assert_eq!(request.input.get(), input.get());
        assert_eq!(
            request.idempotency_key(),
            idempotency_key("s1", "freeze_funds", Phase::Try)
        );
    }

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
