//! Format version 2: a saga's events in a compact binary encoding, its plan by reference.
//!
//! A record is the byte `0x02` followed by one or more *chunks*, back to back: a chunk is the
//! [postcard] encoding of a list of `CompactEvent`s (one round). Field names are not
//! written, integers are varints, and every event's time is the difference from the event
//! before it in its chunk (a chunk's first time is absolute), so a time costs one or two bytes
//! instead of thirteen digits. Because a chunk stands alone, a saga's whole log can be one
//! record that each round extends by appending its chunk ([`append_chunk`]), without decoding
//! what is there. The first event ([`Event::Created`])
//! names its plan by a [`PlanRef`], the first 8 bytes of the SHA-256 of the plan's version-1
//! JSON; the store keeps each plan once (sled's `plans` tree) and resolves it on reading
//! ([`PlanSource`]). A typical three-step saga's whole log is about 300 bytes this way, against
//! about 3 KB in version 1, most of it the plan repeated in every saga.
//!
//! postcard is not self-describing: the types below ARE the format, and so are the enums they
//! hold from elsewhere (`Phase`, `CallOutcome`, `Resolution`, encoded by variant position; a
//! test here pins every position). Never reorder, remove or change a variant or field; a change
//! is a new version.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sagas::RawJson;
use sagas::api::Resolution;

use super::{FormatError, PlanRecord, traceparent_field, traceparent_from};
use crate::engine::{CallOutcome, CallRef, Created, Decision, Event, Millis, Plan};

/// The version byte of this format.
pub const VERSION: u8 = 2;

/// A plan's name in the log: the first 8 bytes of the SHA-256 of its version-1 JSON record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlanRef(pub [u8; 8]);

/// Where plans named by a [`PlanRef`] are read from when a record is decoded.
pub trait PlanSource {
    /// The plan `plan` names; an error when the store does not have it (a corrupt store).
    fn plan(&self, plan: PlanRef) -> Result<Arc<Plan>, FormatError>;
}

/// For stores that never write version 2 (PostgreSQL): any version-2 record is malformed there.
pub struct NoPlans;

impl PlanSource for NoPlans {
    fn plan(&self, _: PlanRef) -> Result<Arc<Plan>, FormatError> {
        Err(FormatError::Malformed {
            version: VERSION,
            message: "a version-2 record in a store without a plan table".into(),
        })
    }
}

/// A plan as the store keeps it once (version-1 JSON), and its reference.
pub fn encode_plan(plan: &Plan) -> (PlanRef, Vec<u8>) {
    use sha2::Digest;
    let bytes = super::write(&PlanRecord::from(plan));
    let digest = sha2::Sha256::digest(&bytes);
    let mut name = [0; 8];
    name.copy_from_slice(&digest[..8]);
    (PlanRef(name), bytes)
}

/// A stored plan.
pub fn decode_plan(bytes: &[u8]) -> Result<Plan, FormatError> {
    let (version, json) = super::split_version(bytes)?;
    let record: PlanRecord = super::parse(version, json)?;
    Ok(Plan::from(record))
}

/// One event as stored in version 2. Field order and variant order are the format.
#[derive(Debug, Serialize, Deserialize)]
enum CompactEvent {
    Created(Box<CompactCreated>),
    CallStarted {
        call: CallRef,
        at: i64,
    },
    CallEnded {
        call: CallRef,
        outcome: CallOutcome,
        http_status: Option<u16>,
        latency_ms: u64,
        error: Option<String>,
        /// From `at`.
        retry_after: i64,
        at: i64,
    },
    Decided {
        /// `None`: commit; else abort with this reason.
        abort: Option<String>,
        at: i64,
    },
    Stuck {
        step: usize,
        reason: String,
        at: i64,
    },
    Resumed {
        at: i64,
    },
    RetryRequested {
        at: i64,
    },
    Operated {
        action: String,
        by: String,
        reason: Option<String>,
        at: i64,
    },
    RetryNow {
        at: i64,
    },
    StepResolved {
        step: usize,
        resolution: Resolution,
        at: i64,
    },
    Finished {
        at: i64,
    },
    CallbackStarted {
        attempt: u32,
        at: i64,
    },
    CallbackEnded {
        attempt: u32,
        delivered: bool,
        http_status: Option<u16>,
        error: Option<String>,
        /// From `at`.
        retry_after: i64,
        at: i64,
    },
    CallbackAbandoned {
        reason: String,
        at: i64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct CompactCreated {
    id: String,
    workflow: String,
    workflow_version: u32,
    /// The submitted text, exactly.
    input: String,
    callback_url: Option<String>,
    idempotency_key: Option<String>,
    business_key: Option<String>,
    callback_max_attempts: u32,
    plan: PlanRef,
    traceparent: Option<String>,
    at: i64,
}

/// Times as differences: each event's from the one before.
struct Clock {
    last: Millis,
}

impl Clock {
    fn delta(&mut self, at: Millis) -> i64 {
        let d = at.wrapping_sub(self.last) as i64;
        self.last = at;
        d
    }

    fn absolute(&mut self, delta: i64) -> Millis {
        self.last = self.last.wrapping_add(delta as u64);
        self.last
    }
}

fn offset(from: Millis, to: Millis) -> i64 {
    to.wrapping_sub(from) as i64
}

fn from_offset(from: Millis, offset: i64) -> Millis {
    from.wrapping_add(offset as u64)
}

#[cfg(any(test, feature = "testing"))]
/// `events` as a version-2 record of one chunk; `plan_ref` names the plan of a `Created`
/// among them (the caller has stored that plan, see [`encode_plan`]).
pub fn encode_events(events: &[Event], plan_ref: impl Fn(&Plan) -> PlanRef) -> Vec<u8> {
    let mut bytes = vec![VERSION];
    append_chunk(&mut bytes, events, plan_ref);
    bytes
}

/// Extends a version-2 record (as [`encode_events`] made it) with `events` as one more chunk.
pub fn append_chunk(record: &mut Vec<u8>, events: &[Event], plan_ref: impl Fn(&Plan) -> PlanRef) {
    let mut clock = Clock { last: 0 };
    let chunk: Vec<CompactEvent> = events
        .iter()
        .map(|event| compact(event, &mut clock, &plan_ref))
        .collect();
    postcard::to_io(&chunk, record).expect("writing to a Vec does not fail");
}

/// The idempotency and business keys of the saga whose log starts with `body` (a version-2
/// record without its version byte), read from its first event without resolving its plan:
/// what a retention sweep needs even where the plan is lost.
pub(super) fn created_keys(body: &[u8]) -> Result<(Option<String>, Option<String>), FormatError> {
    let (chunk, _): (Vec<CompactEvent>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| FormatError::Malformed {
            version: VERSION,
            message: e.to_string(),
        })?;
    match chunk.into_iter().next() {
        Some(CompactEvent::Created(c)) => Ok((c.idempotency_key, c.business_key)),
        _ => Err(FormatError::Malformed {
            version: VERSION,
            message: "the log does not start with created".into(),
        }),
    }
}

/// The events of a version-2 record (without its version byte): every chunk's, in order.
pub(super) fn decode_events(
    body: &[u8],
    plans: &dyn PlanSource,
) -> Result<Vec<Event>, FormatError> {
    let malformed = |e: postcard::Error| FormatError::Malformed {
        version: VERSION,
        message: e.to_string(),
    };
    let mut events = Vec::new();
    let mut rest = body;
    loop {
        let (chunk, after): (Vec<CompactEvent>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(malformed)?;
        let mut clock = Clock { last: 0 };
        for record in chunk {
            events.push(expand(record, &mut clock, plans)?);
        }
        if after.is_empty() {
            return Ok(events);
        }
        rest = after;
    }
}

fn compact(event: &Event, clock: &mut Clock, plan_ref: &impl Fn(&Plan) -> PlanRef) -> CompactEvent {
    match event {
        Event::Created(c) => CompactEvent::Created(Box::new(CompactCreated {
            id: c.id.clone(),
            workflow: c.workflow.clone(),
            workflow_version: c.workflow_version,
            input: c.input.get().to_owned(),
            callback_url: c.callback_url.clone(),
            idempotency_key: c.idempotency_key.clone(),
            business_key: c.business_key.clone(),
            callback_max_attempts: c.callback_max_attempts,
            plan: plan_ref(&c.plan),
            traceparent: traceparent_field(c.trace),
            at: clock.delta(c.at),
        })),
        Event::CallStarted { call, at } => CompactEvent::CallStarted {
            call: *call,
            at: clock.delta(*at),
        },
        Event::CallEnded {
            call,
            outcome,
            http_status,
            latency_ms,
            error,
            retry_at,
            at,
        } => CompactEvent::CallEnded {
            call: *call,
            outcome: *outcome,
            http_status: *http_status,
            latency_ms: *latency_ms,
            error: error.clone(),
            retry_after: offset(*at, *retry_at),
            at: clock.delta(*at),
        },
        Event::Decided { decision, at } => CompactEvent::Decided {
            abort: match decision {
                Decision::Commit => None,
                Decision::Abort { reason } => Some(reason.clone()),
            },
            at: clock.delta(*at),
        },
        Event::Stuck { step, reason, at } => CompactEvent::Stuck {
            step: *step,
            reason: reason.clone(),
            at: clock.delta(*at),
        },
        Event::Resumed { at } => CompactEvent::Resumed {
            at: clock.delta(*at),
        },
        Event::RetryRequested { at } => CompactEvent::RetryRequested {
            at: clock.delta(*at),
        },
        Event::Operated {
            action,
            by,
            reason,
            at,
        } => CompactEvent::Operated {
            action: action.clone(),
            by: by.clone(),
            reason: reason.clone(),
            at: clock.delta(*at),
        },
        Event::RetryNow { at } => CompactEvent::RetryNow {
            at: clock.delta(*at),
        },
        Event::StepResolved {
            step,
            resolution,
            at,
        } => CompactEvent::StepResolved {
            step: *step,
            resolution: *resolution,
            at: clock.delta(*at),
        },
        Event::Finished { at } => CompactEvent::Finished {
            at: clock.delta(*at),
        },
        Event::CallbackStarted { attempt, at } => CompactEvent::CallbackStarted {
            attempt: *attempt,
            at: clock.delta(*at),
        },
        Event::CallbackEnded {
            attempt,
            delivered,
            http_status,
            error,
            retry_at,
            at,
        } => CompactEvent::CallbackEnded {
            attempt: *attempt,
            delivered: *delivered,
            http_status: *http_status,
            error: error.clone(),
            retry_after: offset(*at, *retry_at),
            at: clock.delta(*at),
        },
        Event::CallbackAbandoned { reason, at } => CompactEvent::CallbackAbandoned {
            reason: reason.clone(),
            at: clock.delta(*at),
        },
    }
}

fn expand(
    record: CompactEvent,
    clock: &mut Clock,
    plans: &dyn PlanSource,
) -> Result<Event, FormatError> {
    Ok(match record {
        CompactEvent::Created(c) => Event::Created(Box::new(Created {
            input: RawJson::from_text(c.input).map_err(|e| FormatError::Malformed {
                version: VERSION,
                message: format!("input: {e}"),
            })?,
            plan: plans.plan(c.plan)?,
            id: c.id,
            workflow: c.workflow,
            workflow_version: c.workflow_version,
            callback_url: c.callback_url,
            idempotency_key: c.idempotency_key,
            business_key: c.business_key,
            callback_max_attempts: c.callback_max_attempts,
            trace: traceparent_from(c.traceparent),
            at: clock.absolute(c.at),
        })),
        CompactEvent::CallStarted { call, at } => Event::CallStarted {
            call,
            at: clock.absolute(at),
        },
        CompactEvent::CallEnded {
            call,
            outcome,
            http_status,
            latency_ms,
            error,
            retry_after,
            at,
        } => {
            let at = clock.absolute(at);
            Event::CallEnded {
                call,
                outcome,
                http_status,
                latency_ms,
                error,
                retry_at: from_offset(at, retry_after),
                at,
            }
        }
        CompactEvent::Decided { abort, at } => Event::Decided {
            decision: match abort {
                None => Decision::Commit,
                Some(reason) => Decision::Abort { reason },
            },
            at: clock.absolute(at),
        },
        CompactEvent::Stuck { step, reason, at } => Event::Stuck {
            step,
            reason,
            at: clock.absolute(at),
        },
        CompactEvent::Resumed { at } => Event::Resumed {
            at: clock.absolute(at),
        },
        CompactEvent::RetryRequested { at } => Event::RetryRequested {
            at: clock.absolute(at),
        },
        CompactEvent::Operated {
            action,
            by,
            reason,
            at,
        } => Event::Operated {
            action,
            by,
            reason,
            at: clock.absolute(at),
        },
        CompactEvent::RetryNow { at } => Event::RetryNow {
            at: clock.absolute(at),
        },
        CompactEvent::StepResolved {
            step,
            resolution,
            at,
        } => Event::StepResolved {
            step,
            resolution,
            at: clock.absolute(at),
        },
        CompactEvent::Finished { at } => Event::Finished {
            at: clock.absolute(at),
        },
        CompactEvent::CallbackStarted { attempt, at } => Event::CallbackStarted {
            attempt,
            at: clock.absolute(at),
        },
        CompactEvent::CallbackEnded {
            attempt,
            delivered,
            http_status,
            error,
            retry_after,
            at,
        } => {
            let at = clock.absolute(at);
            Event::CallbackEnded {
                attempt,
                delivered,
                http_status,
                error,
                retry_at: from_offset(at, retry_after),
                at,
            }
        }
        CompactEvent::CallbackAbandoned { reason, at } => Event::CallbackAbandoned {
            reason,
            at: clock.absolute(at),
        },
    })
}

#[cfg(any(test, feature = "testing"))]
/// Plans in memory: a [`PlanSource`] that also encodes, for tests and simulations that run
/// records through version 2 without a store.
#[derive(Debug, Default)]
pub struct PlanTable {
    plans: std::sync::Mutex<std::collections::HashMap<PlanRef, Arc<Plan>>>,
}

#[cfg(any(test, feature = "testing"))]
impl PlanTable {
    /// Keeps `plan` under its reference.
    pub fn insert(&self, plan: Arc<Plan>) -> PlanRef {
        let (plan_ref, _) = encode_plan(&plan);
        self.plans
            .lock()
            .expect("plan table poisoned")
            .insert(plan_ref, plan);
        plan_ref
    }

    /// `events` as one version-2 record, the plan of a `Created` among them kept here.
    pub fn encode(&self, events: &[Event]) -> Vec<u8> {
        encode_events(events, |plan| self.insert(Arc::new(plan.clone())))
    }
}

#[cfg(any(test, feature = "testing"))]
impl PlanSource for PlanTable {
    fn plan(&self, plan: PlanRef) -> Result<Arc<Plan>, FormatError> {
        self.plans
            .lock()
            .expect("plan table poisoned")
            .get(&plan)
            .cloned()
            .ok_or_else(|| FormatError::Malformed {
                version: VERSION,
                message: format!("plan {:02x?} is not in the table", plan.0),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagas::Phase;

    /// The enums from elsewhere that records hold are encoded by variant position: reordering
    /// one would silently change what every stored log means.
    #[test]
    fn every_foreign_enum_keeps_its_position_in_the_format() {
        /// Each value encodes as its index in `in_order`.
        fn positions<T: Serialize>(in_order: &[T]) {
            for (i, value) in in_order.iter().enumerate() {
                assert_eq!(postcard::to_allocvec(value).unwrap()[0], i as u8);
            }
        }
        use Phase::*;
        positions(&[Try, Confirm, Cancel, Action, Compensate]);
        use CallOutcome::*;
        positions(&[Ok, Rejected, Transient, NotSent, Refused]);
        use Resolution::*;
        positions(&[Succeeded, Confirmed, Compensated]);
    }

    #[test]
    fn times_round_trip_whatever_their_order_and_size() {
        let call = CallRef {
            step: 3,
            phase: Phase::Cancel,
            attempt: 7,
        };
        let events = vec![
            Event::CallStarted { call, at: u64::MAX },
            Event::CallEnded {
                call,
                outcome: CallOutcome::Transient,
                http_status: None,
                latency_ms: 5,
                error: Some("x".into()),
                retry_at: 0,
                at: 1,
            },
            Event::Finished { at: 1 << 63 },
        ];
        let table = PlanTable::default();
        let mut record = table.encode(&events);
        append_chunk(&mut record, &events[..1], |_| PlanRef([0; 8]));
        let read = decode_events(&record[1..], &table).unwrap();
        assert_eq!(read[..3], events[..]);
        assert_eq!(read[3], events[0]);
    }
}
