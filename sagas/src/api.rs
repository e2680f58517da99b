//! Request and response bodies of the coordinator's HTTP API v1.
//!
//! Every error answer is an [`ErrorBody`]; [`crate::client::ClientError`] lists the statuses.

use serde::{Deserialize, Serialize};

use crate::participant::ParticipantSpec;
use crate::raw_json::RawJson;
use crate::wire::{Phase, StepKind};
use crate::workflow::WorkflowSpec;

/// Body of `POST /v1/sagas`. An unknown field is `400`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitSaga {
    /// Name of the workflow to run; the saga runs its newest version. Unknown: `404`.
    pub workflow: String,
    /// Passed to every branch call exactly as submitted (numbers and key order untouched).
    /// Absent: `null`.
    #[serde(default)]
    pub input: RawJson,
    /// Where the final [`SagaView`] is POSTed once the saga is `committed` or `aborted` (after
    /// that state is durable), retried with backoff until a `2xx`. An absolute `http(s)://`
    /// URL, query allowed ([`crate::limits::check_http_url`]); otherwise `400`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// What support staff search the saga by (an order number, a payment reference): at most
    /// 256 visible characters. Absent: the workflow's default, [`WorkflowSpec::business_key`],
    /// read from the input. Listed by `GET /v1/sagas?business_key=...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
}

/// The lifecycle of a saga as the API shows it: `running` -> `confirming` -> `committed`, or
/// `running` -> `compensating` -> `aborted`; `stuck` from either middle state. On the wire,
/// the snake_case name ([`SagaState::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Forward phases (`try`/`action`) are running; nothing decided yet, so it can be aborted.
    Running,
    /// Decided to commit (durably); TCC steps are being confirmed.
    Confirming,
    /// Terminal: every step succeeded and every TCC step is confirmed.
    Committed,
    /// Decided to roll back (durably); steps that may have run are being cancelled or
    /// compensated. `error` says why.
    Compensating,
    /// Terminal: rolled back; every step that may have run has been undone.
    Aborted,
    /// A `confirm`, `cancel` or `compensate` exhausted `settle_max_attempts`: needs an
    /// operator, whose `POST /v1/sagas/{id}/retry` resumes it. Not terminal.
    Stuck,
}

impl SagaState {
    /// `committed` or `aborted`: nothing more will run (`stuck` is not terminal).
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Committed | SagaState::Aborted)
    }

    /// The wire name (`running`, `committed`, ...), as in JSON and the `state` query parameter.
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

    /// Every state, in the order a saga meets them.
    pub const ALL: [SagaState; 6] = [
        SagaState::Running,
        SagaState::Confirming,
        SagaState::Committed,
        SagaState::Compensating,
        SagaState::Aborted,
        SagaState::Stuck,
    ];

    /// The state whose wire name ([`SagaState::as_str`]) is `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<SagaState> {
        SagaState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for SagaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step stands ([`StepView::status`]); on the wire, the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl StepStatus {
    /// The wire name (`pending`, `retrying`, `stuck`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Calling => "calling",
            StepStatus::Retrying => "retrying",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Rejected => "rejected",
            StepStatus::Refused => "refused",
            StepStatus::Failed => "failed",
            StepStatus::Confirmed => "confirmed",
            StepStatus::Compensated => "compensated",
            StepStatus::Skipped => "skipped",
            StepStatus::Stuck => "stuck",
        }
    }
}

/// A saga: the answer of `GET /v1/sagas/{id}`, of `POST /v1/sagas` and of the operator
/// actions, and the body of a completion callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaView {
    /// Saga id, assigned by the coordinator at submission: the `{id}` of `/v1/sagas/{id}` and
    /// the `Saga-Id` header of its branch calls.
    pub id: String,
    /// Name of the workflow it runs.
    pub workflow: String,
    /// Version of that workflow the saga started with (see [`WorkflowView::version`]); a
    /// running saga keeps it when the workflow changes.
    pub workflow_version: u32,
    /// Where the saga stands.
    pub state: SagaState,
    /// The input exactly as submitted.
    pub input: RawJson,
    /// Why the saga rolled back (the abort reason) or turned stuck; `null` otherwise.
    pub error: Option<String>,
    /// When it was submitted: RFC 3339, UTC, milliseconds (`2026-11-22T22:19:02.452Z`).
    pub created_at: String,
    /// When its state last changed; same format as `created_at`.
    pub updated_at: String,
    /// The [`SubmitSaga::callback_url`] it was submitted with; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The business key it carries (see [`SubmitSaga::business_key`]); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// One entry per step, in the workflow's order.
    pub steps: Vec<StepView>,
}

/// Body of an operator action (`abort`, `retry`, `retry-now`; optional, as is each field):
/// recorded in the saga's events with the action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OperatorNote {
    /// Why the operator acts (a ticket, "participant fixed"); at most 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asks, when no API token names them (with tokens, the token's name is recorded);
    /// at most 128 characters. Absent: `anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// How a person settled a step by hand (`POST /v1/sagas/{id}/steps/{step}/resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The forward phase (`try`/`action`) took effect: the saga goes on as if it succeeded.
    Succeeded,
    /// The `confirm` was done by hand (a committing saga).
    Confirmed,
    /// The undo (`cancel`/`compensate`) was done by hand, e.g. a refund issued (a saga rolling
    /// back); a stuck rollback whose last step is resolved ends `aborted`.
    Compensated,
}

impl Resolution {
    /// The wire name: `succeeded`, `confirmed` or `compensated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Succeeded => "succeeded",
            Resolution::Confirmed => "confirmed",
            Resolution::Compensated => "compensated",
        }
    }
}

/// Body of `POST /v1/sagas/{id}/steps/{step}/resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResolveStep {
    /// What the person did.
    #[serde(rename = "as")]
    pub resolution: Resolution,
    /// Why, required: what was done by hand (1 to 1000 characters).
    pub reason: String,
    /// Who, when no API token names them; at most 128 characters. Absent: `anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The answer of `POST /v1/sagas/bulk/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkRetry {
    /// Sagas that matched the filter and were resumed.
    pub resumed: u64,
    /// Sagas that matched but could not be resumed (they left `stuck` meanwhile, or moved to
    /// another instance), with why; at most 100 listed.
    pub skipped: Vec<BulkSkip>,
}

/// A saga a bulk retry did not resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkSkip {
    /// The saga.
    pub id: String,
    /// Why, in plain words.
    pub reason: String,
}

/// One step of a saga, as [`SagaView::steps`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    /// Step name from the workflow; travels in the `Saga-Step` header.
    pub name: String,
    /// Name of the participant that serves the step.
    pub participant: String,
    /// `saga` or `tcc`, from the participant's endpoints for the step's action.
    pub kind: StepKind,
    /// Where the step stands; for a rejected step see also `undo`.
    pub status: StepStatus,
    /// Calls made for this step, all phases together.
    pub attempts: u32,
    /// The phase of the current or last call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Why the step's last failed call failed (the participant's answer, a timeout, a
    /// connection error); `null` when none failed.
    pub last_error: Option<String>,
    /// For a step whose forward phase was rejected (`status` stays `rejected`, so the step
    /// that caused a rollback is visible): where its undo call stands, `pending`, `calling`,
    /// `retrying`, `stuck` or `compensated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<StepStatus>,
    /// Set when a person settled the step's last phase by hand (`resolve`): how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
}

/// `GET /v1/sagas/{id}/events`: a saga's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaEvents {
    /// The saga the events belong to.
    pub saga_id: String,
    /// Every event recorded for it, in `seq` order. Events of a saga in flight join at its
    /// next durable point (decision, end, idle wait).
    pub events: Vec<EventView>,
}

/// One entry of the audit trail. Fields that do not apply to an event's `type` are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// Position in the saga's log, increasing.
    pub seq: u64,
    /// When it happened: RFC 3339, UTC, milliseconds.
    pub at: String,
    /// JSON `type`: `created`, `call_started`, `call_ended`, `decided`, `stuck`, `resumed`,
    /// `operated` (an operator's request, with `by` and `reason`), then its effect:
    /// `retry_requested`, `retry_now`, `step_resolved` or `decided`; `finished`,
    /// `callback_started`, `callback_ended`, `callback_abandoned`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Step name, for a call or `stuck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Phase of the call, for `call_started` and `call_ended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Attempt number of a call (per step and phase) or of a callback, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `ok`, `rejected`, `transient`, `not_sent` or `refused` for a call; `delivered` or
    /// `failed` for a callback; `commit`/`abort` for a decision; the action (`abort`,
    /// `retry`, `retry_now`, `resolve`) for `operated`; the final state for `finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// HTTP status the participant or callback receiver answered; absent when no answer
    /// arrived (timeout, connection error, not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// How long a call took, in milliseconds (`call_ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// A call's or callback's error, the reason of an `abort` decision, or why the saga turned
    /// `stuck` or its callback was abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `operated`: who asked (the API token's name, else the request's `by`, else
    /// `anonymous`). The event that follows it is its effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// For `operated`: the reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `step_resolved`: how the step was settled (`succeeded`, `confirmed`,
    /// `compensated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

impl EventView {
    /// An entry with only what every event has: its sequence number, time (RFC 3339) and
    /// `type`; the fields of its kind are filled in by the caller.
    pub fn new(seq: u64, at: impl Into<String>, kind: impl Into<String>) -> EventView {
        EventView {
            seq,
            at: at.into(),
            kind: kind.into(),
            step: None,
            phase: None,
            attempt: None,
            outcome: None,
            http_status: None,
            latency_ms: None,
            error: None,
            by: None,
            reason: None,
            resolution: None,
        }
    }
}

/// The filters of `GET /v1/sagas` (query parameters); every one is optional and all given must
/// hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SagaQuery {
    /// Only sagas in this state (a wire name, [`SagaState::as_str`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only sagas of this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Only sagas carrying this business key (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// Only sagas created at or after this time: RFC 3339 (`2026-11-30T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    /// Only sagas created before this time: RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// Page size, 1 to 1000; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/sagas`: one page of sagas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaList {
    /// The sagas that match the filters, in saga id order; at most `limit` (default 100).
    pub sagas: Vec<SagaView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Most ids one `POST /v1/sagas/states` may ask about; more is `400`.
pub const MAX_STATE_IDS: usize = 1_000;

/// Body of `POST /v1/sagas/states`: the sagas whose states to look up, at most
/// [`MAX_STATE_IDS`] (an empty list is fine). An unknown field is `400`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SagaStatesQuery {
    /// Saga ids; duplicates are answered once.
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub ids: Vec<String>,
}

/// A saga's state as `POST /v1/sagas/states` reports it: a [`SagaState`] by its wire name, or
/// `unknown` when the coordinator holds no saga with that id (never created, or removed by the
/// coordinator's retention, which removes only `committed` and `aborted` sagas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportedState {
    /// [`SagaState::Running`].
    Running,
    /// [`SagaState::Confirming`].
    Confirming,
    /// [`SagaState::Committed`] (terminal).
    Committed,
    /// [`SagaState::Compensating`].
    Compensating,
    /// [`SagaState::Aborted`] (terminal).
    Aborted,
    /// [`SagaState::Stuck`]: an operator may resume it at any time.
    Stuck,
    /// The coordinator holds no saga with this id.
    Unknown,
}

impl ReportedState {
    /// `committed`, `aborted` or `unknown`: the coordinator will send nothing more for the
    /// saga. A participant may then forget the saga's records (once they are old enough: a
    /// call sent before may still be on its way).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            ReportedState::Committed | ReportedState::Aborted | ReportedState::Unknown
        )
    }
}

impl From<SagaState> for ReportedState {
    fn from(state: SagaState) -> Self {
        match state {
            SagaState::Running => ReportedState::Running,
            SagaState::Confirming => ReportedState::Confirming,
            SagaState::Committed => ReportedState::Committed,
            SagaState::Compensating => ReportedState::Compensating,
            SagaState::Aborted => ReportedState::Aborted,
            SagaState::Stuck => ReportedState::Stuck,
        }
    }
}

/// Answer of `POST /v1/sagas/states`: every asked id with its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaStates {
    /// Saga id -> its state; every id of the request is present.
    pub states: std::collections::BTreeMap<String, ReportedState>,
}

/// A registered participant with its live dispatcher state: `GET /v1/participants/{name}`
/// and the answer of `PUT /v1/participants/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParticipantView {
    /// Name it is registered under (the `{name}` of the path).
    pub name: String,
    /// The registration as stored; its fields (`base_url`, `actions`, `policy`) appear at the
    /// top level of the JSON object.
    #[serde(flatten)]
    pub spec: ParticipantSpec,
    /// State of its circuit breaker on this coordinator: `closed`, `open` or `half_open`.
    pub circuit: String,
    /// Calls to it running now (at most the policy's `max_concurrency`).
    pub in_flight: u64,
    /// Calls waiting for a bulkhead slot (at most the policy's `queue_capacity`).
    pub queued: u64,
    /// Error rate and latency of its last calls from this coordinator. Absent from the
    /// answers of coordinators older than this field: then all zero.
    #[serde(default)]
    pub recent: RecentCalls,
}

/// The last calls (at most 256) one coordinator sent to a participant: what its error rate
/// and latency look like now. Calls the circuit breaker or the bulkhead refused are not
/// counted; they never reached the participant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentCalls {
    /// Calls in the window.
    pub calls: u64,
    /// Of those, calls that got no usable answer: a timeout, a `5xx` or other unexpected
    /// status, a refused connection. A business refusal (`409`, `422`) is an answer.
    pub failed: u64,
    /// `failed / calls`, from 0 to 1; 0 with no calls.
    pub error_rate: f64,
    /// Median latency of the calls in the window, in milliseconds; absent with no calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency of the calls in the window, in milliseconds; absent with no
    /// calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
}

/// `GET /v1/participants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParticipantList {
    /// Every registered participant, sorted by name.
    pub participants: Vec<ParticipantView>,
}

/// A workflow at its newest version: `GET /v1/workflows/{name}` and the answer of
/// `PUT /v1/workflows/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowView {
    /// Name it is stored under (the `{name}` of the path, or the file name without extension).
    pub name: String,
    /// 1 for the first definition, one more for each changed one; storing an identical
    /// definition keeps the version.
    pub version: u32,
    /// The definition of that version; its fields (`steps`, `timeout_ms`) appear at the top
    /// level of the JSON object.
    #[serde(flatten)]
    pub spec: WorkflowSpec,
}

/// `GET /v1/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowList {
    /// Every workflow at its newest version, sorted by name.
    pub workflows: Vec<WorkflowView>,
}

/// Every error the API returns: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `not_found`, `conflict`, ...
    pub code: String,
    /// For people: what is wrong, naming the field or the saga state at fault.
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
