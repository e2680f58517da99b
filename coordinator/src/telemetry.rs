//! Prometheus metrics. One recorder per process (the `metrics` facade is global), shared by
//! every coordinator the process runs; `GET /metrics` renders it.
//!
//! Prometheus conventions: one prefix (`coordinator_`), units in the names (`_seconds`,
//! `_bytes`), counters end in `_total`, every metric has a `# HELP` line, and every series is
//! declared before anything happens (at zero): unlabelled ones when the recorder is installed,
//! per-workflow and per-participant ones as soon as the workflow or participant is known, so
//! that a dashboard or an alert sees `0`, not "no data", until the first event.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Gauge, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use sagas::{Phase, StepKind};

use crate::alerts::AlertKind;
use crate::engine::{CallOutcome, Lifecycle};

/// Every metric's name, in one place.
pub mod names {
    pub const SAGAS_SUBMITTED: &str = "coordinator_sagas_submitted_total";
    pub const SAGAS_ACTIVE: &str = "coordinator_sagas_active";
    pub const SAGAS_PARKED: &str = "coordinator_sagas_parked";
    pub const SAGAS_FINISHED: &str = "coordinator_sagas_finished_total";
    pub const SAGA_DURATION: &str = "coordinator_saga_duration_seconds";
    pub const SAGAS_STUCK: &str = "coordinator_sagas_stuck_total";
    pub const BRANCH_CALLS: &str = "coordinator_branch_calls_total";
    pub const BRANCH_CALL_DURATION: &str = "coordinator_branch_call_duration_seconds";
    pub const LOG_BYTES: &str = "coordinator_log_bytes_total";
    pub const LOG_FLUSHES: &str = "coordinator_log_flushes_total";
    pub const SAGAS_ARCHIVED: &str = "coordinator_sagas_archived_total";
    pub const LOG_FLUSH_BATCH: &str = "coordinator_log_flush_batch_size";
    pub const LOG_FLUSH_DURATION: &str = "coordinator_log_flush_duration_seconds";
    pub const SAGAS_IN_STATE: &str = "coordinator_sagas_in_state";
    pub const BRANCH_CALL_RETRIES: &str = "coordinator_branch_call_retries_total";
    pub const CIRCUIT_STATE: &str = "coordinator_circuit_state";
    pub const CIRCUIT_OPENED: &str = "coordinator_circuit_opened_total";
    pub const BULKHEAD_QUEUED: &str = "coordinator_bulkhead_queued";
    pub const BULKHEAD_IN_FLIGHT: &str = "coordinator_bulkhead_in_flight";
    pub const ALERTS_SENT: &str = "coordinator_alerts_sent_total";
    pub const ALERTS_FAILED: &str = "coordinator_alerts_failed_total";
    pub const ALERTS_DROPPED: &str = "coordinator_alerts_dropped_total";
}
use names::*;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once and declares the unlabelled series. `None` if another recorder
/// was installed first (then metrics go there and `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static, non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            if installed.is_some() {
                describe();
            }
            installed
        })
        .as_ref()
}

/// `# HELP` of every metric, and the unlabelled series at zero.
fn describe() {
    describe_counter!(SAGAS_SUBMITTED, "Sagas accepted, by workflow.");
    describe_gauge!(
        SAGAS_ACTIVE,
        "Sagas not yet settled (running, settling, stuck, or owing a callback) in this process."
    );
    describe_gauge!(
        SAGAS_PARKED,
        "Active sagas waiting without a task (a long retry backoff, stuck); part of coordinator_sagas_active."
    );
    describe_counter!(
        SAGAS_FINISHED,
        "Sagas that ended, by workflow and state (committed, aborted)."
    );
    describe_histogram!(
        SAGA_DURATION,
        Unit::Seconds,
        "Time from submission to the terminal state, by workflow and state."
    );
    describe_counter!(
        SAGAS_STUCK,
        "Sagas that turned stuck (a confirm, cancel or compensate exhausted its attempts), by workflow."
    );
    describe_counter!(
        BRANCH_CALLS,
        "Branch calls by participant, phase and outcome (ok, rejected, transient, not_sent, refused)."
    );
    describe_histogram!(
        BRANCH_CALL_DURATION,
        Unit::Seconds,
        "Branch call latency by participant and phase, including waiting for a bulkhead slot."
    );
    describe_counter!(
        LOG_BYTES,
        Unit::Bytes,
        "Bytes (keys and values) the saga log wrote: events, snapshots, index entries."
    );
    describe_counter!(LOG_FLUSHES, "Group-commit flushes of the saga log.");
    describe_counter!(
        SAGAS_ARCHIVED,
        "Settled sagas moved from the embedded log to its archive (0 on PostgreSQL)."
    );
    describe_histogram!(LOG_FLUSH_BATCH, "Writers served by one group-commit flush.");
    describe_histogram!(
        LOG_FLUSH_DURATION,
        Unit::Seconds,
        "Time one group-commit flush took."
    );
    describe_gauge!(
        SAGAS_IN_STATE,
        "Active sagas in this process by workflow and state (running, confirming, compensating, \
         stuck; committed or aborted while a completion callback is owed)."
    );
    describe_counter!(
        BRANCH_CALL_RETRIES,
        "Branch calls that were retries (attempt 2 or later of their phase), by participant and phase."
    );
    describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker state per participant in this process: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        CIRCUIT_OPENED,
        "Times a participant's circuit breaker opened from closed (each also alerts)."
    );
    describe_gauge!(
        BULKHEAD_QUEUED,
        "Branch calls waiting for a bulkhead slot, per participant."
    );
    describe_gauge!(
        BULKHEAD_IN_FLIGHT,
        "Branch calls holding a bulkhead slot (sent, awaiting the answer), per participant."
    );
    describe_counter!(ALERTS_SENT, "Alerts the webhook accepted, by kind.");
    describe_counter!(
        ALERTS_FAILED,
        "Alerts given up after every delivery attempt failed, by kind."
    );
    describe_counter!(
        ALERTS_DROPPED,
        "Alerts dropped undelivered because the alert queue was full (the oldest go first), by kind."
    );
    gauge!(SAGAS_ACTIVE).increment(0.0);
    gauge!(SAGAS_PARKED).increment(0.0);
    counter!(LOG_BYTES).increment(0);
    counter!(LOG_FLUSHES).increment(0);
    counter!(SAGAS_ARCHIVED).increment(0);
    for kind in AlertKind::ALL {
        counter!(ALERTS_SENT, "kind" => kind.as_str()).increment(0);
        counter!(ALERTS_FAILED, "kind" => kind.as_str()).increment(0);
        counter!(ALERTS_DROPPED, "kind" => kind.as_str()).increment(0);
    }
}

/// Every state a saga can be in, by its API name.
const STATES: [&str; 6] = [
    "running",
    "confirming",
    "compensating",
    "stuck",
    "committed",
    "aborted",
];

/// Declares a workflow's series at zero.
pub fn workflow_known(workflow: &str) {
    counter!(SAGAS_SUBMITTED, "workflow" => workflow.to_string()).increment(0);
    counter!(SAGAS_STUCK, "workflow" => workflow.to_string()).increment(0);
    for state in ["committed", "aborted"] {
        counter!(SAGAS_FINISHED, "workflow" => workflow.to_string(), "state" => state).increment(0);
    }
    for state in STATES {
        gauge!(SAGAS_IN_STATE, "workflow" => workflow.to_string(), "state" => state).increment(0.0);
    }
}

/// Declares a participant's series at zero: every phase its actions have, every outcome.
pub fn participant_known(participant: &str, kinds: impl IntoIterator<Item = StepKind>) {
    let mut phases: Vec<Phase> = Vec::new();
    for kind in kinds {
        phases.push(kind.forward());
        phases.push(kind.undo());
        phases.extend(kind.commit());
    }
    phases.sort();
    phases.dedup();
    for phase in phases {
        for outcome in OUTCOMES {
            counter!(BRANCH_CALLS, "participant" => participant.to_string(), "phase" => phase.as_str(), "outcome" => outcome.as_str())
                .increment(0);
        }
        counter!(BRANCH_CALL_RETRIES, "participant" => participant.to_string(), "phase" => phase.as_str())
            .increment(0);
    }
    // Present at its current value if a lane already runs (a re-registration), else at 0.
    gauge!(CIRCUIT_STATE, "participant" => participant.to_string()).increment(0.0);
    counter!(CIRCUIT_OPENED, "participant" => participant.to_string()).increment(0);
    bulkhead_gauges(participant).0.increment(0.0);
    bulkhead_gauges(participant).1.increment(0.0);
}

const OUTCOMES: [CallOutcome; 5] = [
    CallOutcome::Ok,
    CallOutcome::Rejected,
    CallOutcome::Transient,
    CallOutcome::NotSent,
    CallOutcome::Refused,
];

pub fn saga_submitted(workflow: &str) {
    counter!(SAGAS_SUBMITTED, "workflow" => workflow.to_string()).increment(1);
}

/// A saga became active in this process (submitted, resumed, taken over), in `lifecycle`.
pub fn saga_started(workflow: &str, lifecycle: Lifecycle) {
    gauge!(SAGAS_ACTIVE).increment(1.0);
    in_state(workflow, lifecycle).increment(1.0);
}

/// A saga left this process's active sagas, last seen in `lifecycle`.
pub fn saga_stopped(workflow: &str, lifecycle: Lifecycle) {
    gauge!(SAGAS_ACTIVE).decrement(1.0);
    in_state(workflow, lifecycle).decrement(1.0);
}

/// An active saga moved from one state to another.
pub fn saga_moved(workflow: &str, from: Lifecycle, to: Lifecycle) {
    if from.name() != to.name() {
        in_state(workflow, from).decrement(1.0);
        in_state(workflow, to).increment(1.0);
    }
}

fn in_state(workflow: &str, lifecycle: Lifecycle) -> Gauge {
    gauge!(SAGAS_IN_STATE, "workflow" => workflow.to_string(), "state" => lifecycle.name())
}

/// Active sagas waiting without a task (a long backoff, stuck), part of the active ones.
pub fn saga_parked(parked: bool) {
    let gauge = gauge!(SAGAS_PARKED);
    if parked {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

pub fn saga_finished(workflow: &str, state: &'static str, age: Duration) {
    counter!(SAGAS_FINISHED, "workflow" => workflow.to_string(), "state" => state).increment(1);
    histogram!(SAGA_DURATION, "workflow" => workflow.to_string(), "state" => state)
        .record(age.as_secs_f64());
}

pub fn saga_stuck(workflow: &str) {
    counter!(SAGAS_STUCK, "workflow" => workflow.to_string()).increment(1);
}

pub fn branch_call(participant: &str, phase: Phase, outcome: CallOutcome, latency: Duration) {
    let participant = participant.to_string();
    counter!(BRANCH_CALLS, "participant" => participant.clone(), "phase" => phase.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    histogram!(BRANCH_CALL_DURATION, "participant" => participant, "phase" => phase.as_str())
        .record(latency.as_secs_f64());
}

/// A branch call that is a retry (attempt 2 or later of its phase).
pub fn branch_call_retried(participant: &str, phase: Phase) {
    counter!(BRANCH_CALL_RETRIES, "participant" => participant.to_string(), "phase" => phase.as_str())
        .increment(1);
}

/// A participant's circuit breaker state, as the `coordinator_circuit_state` value says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go through.
    Closed,
    /// Probe calls go through; the first answer decides.
    HalfOpen,
    /// Calls are refused.
    Open,
}

/// The participant's circuit moved from `from` to `to`.
pub fn circuit_changed(participant: &str, from: Circuit, to: Circuit) {
    let value = match to {
        Circuit::Closed => 0.0,
        Circuit::HalfOpen => 1.0,
        Circuit::Open => 2.0,
    };
    gauge!(CIRCUIT_STATE, "participant" => participant.to_string()).set(value);
    if from == Circuit::Closed && to == Circuit::Open {
        counter!(CIRCUIT_OPENED, "participant" => participant.to_string()).increment(1);
    }
}

/// The participant's bulkhead gauges: (queued, in flight). Handles, so that the bulkhead
/// updates them without a lookup per call.
pub fn bulkhead_gauges(participant: &str) -> (Gauge, Gauge) {
    (
        gauge!(BULKHEAD_QUEUED, "participant" => participant.to_string()),
        gauge!(BULKHEAD_IN_FLIGHT, "participant" => participant.to_string()),
    )
}

/// The webhook accepted an alert.
pub fn alert_sent(kind: AlertKind) {
    counter!(ALERTS_SENT, "kind" => kind.as_str()).increment(1);
}

/// An alert was given up after its attempts.
pub fn alert_failed(kind: AlertKind) {
    counter!(ALERTS_FAILED, "kind" => kind.as_str()).increment(1);
}

/// An alert was dropped from a full queue.
pub fn alert_dropped(kind: AlertKind) {
    counter!(ALERTS_DROPPED, "kind" => kind.as_str()).increment(1);
}

/// Bytes (keys and values) the saga log handed to the store: events, snapshots, index entries.
pub fn log_written(bytes: usize) {
    counter!(LOG_BYTES).increment(bytes as u64);
}

/// Settled sagas moved to the embedded store's archive.
pub fn sagas_archived(count: usize) {
    counter!(SAGAS_ARCHIVED).increment(count as u64);
}

/// One group-commit flush and how many waiters it served.
pub fn log_flushed(waiters: usize, took: Duration) {
    counter!(LOG_FLUSHES).increment(1);
    histogram!(LOG_FLUSH_BATCH).record(waiters as f64);
    histogram!(LOG_FLUSH_DURATION).record(took.as_secs_f64());
}
