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
/// W3C trace context.
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

#[cfg(test)]
mod tests {
    use super::*;

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
