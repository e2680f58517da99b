//! A circuit breaker per participant (`failsafe`), with its state readable for the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Config, Instrument, StateMachine};

use sagas::participant::CircuitBreakerPolicy;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Mirrors the state machine's transitions into an atomic the API can read.
#[derive(Clone, Default)]
struct StateMirror(Arc<AtomicU8>);

impl Instrument for StateMirror {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.0.store(OPEN, Ordering::Relaxed);
    }
    fn on_half_open(&self) {
        self.0.store(HALF_OPEN, Ordering::Relaxed);
    }
    fn on_closed(&self) {
        self.0.store(CLOSED, Ordering::Relaxed);
    }
}

pub struct Breaker {
    machine: StateMachine<ConsecutiveFailures<Constant>, StateMirror>,
    state: StateMirror,
    open_for: Duration,
}

impl Breaker {
    /// Opens after `failure_threshold` consecutive failures, for `open_ms`; then lets calls
    /// through half-open: the first success closes it, a failure opens it again.
    pub fn new(policy: &CircuitBreakerPolicy) -> Breaker {
        // Registration keeps `open_ms` in its documented range; a value stored before that
        // check existed is capped, since the breaker adds it to an `Instant`.
        let open_for = Duration::from_millis(policy.open_ms.min(*sagas::limits::DELAY_MS.end()));
        let state = StateMirror::default();
        let machine = Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                policy.failure_threshold,
                backoff::constant(open_for),
            ))
            .instrument(state.clone())
            .build();
        Breaker {
            machine,
            state,
            open_for,
        }
    }

    /// May a call go out now? (An open circuit whose time is up turns half-open here.)
    pub fn permits(&self) -> bool {
        self.machine.is_call_permitted()
    }

    pub fn on_success(&self) {
        self.machine.on_success();
    }

    pub fn on_failure(&self) {
        self.machine.on_error();
    }

    /// How long an open circuit stays open.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }

    /// `closed`, `open` or `half_open`.
    pub fn state(&self) -> &'static str {
        match self.state.0.load(Ordering::Relaxed) {
            OPEN => "open",
            HALF_OPEN => "half_open",
            _ => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_probe_succeeds() {
        let breaker = Breaker::new(&CircuitBreakerPolicy {
            failure_threshold: 3,
            open_ms: 30,
        });
        for _ in 0..2 {
            assert!(breaker.permits());
            breaker.on_failure();
        }
        breaker.on_success();
        assert_eq!(breaker.state(), "closed", "a success resets the count");
        for _ in 0..3 {
            breaker.on_failure();
        }
        assert_eq!(breaker.state(), "open");
        assert!(!breaker.permits());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !breaker.permits() {
            assert!(std::time::Instant::now() < deadline, "never half-opened");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(breaker.state(), "half_open");
        breaker.on_success();
        assert_eq!(breaker.state(), "closed");
    }
}
