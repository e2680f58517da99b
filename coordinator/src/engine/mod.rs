//! The saga engine: a pure state machine with no I/O, no clock and no randomness.
//!
//! - [`plan`]: the resolved steps a saga runs (kinds, dependencies, retry budgets);
//! - [`event`]: the facts recorded in the saga log;
//! - [`state`]: a saga's state, the fold of its events ([`Saga::apply`]);
//! - [`mod@decide`]: what to do next given the state and the time ([`decide()`]);
//! - [`driver`]: the round driver ([`Driver`]) the runtime and the simulation run.
//!
//! The runtime records every event before acting on it, so replaying the log rebuilds exactly
//! the state the runtime had. Randomness (retry jitter) and time enter only as event fields.

pub mod decide;
pub mod driver;
pub mod event;
pub mod plan;
pub mod state;

pub use decide::{Command, decide};
pub use driver::{Changes, Driver, Ready, SNAPSHOT_EVERY};
pub use event::{CallOutcome, CallRef, Created, Decision, Event};
pub use plan::{Plan, PlanStep};
/// A saga's input: the submitter's JSON text, kept exactly as submitted and shared (never
/// re-parsed or copied when a saga's state is copied or a call is built).
pub use sagas::RawJson as Input;
pub use state::{CallbackStatus, Lifecycle, Saga, StepState, StepStatus};

/// Attempts to deliver a completion callback before giving up with an alert, by default (a
/// saga records the budget it started with: [`Created::callback_max_attempts`]).
pub const CALLBACK_MAX_ATTEMPTS: u32 = 12;

/// The engine's budgets (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Attempts to deliver a completion callback before it is abandoned with an alert.
    /// Recorded in each saga when it starts. Default [`CALLBACK_MAX_ATTEMPTS`] (12); 1 to
    /// 10,000.
    pub callback_max_attempts: u32,
    /// Events a saga may log after its last snapshot before the driver asks for a new one:
    /// bounds the work of loading a long-running saga. Default [`SNAPSHOT_EVERY`] (64); 1 to
    /// 1,000,000.
    pub snapshot_every: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            callback_max_attempts: CALLBACK_MAX_ATTEMPTS,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }
}

impl EngineOptions {
    /// Checks both budgets against their documented ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.callback_max_attempts) {
            return Err(format!(
                "callback_max_attempts must be between 1 and 10000 (got {})",
                self.callback_max_attempts
            ));
        }
        if !(1..=1_000_000).contains(&self.snapshot_every) {
            return Err(format!(
                "snapshot_every must be between 1 and 1000000 (got {})",
                self.snapshot_every
            ));
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch. The engine never reads a clock; callers pass `now`.
pub type Millis = u64;

/// An event that cannot apply to the state it was given (the state is then unchanged). The
/// runtime never records one; in a stored log it means the log is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The event is not allowed in the saga's lifecycle state.
    #[error("saga {saga}: {event} is not allowed while {state}")]
    IllegalTransition {
        /// The saga's id.
        saga: String,
        /// The event's name ([`Event::name`]).
        event: &'static str,
        /// The lifecycle state it met.
        state: &'static str,
    },
    /// The event names a step the plan does not have.
    #[error("saga {saga}: no step {step}")]
    UnknownStep {
        /// The saga's id.
        saga: String,
        /// The step index.
        step: usize,
    },
    /// The step's state does not allow the event (a call out of order, dependencies not done).
    #[error("saga {saga}: step {step} cannot {action}: {why}")]
    IllegalStep {
        /// The saga's id.
        saga: String,
        /// The step's name.
        step: String,
        /// What the event tried.
        action: String,
        /// Why not.
        why: String,
    },
    /// A call result for a call that is not outstanding.
    #[error("saga {saga}: result for {call} does not match the outstanding call")]
    UnexpectedResult {
        /// The saga's id.
        saga: String,
        /// The call, as text.
        call: String,
    },
    /// A plan with no steps, a bad dependency or a cycle.
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    /// `decide` broke its contract (a bug): the saga's driver stops rather than guess.
    #[error("saga {saga}: {what}")]
    Contract {
        /// The saga's id.
        saga: String,
        /// What broke.
        what: String,
    },
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
