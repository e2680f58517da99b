//! Participant registration: where a participant lives, which actions it offers and the
//! resilience policy the coordinator applies to calls to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::wire::{Phase, StepKind};
use crate::workflow::RetryPolicy;

/// Body of `PUT /v1/participants/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSpec {
    /// e.g. `http://127.0.0.1:7701`; branch paths are appended to it.
    pub base_url: String,
    pub actions: BTreeMap<String, ActionEndpoints>,
    #[serde(default)]
    pub policy: ParticipantPolicy,
}

/// The paths of one action: TCC (`try`/`confirm`/`cancel`) or SAGA (`action`/`compensate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionEndpoints {
    Tcc {
        #[serde(rename = "try")]
        try_path: String,
        confirm: String,
        cancel: String,
    },
    Saga {
        action: String,
        compensate: String,
    },
}

impl ActionEndpoints {
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

/// Resilience policy for calls to one participant. Every field is optional on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParticipantPolicy {
    /// Per-call timeout; a step may override it.
    pub timeout_ms: u64,
    /// Calls in flight to this participant at once (bulkhead size).
    pub max_concurrency: u32,
    /// Calls waiting for a bulkhead slot before further ones are refused locally.
    pub queue_capacity: u32,
    /// Outbound calls per second; `None` means unlimited.
    pub rate_limit_per_sec: Option<u32>,
    pub circuit_breaker: CircuitBreakerPolicy,
    /// Retry schedule for steps that do not set their own.
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe is let through.
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
    /// Checks what serde cannot: a usable base URL, sane policy numbers, non-empty paths.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!(
                "base_url {:?} must start with http:// or https://",
                self.base_url
            ));
        }
        if self.actions.is_empty() {
            return Err("actions must name at least one action".into());
        }
        for (name, endpoints) in &self.actions {
            let phases: &[Phase] = match endpoints.kind() {
                StepKind::Tcc => &[Phase::Try, Phase::Confirm, Phase::Cancel],
                StepKind::Saga => &[Phase::Action, Phase::Compensate],
            };
            for phase in phases {
                let path = endpoints.path(*phase).unwrap_or_default();
                if !path.starts_with('/') {
                    return Err(format!(
                        "action {name:?}: {phase} path {path:?} must start with '/'"
                    ));
                }
            }
        }
        let p = &self.policy;
        if p.timeout_ms == 0 {
            return Err("policy.timeout_ms must be positive".into());
        }
        if p.max_concurrency == 0 {
            return Err("policy.max_concurrency must be positive".into());
        }
        if p.rate_limit_per_sec == Some(0) {
            return Err("policy.rate_limit_per_sec must be positive when set".into());
        }
        if p.circuit_breaker.failure_threshold == 0 {
            return Err("policy.circuit_breaker.failure_threshold must be positive".into());
        }
        p.retry.validate().map_err(|e| format!("policy.retry: {e}"))
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
        assert_eq!(spec.policy, ParticipantPolicy::default());
        spec.validate().unwrap();
    }

    #[test]
    fn rejects_bad_urls_paths_and_policies() {
        let mut spec: ParticipantSpec = serde_json::from_value(serde_json::json!({
            "base_url": "127.0.0.1:7701",
            "actions": {"create": {"action": "/create", "compensate": "/cancel"}}
        }))
        .unwrap();
        assert!(spec.validate().unwrap_err().contains("base_url"));
        spec.base_url = "http://x".into();
        spec.policy.timeout_ms = 0;
        assert!(spec.validate().unwrap_err().contains("timeout_ms"));
        spec.policy.timeout_ms = 10;
        spec.actions.insert(
            "bad".into(),
            ActionEndpoints::Saga {
                action: "x".into(),
                compensate: "/y".into(),
            },
        );
        assert!(spec.validate().unwrap_err().contains("bad"));
    }

    #[test]
    fn unknown_policy_fields_are_rejected() {
        let r: Result<ParticipantSpec, _> = serde_json::from_value(serde_json::json!({
            "base_url": "http://x", "actions": {}, "policy": {"timeout": 5}
        }));
        assert!(r.is_err());
    }
}
