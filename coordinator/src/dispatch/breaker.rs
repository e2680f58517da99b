//! A circuit breaker per participant (`failsafe`), with its state readable for the API and
//! every transition reported (metrics, the circuit-open alert).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Config, Instrument, StateMachine};

use sagas::participant::CircuitBreakerPolicy;

use crate::telemetry::Circuit;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Told every transition, with the state before it.
pub type OnChange = Arc<dyn Fn(Circuit, Circuit) + Send + Sync>;

/// Mirrors the state machine's transitions into an atomic the API can read, and reports them.
#[derive(Clone)]
struct StateMirror {
    state: Arc<AtomicU8>,
    on_change: OnChange,
}

impl StateMirror {
    fn enter(&self, to: u8) {
        let from = self.state.swap(to, Ordering::Relaxed);
        if from != to {
            (self.on_change)(circuit(from), circuit(to));
        }
    }
}

fn circuit(state: u8) -> Circuit {
    match state {
        OPEN => Circuit::Open,
        HALF_OPEN => Circuit::HalfOpen,
        _ => Circuit::Closed,
    }
}

impl Instrument for StateMirror {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.enter(OPEN);
    }
    fn on_half_open(&self) {
        self.enter(HALF_OPEN);
    }
    fn on_closed(&self) {
        self.enter(CLOSED);
    }
}

pub struct Breaker {
    machine: StateMachine<ConsecutiveFailures<Constant>, StateMirror>,
    state: StateMirror,
    open_for: Duration,
}

impl Breaker {
    /// Opens after `failure_threshold` consecutive failures, for `open_ms`; then lets calls
    /// through half-open: the first success closes it, a failure opens it again. `on_change`
    /// hears of every transition.
    pub fn new(policy: &CircuitBreakerPolicy, on_change: OnChange) -> Breaker {
        // Registration keeps `open_ms` in its documented range; a value stored before that
        // check existed is capped, since the breaker adds it to an `Instant`.
        let open_for = Duration::from_millis(policy.open_ms.min(*sagas::limits::DELAY_MS.end()));
        let state = StateMirror {
            state: Arc::new(AtomicU8::new(CLOSED)),
            on_change,
        };
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
        match self.state.state.load(Ordering::Relaxed) {
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
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let breaker = Breaker::new(
            &CircuitBreakerPolicy {
                failure_threshold: 3,
                open_ms: 30,
            },
            Arc::new(move |from, to| record.lock().unwrap().push((from, to))),
        );
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
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Circuit::Closed, Circuit::Open),
                (Circuit::Open, Circuit::HalfOpen),
                (Circuit::HalfOpen, Circuit::Closed)
            ]
        );
    }
}
