//! Request and response bodies of the coordinator's HTTP API v1.

use serde::{Deserialize, Serialize};

use crate::participant::ParticipantSpec;
use crate::raw_json::RawJson;
use crate::wire::{Phase, StepKind};
use crate::workflow::WorkflowSpec;

/// Body of `POST /v1/sagas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitSaga {
    pub workflow: String,
    /// Passed to every branch call exactly as submitted (numbers and key order untouched).
    #[serde(default)]
    pub input: RawJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// The lifecycle of a saga as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    Running,
    Confirming,
    Committed,
    Compensating,
    Aborted,
    Stuck,
}

impl SagaState {
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Committed | SagaState::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Confirming => "confirming",
            SagaState::Committed => "committed",
            SagaState::Compensating => "compensating",
            SagaState::Aborted => "aborted",
            SagaState::Stuck => "stuck",
        }
    }

    pub fn parse(s: &str) -> Option<SagaState> {
        [
            SagaState::Running,
            SagaState::Confirming,
            SagaState::Committed,
            SagaState::Compensating,
            SagaState::Aborted,
            SagaState::Stuck,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for SagaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not called yet.
    Pending,
    /// A call is outstanding.
    Calling,
    /// The last call failed transiently; another follows.
    Retrying,
    /// The forward phase (`action`/`try`) succeeded.
    Succeeded,
    /// The participant rejected the forward phase (`409`/`422`).
    Rejected,
    /// The forward call was refused locally (open circuit, full bulkhead); never sent.
    Refused,
    /// The forward phase gave up; it may have been applied, so it is undone.
    Failed,
    /// `confirm` succeeded.
    Confirmed,
    /// `compensate`/`cancel` succeeded.
    Compensated,
    /// Never called, so nothing to undo.
    Skipped,
    /// A settle phase exhausted its attempts; an operator's `retry` resumes it.
    Stuck,
}

/// `GET /v1/sagas/{id}` and the body of `POST /v1/sagas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaView {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    pub state: SagaState,
    /// The input exactly as submitted.
    pub input: RawJson,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    pub participant: String,
    pub kind: StepKind,
    pub status: StepStatus,
    /// Calls made for this step, all phases together.
    pub attempts: u32,
    /// The phase of the current or last call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub last_error: Option<String>,
    /// For a step whose forward phase was rejected (`status` stays `rejected`, so the step
    /// that caused a rollback is visible): where its undo call stands, `pending`, `calling`,
    /// `retrying`, `stuck` or `compensated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<StepStatus>,
}

/// `GET /v1/sagas/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaEvents {
    pub saga_id: String,
    pub events: Vec<EventView>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub at: String,
    /// `created`, `call_started`, `call_ended`, `decided`, `stuck`, `resumed`, `retry_requested`,
    /// `finished`, `callback_started`, `callback_ended`, `callback_abandoned`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `ok`, `rejected`, `transient`, `not_sent` or `refused` for a call; `delivered` or
    /// `failed` for a callback; `commit`/`abort` for a decision;
    /// the final state for `finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/sagas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaList {
    pub sagas: Vec<SagaView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/participants/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub name: String,
    #[serde(flatten)]
    pub spec: ParticipantSpec,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    pub in_flight: u64,
    pub queued: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantList {
    pub participants: Vec<ParticipantView>,
}

/// `GET /v1/workflows/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowView {
    pub name: String,
    pub version: u32,
    #[serde(flatten)]
    pub spec: WorkflowSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

/// Every error the API returns: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `not_found`, `conflict`, ...
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saga_states_parse_and_print() {
        for s in [
            "running",
            "confirming",
            "committed",
            "compensating",
            "aborted",
            "stuck",
        ] {
            let state = SagaState::parse(s).unwrap();
            assert_eq!(state.as_str(), s);
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(s));
        }
        assert!(SagaState::Committed.is_terminal() && !SagaState::Stuck.is_terminal());
        assert_eq!(SagaState::parse("done"), None);
    }

    #[test]
    fn submit_rejects_unknown_fields() {
        let ok: SubmitSaga = serde_json::from_str(r#"{"workflow":"w","input":{"a":1}}"#).unwrap();
        assert_eq!(ok.input.get(), r#"{"a":1}"#);
        assert!(serde_json::from_str::<SubmitSaga>(r#"{"workflow":"w","inptu":{}}"#).is_err());
    }
}
