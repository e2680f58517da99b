//! A participant's lane: its bulkhead, circuit breaker and outbound rate limiter, built from
//! its registered policy and rebuilt when the policy changes.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sagas::ParticipantSpec;

use super::breaker::{Breaker, OnChange};
use super::bulkhead::Bulkhead;
use super::recent::Recent;

pub struct Lane {
    /// The registration this lane was built from (compared by pointer to spot changes).
    pub spec: Arc<ParticipantSpec>,
    pub breaker: Breaker,
    pub bulkhead: Bulkhead,
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// The last calls' outcomes and latencies, for operators.
    pub recent: Recent,
}

impl Lane {
    /// The lane of participant `name` registered as `spec`; `on_circuit_change` hears of its
    /// breaker's transitions.
    pub fn new(name: &str, spec: Arc<ParticipantSpec>, on_circuit_change: OnChange) -> Lane {
        let policy = spec.effective_policy();
        // A new lane's breaker starts closed, whatever the lane it replaces was in.
        crate::telemetry::circuit_changed(
            name,
            crate::telemetry::Circuit::Closed,
            crate::telemetry::Circuit::Closed,
        );
        Lane {
            breaker: Breaker::new(&policy.circuit_breaker, on_circuit_change),
            bulkhead: Bulkhead::new(
                policy.max_concurrency,
                policy.queue_capacity,
                crate::telemetry::bulkhead_gauges(name),
            ),
            limiter: policy
                .rate_limit_per_sec
                .and_then(NonZeroU32::new)
                .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            recent: Recent::default(),
            spec,
        }
    }
}

/// What `GET /v1/participants/{name}` shows live.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneStats {
    pub circuit: &'static str,
    pub in_flight: u64,
    pub queued: u64,
    pub recent: sagas::api::RecentCalls,
}
