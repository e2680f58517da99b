//! Which W3C trace a saga belongs to, worked out from durable data only, so that a restarted
//! coordinator or another instance of a cluster continues the trace the saga started in.
//!
//! A saga's context is a [`TraceParent`]: the trace id, and the span its branch calls descend
//! from. It is recorded in the saga's first event ([`crate::engine::Created::trace`]) when
//! there is something to remember:
//! - the submitter sent a `traceparent`: the saga joins that trace; with span export on, its
//!   calls descend from the submission span (itself a child of the submitter's span), else
//!   directly from the submitter's span;
//! - span export is on ([`crate::otlp`]): the submission span's trace and span ids.
//!
//! Otherwise nothing is recorded and the context is derived from the saga id (a UUID v7): the
//! id is the trace id and its low 64 bits the span id, which is what sagas recorded before the
//! field existed get too.

use axum::http::HeaderMap;
use sagas::wire::{HEADER_TRACEPARENT, TraceParent};

/// The saga's trace context: the recorded one, else the one derived from its id.
pub fn saga_trace(saga_id: &str, recorded: Option<TraceParent>) -> TraceParent {
    recorded.unwrap_or_else(|| derived(saga_id))
}

/// The submitter's trace context from a request's `traceparent`, if it sent a valid one (a bad
/// one is ignored, as the W3C specification asks: the saga then starts a trace of its own).
pub fn caller(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get(HEADER_TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// The context of a saga with nothing recorded: its id as the trace id, sampled.
fn derived(saga_id: &str) -> TraceParent {
    // Every saga id the runtime makes is a UUID; anything else (a hand-made test id) gets a
    // stable hash, never a random value, so every instance derives the same context.
    let trace_id = uuid::Uuid::parse_str(saga_id)
        .map(|id| id.as_u128())
        .unwrap_or_else(|_| fnv1a_128(saga_id.as_bytes()));
    TraceParent {
        trace_id: trace_id.max(1),
        // A UUID's variant bits sit in the low half, so it is never zero; `max` covers the hash.
        span_id: (trace_id as u64).max(1),
        sampled: true,
    }
}

/// 128-bit FNV-1a: small, stable across versions and platforms.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes.iter().fold(OFFSET, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_recorded_context_the_saga_id_is_the_trace_id() {
        let id = "0190b6c8-0000-7000-8000-000000000001";
        let trace = saga_trace(id, None);
        assert_eq!(format!("{:032x}", trace.trace_id), id.replace('-', ""));
        assert_eq!(trace.span_id, 0x8000_0000_0000_0001);
        assert!(trace.sampled);
        // Derived the same way every time, for ids of any shape.
        assert_eq!(saga_trace("s1", None), saga_trace("s1", None));
        assert_ne!(saga_trace("s1", None), saga_trace("s2", None));
        let recorded = TraceParent {
            trace_id: 7,
            span_id: 9,
            sampled: false,
        };
        assert_eq!(saga_trace(id, Some(recorded)), recorded);
    }

    #[test]
    fn the_callers_header_is_read_when_valid() {
        let mut headers = HeaderMap::new();
        assert_eq!(caller(&headers), None);
        headers.insert(HEADER_TRACEPARENT, "not a trace".parse().unwrap());
        assert_eq!(caller(&headers), None);
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(HEADER_TRACEPARENT, text.parse().unwrap());
        assert_eq!(caller(&headers).map(|t| t.to_string()), Some(text.into()));
    }
}
