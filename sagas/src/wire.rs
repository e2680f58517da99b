//! The branch call protocol: what the coordinator sends a participant.
//!
//! `POST {base_url}{path}` with a JSON [`BranchRequest`] and the headers named here. The reply
//! decides: `2xx` success; `409`/`422` business rejection (only meaningful for `try`/`action`);
//! anything else, a connection error or a timeout is transient and retried. Participants answer
//! errors with the coordinator's error body, [`crate::api::ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::raw_json::RawJson;

/// Header carrying the saga id.
pub const HEADER_SAGA_ID: &str = "saga-id";
/// Header carrying the step name.
pub const HEADER_SAGA_STEP: &str = "saga-step";
/// Header carrying the phase (`try`, `confirm`, ...).
pub const HEADER_SAGA_PHASE: &str = "saga-phase";
/// `{saga_id}:{step}:{phase}`: stable across retries, so participants can deduplicate.
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// W3C trace context: [`TraceParent`].
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// How a step is driven: SAGA (action, compensate) or TCC (try, confirm, cancel). Decided by
/// the participant's [`crate::participant::ActionEndpoints`]; JSON `saga` or `tcc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `action` does the work; `compensate` undoes it on rollback. No commit phase.
    Saga,
    /// `try` reserves, `confirm` commits once the saga commits, `cancel` releases on rollback.
    Tcc,
}

impl StepKind {
    /// The phase that moves the step forward.
    pub fn forward(self) -> Phase {
        match self {
            StepKind::Saga => Phase::Action,
            StepKind::Tcc => Phase::Try,
        }
    }

    /// The phase that undoes the forward phase on rollback.
    pub fn undo(self) -> Phase {
        match self {
            StepKind::Saga => Phase::Compensate,
            StepKind::Tcc => Phase::Cancel,
        }
    }

    /// The phase run once the saga commits, if any (TCC only).
    pub fn commit(self) -> Option<Phase> {
        match self {
            StepKind::Saga => None,
            StepKind::Tcc => Some(Phase::Confirm),
        }
    }
}

/// One phase of a step: the `phase` of a [`BranchRequest`] and the `Saga-Phase` header.
///
/// Forward phases give up after `max_attempts` and the saga rolls back; the others retry
/// until `settle_max_attempts`, then the saga turns `stuck` (see [`crate::RetryPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// TCC forward: reserve. The participant may reject it (`409`/`422`).
    Try,
    /// TCC commit: make the reservation final, once the saga has decided to commit.
    Confirm,
    /// TCC undo: release the reservation; must succeed even if the `try` never arrived.
    Cancel,
    /// SAGA forward: do the work. The participant may reject it (`409`/`422`).
    Action,
    /// SAGA undo: reverse the action; must succeed even if the `action` never arrived.
    Compensate,
}

impl Phase {
    /// The wire name (`try`, `confirm`, ...): JSON, the `Saga-Phase` header and the
    /// idempotency key.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Try => "try",
            Phase::Confirm => "confirm",
            Phase::Cancel => "cancel",
            Phase::Action => "action",
            Phase::Compensate => "compensate",
        }
    }

    /// `try` and `action`: the only phases a participant may reject for business reasons.
    pub fn is_forward(self) -> bool {
        matches!(self, Phase::Try | Phase::Action)
    }

    /// `cancel` and `compensate`: undo a forward phase (or nothing, for a null compensation).
    pub fn is_undo(self) -> bool {
        matches!(self, Phase::Cancel | Phase::Compensate)
    }

    /// Phases that must never give up on their own (`confirm`, `cancel`, `compensate`).
    pub fn must_settle(self) -> bool {
        !self.is_forward()
    }

    /// The phase whose wire name ([`Phase::as_str`]) is `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "try" => Phase::Try,
            "confirm" => Phase::Confirm,
            "cancel" => Phase::Cancel,
            "action" => Phase::Action,
            "compensate" => Phase::Compensate,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of every branch call: `{"saga_id", "step", "phase", "input"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BranchRequest {
    /// Id of the saga the call belongs to; also in the `Saga-Id` header.
    pub saga_id: String,
    /// Step name from the workflow; also in the `Saga-Step` header.
    pub step: String,
    /// What the participant is asked to do; also in the `Saga-Phase` header.
    pub phase: Phase,
    /// The saga's input, exactly as it was submitted.
    #[serde(default)]
    pub input: RawJson,
}

impl BranchRequest {
    /// The value of the `Idempotency-Key` header for this call.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.saga_id, &self.step, self.phase)
    }
}

/// The `Idempotency-Key` of a branch call: `{saga_id}:{step}:{phase}`.
pub fn idempotency_key(saga_id: &str, step: &str, phase: Phase) -> String {
    format!("{saga_id}:{step}:{phase}")
}

/// A W3C `traceparent` (<https://www.w3.org/TR/trace-context/>): the trace a request belongs
/// to and the span that made it, `00-{trace id: 32 hex}-{span id: 16 hex}-{flags: 2 hex}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace; never zero.
    pub trace_id: u128,
    /// The calling span; never zero.
    pub span_id: u64,
    /// The caller recorded this trace (flag `01`); spans in an unsampled trace are not kept.
    pub sampled: bool,
}

impl TraceParent {
    /// The header's value parsed, or `None` when it is not a valid `traceparent`: the W3C rule
    /// is to ignore a bad one and start a new trace, never to fail the request. A later version
    /// (not `00`, not `ff`) is read by its first four fields, as the specification asks.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let header = header.trim();
        let fields = header.get(..55)?;
        let rest = &header[55..];
        let mut parts = fields.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let well_formed = lower_hex(version, 2)
            && lower_hex(trace, 32)
            && lower_hex(span, 16)
            && lower_hex(flags, 2);
        if !well_formed
            || version == "ff"
            || (version == "00" && !rest.is_empty())
            || (!rest.is_empty() && !rest.starts_with('-'))
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|&t| t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|&s| s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

/// The header's value, version `00`.
impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_ignored() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(text).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.span_id, 0x00f067aa0ba902b7);
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), text);
        let unsampled = TraceParent::parse(&text.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        // A later version may add fields after the fourth.
        assert_eq!(
            TraceParent::parse(&format!("cc{}-what-comes-next", &text[2..])),
            Some(parsed)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phases_round_trip_and_classify() {
        for p in [
            Phase::Try,
            Phase::Confirm,
            Phase::Cancel,
            Phase::Action,
            Phase::Compensate,
        ] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(p.is_forward(), !p.must_settle());
        }
        assert_eq!(StepKind::Tcc.forward(), Phase::Try);
        assert_eq!(StepKind::Saga.undo(), Phase::Compensate);
        assert_eq!(StepKind::Saga.commit(), None);
        assert_eq!(Phase::parse("nope"), None);
    }

    #[test]
    fn idempotency_key_names_saga_step_and_phase() {
        let r = BranchRequest {
            saga_id: "s1".into(),
            step: "freeze_funds".into(),
            phase: Phase::Try,
            input: serde_json::json!({}).into(),
        };
        assert_eq!(r.idempotency_key(), "s1:freeze_funds:try");
    }
}
