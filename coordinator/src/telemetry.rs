//! Prometheus metrics. One recorder per process (the `metrics` facade is global), shared by
//! every coordinator the process runs; `GET /metrics` renders it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use sagas::Phase;

use crate::engine::CallOutcome;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once. `None` if another recorder was installed first (then metrics
/// go there and `/metrics` says so).
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
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

pub fn saga_submitted(workflow: &str) {
    counter!("saga_submissions_total", "workflow" => workflow.to_string()).increment(1);
}

pub fn saga_started() {
    gauge!("sagas_active").increment(1.0);
}

pub fn saga_stopped() {
    gauge!("sagas_active").decrement(1.0);
}

/// Active sagas waiting without a task (a long backoff, stuck), part of `sagas_active`.
pub fn saga_parked(parked: bool) {
    let gauge = gauge!("sagas_parked");
    if parked {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

pub fn saga_finished(workflow: &str, state: &'static str, age: Duration) {
    counter!("sagas_finished_total", "workflow" => workflow.to_string(), "state" => state)
        .increment(1);
    histogram!("saga_duration_seconds", "workflow" => workflow.to_string(), "state" => state)
        .record(age.as_secs_f64());
}

pub fn saga_stuck(workflow: &str) {
    counter!("sagas_stuck_total", "workflow" => workflow.to_string()).increment(1);
}

pub fn branch_call(participant: &str, phase: Phase, outcome: CallOutcome, latency: Duration) {
    let outcome = match outcome {
        CallOutcome::Ok => "ok",
        CallOutcome::Rejected => "rejected",
        CallOutcome::Transient => "transient",
        CallOutcome::NotSent => "not_sent",
        CallOutcome::Refused => "refused",
    };
    let participant = participant.to_string();
    counter!("branch_calls_total", "participant" => participant.clone(), "phase" => phase.as_str(), "outcome" => outcome)
        .increment(1);
    histogram!("branch_call_duration_seconds", "participant" => participant, "phase" => phase.as_str())
        .record(latency.as_secs_f64());
}

/// Bytes (keys and values) the saga log handed to sled: events, snapshots, index entries.
pub fn log_written(bytes: usize) {
    counter!("coordinator_log_bytes_total").increment(bytes as u64);
}

/// One group-commit flush and how many waiters it served.
pub fn log_flushed(waiters: usize, took: Duration) {
    counter!("log_flushes_total").increment(1);
    histogram!("log_flush_batch_size").record(waiters as f64);
    histogram!("log_flush_duration_seconds").record(took.as_secs_f64());
}
