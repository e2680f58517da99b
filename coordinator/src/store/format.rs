//! The on-disk format of the saga log: what the store writes, separate from the engine's
//! in-memory types, with an explicit version.
//!
//! Every value the store writes (a saga's events, a snapshot, a participant, a workflow
//! version) starts with one byte, its format version:
//!
//! - **version 2** (written today by the embedded store, for events only): byte `0x02`, then
//!   compact binary chunks of events, the plan named by reference ([`compact`]'s docs). One
//!   record holds a saga's whole log; `decode_round` reads it like a round that starts at
//!   sequence 0.
//! - **version 1** (written today for snapshots, plans and registry records, and for every
//!   record of the PostgreSQL store): byte `0x01`, then the record as JSON. A saga's input is stored as
//!   a JSON *string* holding the submitted text, so that no number or key order is changed on
//!   the way through the log (JSON numbers read back through serde's buffering of tagged enums
//!   would be rounded to 64-bit floats).
//! - **version 0** (read only): what coordinators wrote before the format had a version: bare
//!   JSON (first byte `[` or `{`), with the input as a JSON value.
//!
//! Fields added to version 1 since (each absent in older records, with the default it then
//! means): `business_key` (none), `callback_max_attempts` (12), `traceparent` (none: the saga id
//! is the trace id). An older coordinator reading a newer record ignores them.
//!
//! Any other first byte below `0x20` is the version of a newer format: decoding fails with
//! [`FormatError::UnknownVersion`] rather than guessing. The record types mirror the engine's
//! events and state field by field; `tests/log_format.rs` reads checked-in bytes of every
//! version, so a change here that would break existing data fails a test.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use sagas::api::Resolution;
use sagas::wire::TraceParent;
use sagas::{ParticipantSpec, Phase, RawJson, RetryPolicy, StepKind, WorkflowSpec};

use crate::engine::{
    CallOutcome, CallRef, CallbackStatus, Created, Decision, Event, Lifecycle, Millis, Plan,
    PlanStep, Saga, StepState, StepStatus,
};

pub mod compact;
pub use compact::{NoPlans, PlanRef, PlanSource, append_chunk, decode_plan, encode_plan};
#[cfg(any(test, feature = "testing"))]
pub use compact::{PlanTable, encode_events};

/// The version of the JSON records this coordinator writes (snapshots, registry records, and
/// every record of the PostgreSQL store).
pub const CURRENT_VERSION: u8 = 1;

/// The newest version this coordinator reads: version 2, the compact event records of the
/// embedded store ([`encode_events`]).
pub const NEWEST_VERSION: u8 = compact::VERSION;

/// Why stored bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Written by a newer coordinator.
    #[error(
        "record format version {found} is newer than this coordinator reads (up to \
         {NEWEST_VERSION}): run a newer coordinator"
    )]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// Not a record of any known version (truncated, overwritten, not ours).
    #[error("cannot decode a version {version} record: {message}")]
    Malformed {
        /// The version it claimed.
        version: u8,
        /// What does not decode.
        message: String,
    },
}

/// The version of a stored value and the JSON after its prefix.
fn split_version(bytes: &[u8]) -> Result<(u8, &[u8]), FormatError> {
    match bytes.first() {
        Some(&CURRENT_VERSION) => Ok((CURRENT_VERSION, &bytes[1..])),
        // Version 0 has no prefix: it is JSON from its first byte.
        Some(b'[' | b'{' | b' ' | b'\n' | b'\t' | b'\r') => Ok((0, bytes)),
        Some(&compact::VERSION) => Err(FormatError::Malformed {
            version: compact::VERSION,
            message: "a version-2 record where only events are version 2".into(),
        }),
        Some(&found) if found < 0x20 => Err(FormatError::UnknownVersion { found }),
        _ => Err(FormatError::Malformed {
            version: 0,
            message: "neither a version byte nor JSON".into(),
        }),
    }
}

fn malformed(version: u8) -> impl Fn(String) -> FormatError {
    move |message| FormatError::Malformed { version, message }
}

fn parse<T: DeserializeOwned>(version: u8, json: &[u8]) -> Result<T, FormatError> {
    serde_json::from_slice(json).map_err(|e| malformed(version)(e.to_string()))
}

fn write<T: Serialize>(record: &T) -> Vec<u8> {
    let mut bytes = vec![CURRENT_VERSION];
    serde_json::to_writer(&mut bytes, record).expect("log records are plain data");
    bytes
}

/// A saga's input as a record field: the text as a JSON string (version 1), or the JSON
/// value itself (version 0).
fn input_field(input: &RawJson) -> Value {
    Value::String(input.get().to_owned())
}

fn input_from(version: u8, field: Value) -> Result<RawJson, FormatError> {
    match (version, field) {
        (0, value) => Ok(RawJson::from_value(&value)),
        (_, Value::String(text)) => {
            RawJson::from_text(text).map_err(|e| malformed(version)(format!("input: {e}")))
        }
        (_, other) => Err(malformed(version)(format!(
            "input must be JSON text, found {other}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Rounds of events
// ---------------------------------------------------------------------------------------------

/// One event as stored. Field names and tags are the format: never rename one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventRecord {
    Created(Box<CreatedRecord>),
    CallStarted {
        call: CallRef,
        at: Millis,
    },
    CallEnded {
        call: CallRef,
        outcome: CallOutcome,
        http_status: Option<u16>,
        latency_ms: u64,
        error: Option<String>,
        retry_at: Millis,
        at: Millis,
    },
    Decided {
        decision: Decision,
        at: Millis,
    },
    Stuck {
        step: usize,
        reason: String,
        at: Millis,
    },
    Resumed {
        at: Millis,
    },
    RetryRequested {
        at: Millis,
    },
    Operated {
        action: String,
        by: String,
        reason: Option<String>,
        at: Millis,
    },
    RetryNow {
        at: Millis,
    },
    StepResolved {
        step: usize,
        resolution: Resolution,
        at: Millis,
    },
    Finished {
        at: Millis,
    },
    CallbackStarted {
        attempt: u32,
        at: Millis,
    },
    CallbackEnded {
        attempt: u32,
        delivered: bool,
        http_status: Option<u16>,
        error: Option<String>,
        retry_at: Millis,
        at: Millis,
    },
    CallbackAbandoned {
        reason: String,
        at: Millis,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct CreatedRecord {
    id: String,
    workflow: String,
    workflow_version: u32,
    input: Value,
    callback_url: Option<String>,
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    business_key: Option<String>,
    /// Absent in records written before it was recorded: the budget then, 12.
    #[serde(default = "callback_max_attempts_before_it_was_recorded")]
    callback_max_attempts: u32,
    plan: PlanRecord,
    /// The saga's trace context as its W3C header text; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    at: Millis,
}

/// What every saga had before the budget was recorded per saga.
fn callback_max_attempts_before_it_was_recorded() -> u32 {
    12
}

fn traceparent_field(trace: Option<TraceParent>) -> Option<String> {
    trace.map(|t| t.to_string())
}

/// A stored trace context that does not parse is dropped rather than failing the saga's
/// record: the saga runs the same without it (its calls then carry the saga id as trace id).
fn traceparent_from(field: Option<String>) -> Option<TraceParent> {
    field.as_deref().and_then(TraceParent::parse)
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanRecord {
    steps: Vec<PlanStepRecord>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanStepRecord {
    name: String,
    participant: String,
    action: String,
    kind: StepKind,
    deps: Vec<usize>,
    timeout_ms: Option<u64>,
    retry: RetryPolicy,
}

impl From<&Plan> for PlanRecord {
    fn from(plan: &Plan) -> PlanRecord {
        PlanRecord {
            steps: plan
                .steps
                .iter()
                .map(|s| PlanStepRecord {
                    name: s.name.clone(),
                    participant: s.participant.clone(),
                    action: s.action.clone(),
                    kind: s.kind,
                    deps: s.deps.clone(),
                    timeout_ms: s.timeout_ms,
                    retry: s.retry.clone(),
                })
                .collect(),
            timeout_ms: plan.timeout_ms,
        }
    }
}

impl From<PlanRecord> for Plan {
    fn from(record: PlanRecord) -> Plan {
        Plan {
            steps: record
                .steps
                .into_iter()
                .map(|s| PlanStep {
                    name: s.name,
                    participant: s.participant,
                    action: s.action,
                    kind: s.kind,
                    deps: s.deps,
                    timeout_ms: s.timeout_ms,
                    retry: s.retry,
                })
                .collect(),
            timeout_ms: record.timeout_ms,
        }
    }
}

impl From<&Event> for EventRecord {
    fn from(event: &Event) -> EventRecord {
        match event.clone() {
            Event::Created(c) => EventRecord::Created(Box::new(CreatedRecord {
                input: input_field(&c.input),
                plan: PlanRecord::from(&*c.plan),
                id: c.id,
                workflow: c.workflow,
                workflow_version: c.workflow_version,
                callback_url: c.callback_url,
                idempotency_key: c.idempotency_key,
                business_key: c.business_key,
                callback_max_attempts: c.callback_max_attempts,
                traceparent: traceparent_field(c.trace),
                at: c.at,
            })),
            Event::CallStarted { call, at } => EventRecord::CallStarted { call, at },
            Event::CallEnded {
                call,
                outcome,
                http_status,
                latency_ms,
                error,
                retry_at,
                at,
            } => EventRecord::CallEnded {
                call,
                outcome,
                http_status,
                latency_ms,
                error,
                retry_at,
                at,
            },
            Event::Decided { decision, at } => EventRecord::Decided { decision, at },
            Event::Stuck { step, reason, at } => EventRecord::Stuck { step, reason, at },
            Event::Resumed { at } => EventRecord::Resumed { at },
            Event::RetryRequested { at } => EventRecord::RetryRequested { at },
            Event::Operated {
                action,
                by,
                reason,
                at,
            } => EventRecord::Operated {
                action,
                by,
                reason,
                at,
            },
            Event::RetryNow { at } => EventRecord::RetryNow { at },
            Event::StepResolved {
                step,
                resolution,
                at,
            } => EventRecord::StepResolved {
                step,
                resolution,
                at,
            },
            Event::Finished { at } => EventRecord::Finished { at },
            Event::CallbackStarted { attempt, at } => EventRecord::CallbackStarted { attempt, at },
            Event::CallbackEnded {
                attempt,
                delivered,
                http_status,
                error,
                retry_at,
                at,
            } => EventRecord::CallbackEnded {
                attempt,
                delivered,
                http_status,
                error,
                retry_at,
                at,
            },
            Event::CallbackAbandoned { reason, at } => {
                EventRecord::CallbackAbandoned { reason, at }
            }
        }
    }
}

impl EventRecord {
    fn into_event(self, version: u8) -> Result<Event, FormatError> {
        Ok(match self {
            EventRecord::Created(c) => Event::Created(Box::new(Created {
                input: input_from(version, c.input)?,
                plan: Arc::new(Plan::from(c.plan)),
                id: c.id,
                workflow: c.workflow,
                workflow_version: c.workflow_version,
                callback_url: c.callback_url,
                idempotency_key: c.idempotency_key,
                business_key: c.business_key,
                callback_max_attempts: c.callback_max_attempts,
                trace: traceparent_from(c.traceparent),
                at: c.at,
            })),
            EventRecord::CallStarted { call, at } => Event::CallStarted { call, at },
            EventRecord::CallEnded {
                call,
                outcome,
                http_status,
                latency_ms,
                error,
                retry_at,
                at,
            } => Event::CallEnded {
                call,
                outcome,
                http_status,
                latency_ms,
                error,
                retry_at,
                at,
            },
            EventRecord::Decided { decision, at } => Event::Decided { decision, at },
            EventRecord::Stuck { step, reason, at } => Event::Stuck { step, reason, at },
            EventRecord::Resumed { at } => Event::Resumed { at },
            EventRecord::RetryRequested { at } => Event::RetryRequested { at },
            EventRecord::Operated {
                action,
                by,
                reason,
                at,
            } => Event::Operated {
                action,
                by,
                reason,
                at,
            },
            EventRecord::RetryNow { at } => Event::RetryNow { at },
            EventRecord::StepResolved {
                step,
                resolution,
                at,
            } => Event::StepResolved {
                step,
                resolution,
                at,
            },
            EventRecord::Finished { at } => Event::Finished { at },
            EventRecord::CallbackStarted { attempt, at } => Event::CallbackStarted { attempt, at },
            EventRecord::CallbackEnded {
                attempt,
                delivered,
                http_status,
                error,
                retry_at,
                at,
            } => Event::CallbackEnded {
                attempt,
                delivered,
                http_status,
                error,
                retry_at,
                at,
            },
            EventRecord::CallbackAbandoned { reason, at } => {
                Event::CallbackAbandoned { reason, at }
            }
        })
    }
}

/// One round of a saga's events (everything one decision round recorded), as stored.
pub fn encode_round(events: &[Event]) -> Vec<u8> {
    let records: Vec<EventRecord> = events.iter().map(EventRecord::from).collect();
    write(&records)
}

/// The idempotency and business keys of a saga from the first record of its log (a version-2
/// log, or the first round of an older one), without resolving its plan.
pub fn created_keys(bytes: &[u8]) -> Result<(Option<String>, Option<String>), FormatError> {
    if let Some((&compact::VERSION, body)) = bytes.split_first() {
        return compact::created_keys(body);
    }
    match decode_round(bytes, &NoPlans)?.into_iter().next() {
        Some(Event::Created(c)) => Ok((c.idempotency_key, c.business_key)),
        _ => Err(FormatError::Malformed {
            version: CURRENT_VERSION,
            message: "the first round does not start with created".into(),
        }),
    }
}

/// The events of a stored round, in order, of any version; `plans` resolves the plan of a
/// version-2 first event.
pub fn decode_round(bytes: &[u8], plans: &dyn PlanSource) -> Result<Vec<Event>, FormatError> {
    if let Some((&compact::VERSION, body)) = bytes.split_first() {
        return compact::decode_events(body, plans);
    }
    let (version, json) = split_version(bytes)?;
    let records: Vec<EventRecord> = parse(version, json)?;
    records.into_iter().map(|r| r.into_event(version)).collect()
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// A saga's state as of event `seq`. The plan is left out: the saga's first event holds it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    seq: u64,
    saga: SagaRecord,
}

#[derive(Debug, Serialize, Deserialize)]
struct SagaRecord {
    id: String,
    workflow: String,
    workflow_version: u32,
    input: Value,
    callback_url: Option<String>,
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    business_key: Option<String>,
    #[serde(default = "callback_max_attempts_before_it_was_recorded")]
    callback_max_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    created_at: Millis,
    updated_at: Millis,
    lifecycle: Lifecycle,
    steps: Vec<StepRecord>,
    error: Option<String>,
    #[serde(default)]
    callback: CallbackStatus,
}

#[derive(Debug, Serialize, Deserialize)]
struct StepRecord {
    status: StepStatus,
    attempts: u32,
    sent: bool,
    last_phase: Option<Phase>,
    last_error: Option<String>,
    /// Added in version 1; absent (false) in version 0 snapshots.
    #[serde(default)]
    rejected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolved: Option<Resolution>,
}

/// The snapshot of `saga` as of event `seq`.
pub fn encode_snapshot(saga: &Saga, seq: u64) -> Vec<u8> {
    write(&SnapshotRecord {
        seq,
        saga: SagaRecord {
            id: saga.id.clone(),
            workflow: saga.workflow.clone(),
            workflow_version: saga.workflow_version,
            input: input_field(&saga.input),
            callback_url: saga.callback_url.clone(),
            idempotency_key: saga.idempotency_key.clone(),
            business_key: saga.business_key.clone(),
            callback_max_attempts: saga.callback_max_attempts,
            traceparent: traceparent_field(saga.trace),
            created_at: saga.created_at,
            updated_at: saga.updated_at,
            lifecycle: saga.lifecycle,
            steps: saga
                .steps
                .iter()
                .map(|s| StepRecord {
                    status: s.status,
                    attempts: s.attempts,
                    sent: s.sent,
                    last_phase: s.last_phase,
                    last_error: s.last_error.clone(),
                    rejected: s.rejected,
                    resolved: s.resolved,
                })
                .collect(),
            error: saga.error.clone(),
            callback: saga.callback,
        },
    })
}

/// A stored snapshot: the saga (with an empty plan, which the caller restores from the first
/// event) and the sequence number of the last event it includes.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Saga, u64), FormatError> {
    let (version, json) = split_version(bytes)?;
    let SnapshotRecord { seq, saga } = parse(version, json)?;
    let saga = Saga {
        input: input_from(version, saga.input)?,
        id: saga.id,
        workflow: saga.workflow,
        workflow_version: saga.workflow_version,
        callback_url: saga.callback_url,
        idempotency_key: saga.idempotency_key,
        business_key: saga.business_key,
        callback_max_attempts: saga.callback_max_attempts,
        plan: Arc::default(),
        trace: traceparent_from(saga.traceparent),
        created_at: saga.created_at,
        updated_at: saga.updated_at,
        lifecycle: saga.lifecycle,
        steps: saga
            .steps
            .into_iter()
            .map(|s| StepState {
                status: s.status,
                attempts: s.attempts,
                sent: s.sent,
                last_phase: s.last_phase,
                last_error: s.last_error,
                rejected: s.rejected,
                resolved: s.resolved,
            })
            .collect(),
        error: saga.error,
        callback: saga.callback,
    };
    Ok((saga, seq))
}

// ---------------------------------------------------------------------------------------------
// Registry records: the API's own types, which are part of the API contract already
// ---------------------------------------------------------------------------------------------

/// A registered participant.
pub fn encode_participant(spec: &ParticipantSpec) -> Vec<u8> {
    write(spec)
}

/// A stored participant, of any known version.
pub fn decode_participant(bytes: &[u8]) -> Result<ParticipantSpec, FormatError> {
    let (version, json) = split_version(bytes)?;
    parse(version, json)
}

/// One version of a workflow.
pub fn encode_workflow(spec: &WorkflowSpec) -> Vec<u8> {
    write(spec)
}

/// A stored workflow version, of any known version.
pub fn decode_workflow(bytes: &[u8]) -> Result<WorkflowSpec, FormatError> {
    let (version, json) = split_version(bytes)?;
    parse(version, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::one_step;

    #[test]
    fn a_round_keeps_a_big_number_and_key_order_of_the_input() {
        let mut created = one_step("s1", Some("k"));
        let text = r#"{"big": 123456789012345678901234567890, "a": 1}"#;
        created.input = RawJson::from_text(text).unwrap();
        let events = vec![Event::Created(Box::new(created.clone()))];
        let bytes = encode_round(&events);
        assert_eq!(bytes[0], CURRENT_VERSION);
        let read = decode_round(&bytes, &NoPlans).unwrap();
        let Event::Created(read) = &read[0] else {
            panic!("not created: {read:?}")
        };
        assert_eq!(read.input.get(), text);
        assert_eq!(**read, created);
    }

    #[test]
    fn the_trace_context_is_kept_in_the_first_event_and_in_snapshots() {
        let mut created = one_step("s1", None);
        created.trace =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(created.trace.is_some());
        let bytes = encode_round(&[Event::Created(Box::new(created.clone()))]);
        let read = decode_round(&bytes, &NoPlans).unwrap();
        assert_eq!(read, vec![Event::Created(Box::new(created.clone()))]);
        let saga = Saga::create(&created).unwrap();
        let (loaded, seq) = decode_snapshot(&encode_snapshot(&saga, 3)).unwrap();
        assert_eq!((loaded.trace, seq), (created.trace, 3));
        // Without one, nothing is written: records stay as they were.
        let plain = one_step("s2", None);
        let text = String::from_utf8(encode_round(&[Event::Created(Box::new(plain))])).unwrap();
        assert!(!text.contains("traceparent"), "{text}");
    }

    #[test]
    fn a_newer_version_is_refused_with_a_clear_error() {
        let mut bytes = encode_round(&[Event::Resumed { at: 5 }]);
        bytes[0] = 3;
        let err = decode_round(&bytes, &NoPlans).unwrap_err();
        assert!(matches!(err, FormatError::UnknownVersion { found: 3 }));
        assert!(
            err.to_string().contains("newer than this coordinator"),
            "{err}"
        );
        assert!(matches!(
            decode_round(b"garbage", &NoPlans),
            Err(FormatError::Malformed { .. })
        ));
    }
}
