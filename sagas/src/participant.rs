//! Participant registration: where a participant lives, which actions it offers and the
//! resilience policy the coordinator applies to calls to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::{self, FieldError, check_http_url, check_name, check_path, check_range};
use crate::wire::{Phase, StepKind};
use crate::workflow::RetryPolicy;

/// Body of `PUT /v1/participants/{name}`.
///
/// A registration without a `policy` keeps the policy already stored for the participant
/// (the defaults for a new one): a participant that restarts and registers its endpoints
/// again never undoes a policy an operator set. One with a `policy` replaces it whole.
/// A field that breaks a rule ([`ParticipantSpec::validate`]) or is unknown is `400`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ParticipantSpec {
    /// e.g. `http://127.0.0.1:7701`; branch paths are appended to it. An absolute
    /// `http(s)://` URL without query ([`crate::limits::check_http_url`]).
    pub base_url: String,
    /// The actions it offers, by name ([`crate::limits::NAME_RULE`]); a workflow step names
    /// one in its `action`. At least one.
    pub actions: BTreeMap<String, ActionEndpoints>,
    /// Resilience policy for calls to it; absent keeps the stored one (see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ParticipantPolicy>,
}

/// The paths of one action: TCC (`try`/`confirm`/`cancel`) or SAGA (`action`/`compensate`).
///
/// Which keys the JSON object has decides the kind. Each path is appended to the participant's
/// `base_url` and must pass [`crate::limits::check_path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ActionEndpoints {
    /// A TCC action: `{"try", "confirm", "cancel"}`.
    Tcc {
        /// Path of the `try` phase (JSON `try`).
        #[serde(rename = "try")]
        try_path: String,
        /// Path of the `confirm` phase.
        confirm: String,
        /// Path of the `cancel` phase.
        cancel: String,
    },
    /// A SAGA action: `{"action", "compensate"}`.
    Saga {
        /// Path of the `action` phase.
        action: String,
        /// Path of the `compensate` phase.
        compensate: String,
    },
}

impl ActionEndpoints {
    /// TCC or SAGA: the kind of every step that calls this action.
    pub fn kind(&self) -> StepKind {
        match self {
            ActionEndpoints::Tcc { .. } => StepKind::Tcc,
            ActionEndpoints::Saga { .. } => StepKind::Saga,
        }
    }

    /// The path for `phase`, or `None` when the phase does not belong to this kind of action.
    pub fn path(&self, phase: Phase) -> Option<&str> {
        match (self, phase) {
            (ActionEndpoints::Tcc { try_path, .. }, Phase::Try) => Some(try_path),
            (ActionEndpoints::Tcc { confirm, .. }, Phase::Confirm) => Some(confirm),
            (ActionEndpoints::Tcc { cancel, .. }, Phase::Cancel) => Some(cancel),
            (ActionEndpoints::Saga { action, .. }, Phase::Action) => Some(action),
            (ActionEndpoints::Saga { compensate, .. }, Phase::Compensate) => Some(compensate),
            _ => None,
        }
    }
}

/// Resilience policy for calls to one participant. Every field is optional on the wire (a
/// missing one takes its default); each is checked by [`ParticipantPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ParticipantPolicy {
    /// Per-call timeout in milliseconds; a step may override it. Default 5000, range
    /// [`crate::limits::CALL_TIMEOUT_MS`].
    pub timeout_ms: u64,
    /// Calls in flight to this participant at once (bulkhead size). Default 64, range
    /// [`crate::limits::CONCURRENCY`].
    pub max_concurrency: u32,
    /// Calls waiting for a bulkhead slot before further ones are refused locally. Default
    /// 1024, range [`crate::limits::QUEUE_CAPACITY`].
    pub queue_capacity: u32,
    /// Outbound calls per second; `None` (the default) means unlimited. Range
    /// [`crate::limits::RATE_PER_SEC`].
    pub rate_limit_per_sec: Option<u32>,
    /// When calls to a failing participant stop for a while.
    pub circuit_breaker: CircuitBreakerPolicy,
    /// Retry schedule for steps that do not set their own. Default [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for ParticipantPolicy {
    fn default() -> Self {
        ParticipantPolicy {
            timeout_ms: 5_000,
            max_concurrency: 64,
            queue_capacity: 1_024,
            rate_limit_per_sec: None,
            circuit_breaker: CircuitBreakerPolicy::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// When a participant's circuit opens. While it is open, forward calls fail fast (the saga
/// rolls back) and `confirm`/`cancel`/`compensate` wait for it to half-open. Every field is
/// optional on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerPolicy {
    /// Consecutive failures that open the circuit. Default 5, range
    /// [`crate::limits::FAILURE_THRESHOLD`].
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe is let through, in milliseconds.
    /// Default 5000, range [`crate::limits::DELAY_MS`].
    pub open_ms: u64,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        CircuitBreakerPolicy {
            failure_threshold: 5,
            open_ms: 5_000,
        }
    }
}

impl ParticipantSpec {
    /// Checks what serde cannot, so that every call built from this registration can be sent:
    /// a usable base URL, action names and endpoint paths that fit in a request, and policy
    /// numbers within their documented ranges ([`crate::limits`]).
    pub fn validate(&self) -> Result<(), FieldError> {
        check_http_url("base_url", &self.base_url, false)?;
        if self.actions.is_empty() {
            return Err(FieldError::new("actions", "must name at least one action"));
        }
        for (name, endpoints) in &self.actions {
            check_name(&format!("actions.{name}"), name)?;
            let phases: &[Phase] = match endpoints.kind() {
                StepKind::Tcc => &[Phase::Try, Phase::Confirm, Phase::Cancel],
                StepKind::Saga => &[Phase::Action, Phase::Compensate],
            };
            for phase in phases {
                let path = endpoints.path(*phase).unwrap_or_default();
                check_path(&format!("actions.{name}.{phase}"), path)?;
            }
        }
        match &self.policy {
            Some(policy) => policy.validate().map_err(|e| e.within("policy")),
            None => Ok(()),
        }
    }

    /// The policy calls to this participant follow: its own, else the defaults.
    pub fn effective_policy(&self) -> &ParticipantPolicy {
        static DEFAULT: std::sync::OnceLock<ParticipantPolicy> = std::sync::OnceLock::new();
        self.policy
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(ParticipantPolicy::default))
    }
}

impl ParticipantPolicy {
    /// Checks every number against its documented range; field names are relative to the
    /// policy.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("timeout_ms", self.timeout_ms, &limits::CALL_TIMEOUT_MS)?;
        check_range(
            "max_concurrency",
            self.max_concurrency,
            &limits::CONCURRENCY,
        )?;
        check_range(
            "queue_capacity",
            self.queue_capacity,
            &limits::QUEUE_CAPACITY,
        )?;
        if let Some(rate) = self.rate_limit_per_sec {
            check_range("rate_limit_per_sec", rate, &limits::RATE_PER_SEC)?;
        }
        let breaker = &self.circuit_breaker;
        check_range(
            "circuit_breaker.failure_threshold",
            breaker.failure_threshold,
            &limits::FAILURE_THRESHOLD,
        )?;
        check_range(
            "circuit_breaker.open_ms",
            breaker.open_ms,
            &limits::DELAY_MS,
        )?;
        self.retry.validate().map_err(|e| e.within("retry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_of_actions_with_default_policy() {
        let spec: ParticipantSpec = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:7701",
            "actions": {
                "freeze": {"try": "/freeze/try", "confirm": "/freeze/confirm", "cancel": "/freeze/cancel"},
                "create": {"action": "/create", "compensate": "/cancel"}
            }
        }))
        .unwrap();
        assert_eq!(spec.actions["freeze"].kind(), StepKind::Tcc);
        assert_eq!(spec.actions["create"].kind(), StepKind::Saga);
        assert_eq!(
            spec.actions["freeze"].path(Phase::Cancel),
            Some("/freeze/cancel")
        );
        assert_eq!(spec.actions["create"].path(Phase::Try), None);
        assert_eq!(spec.policy, None);
        assert_eq!(spec.effective_policy(), &ParticipantPolicy::default());
        spec.validate().unwrap();
    }

    #[test]
    fn rejects_bad_urls_paths_and_policies() {
        let mut spec: ParticipantSpec = serde_json::from_value(serde_json::json!({
            "base_url": "127.0.0.1:7701",
            "actions": {"create": {"action": "/create", "compensate": "/cancel"}}
        }))
        .unwrap();
        assert_eq!(spec.validate().unwrap_err().field, "base_url");
        spec.base_url = "http://x".into();
        let mut policy = ParticipantPolicy {
            timeout_ms: 0,
            ..ParticipantPolicy::default()
        };
        spec.policy = Some(policy.clone());
        assert_eq!(spec.validate().unwrap_err().field, "policy.timeout_ms");
        policy.timeout_ms = 10;
        policy.circuit_breaker.open_ms = u64::MAX;
        spec.policy = Some(policy.clone());
        assert_eq!(
            spec.validate().unwrap_err().field,
            "policy.circuit_breaker.open_ms"
        );
        policy.circuit_breaker.open_ms = 10;
        spec.policy = Some(policy);
        spec.actions.insert(
            "bad".into(),
            ActionEndpoints::Saga {
                action: "x".into(),
                compensate: "/y".into(),
            },
        );
        assert_eq!(spec.validate().unwrap_err().field, "actions.bad.action");
        spec.actions.remove("bad");
        spec.actions.insert(
            "bad\n".into(),
            ActionEndpoints::Saga {
                action: "/x".into(),
                compensate: "/y".into(),
            },
        );
        assert_eq!(spec.validate().unwrap_err().field, "actions.bad\n");
        spec.actions.remove("bad\n");
        spec.actions.insert(
            "spaced".into(),
            ActionEndpoints::Saga {
                action: "/x y".into(),
                compensate: "/y".into(),
            },
        );
        assert_eq!(spec.validate().unwrap_err().field, "actions.spaced.action");
    }

    #[test]
    fn unknown_policy_fields_are_rejected() {
        let r: Result<ParticipantSpec, _> = serde_json::from_value(serde_json::json!({
            "base_url": "http://x", "actions": {}, "policy": {"timeout": 5}
        }));
        assert!(r.is_err());
    }
}
