//! A participant's lane: its bulkhead, circuit breaker and outbound rate limiter, built from
//! its registered policy and rebuilt when the policy changes.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sagas::ParticipantSpec;

use super::breaker::Breaker;
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
    pub fn new(spec: Arc<ParticipantSpec>) -> Lane {
        let policy = spec.effective_policy();
        Lane {
            breaker: Breaker::new(&policy.circuit_breaker),
            bulkhead: Bulkhead::new(policy.max_concurrency, policy.queue_capacity),
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
