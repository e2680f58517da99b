//! Operator actions on sagas: abort, retry, retry now, resolve a step by hand, bulk retry.
//! Each is recorded in the saga's events with who asked and the reason given.

use axum::extract::{Path, State};
use axum::{Extension, Json};

use sagas::api::{BulkRetry, OperatorNote, ResolveStep, SagaQuery, SagaState, SagaView};

use super::extract::{ApiJson, ApiQuery, OptionalJson};
use super::openapi::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType,
};
use super::sagas_routes::filter_of;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::runtime::{Action, Operator};
use crate::views::saga_view;

/// Longest reason kept, in characters.
const MAX_REASON: usize = 1_000;
/// Longest name of who asks, in characters.
const MAX_BY: usize = 128;

/// Who made an operator request: the API token, when the coordinator checks tokens.
type AskedBy = Option<Extension<Caller>>;

/// The operator request `action` from `note`; `400` for an unusable note. With API tokens the
/// token's name is recorded as who asked, whatever the note says.
fn operator(action: Action, note: OperatorNote, caller: AskedBy) -> Result<Operator, ApiError> {
    let check = |field: &str, text: &str, max: usize| {
        if text.chars().count() > max || text.chars().any(char::is_control) {
            Err(ApiError::bad_request(format!(
                "{field}: must be at most {max} characters without control characters"
            )))
        } else {
            Ok(())
        }
    };
    if let Some(reason) = &note.reason {
        check("reason", reason, MAX_REASON)?;
    }
    if let Some(by) = &note.by {
        check("by", by, MAX_BY)?;
    }
    let by = match caller {
        Some(Extension(caller)) => caller.name.to_string(),
        None => note
            .by
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "anonymous".into()),
    };
    Ok(Operator {
        action,
        by,
        reason: note.reason.filter(|r| !r.trim().is_empty()),
    })
}

async fn act(
    state: &AppState,
    id: &str,
    action: Action,
    note: OperatorNote,
    caller: AskedBy,
) -> Result<Json<SagaView>, ApiError> {
    let saga = state
        .runtime
        .operator_request(id, operator(action, note, caller)?)
        .await?;
    Ok(Json(saga_view(&saga)))
}

/// Rolls a running saga back: what was done is undone in reverse order.
#[utoipa::path(post, path = "/v1/sagas/{id}/abort", tag = "operator",
    params(("id" = String, Path, description = "Saga id")),
    request_body(content = Option<OperatorNote>, description = "Optional: who asks and why"),
    responses((status = 200, description = "The saga after the request", body = SagaView),
        BadRequest, NotFound, Conflict, Unavailable))]
pub async fn abort(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: AskedBy,
    OptionalJson(note): OptionalJson<OperatorNote>,
) -> Result<Json<SagaView>, ApiError> {
    act(&state, &id, Action::Abort, note, caller).await
}

/// Resumes a stuck saga where it stopped, with a fresh retry budget.
#[utoipa::path(post, path = "/v1/sagas/{id}/retry", tag = "operator",
    params(("id" = String, Path, description = "Saga id")),
    request_body(content = Option<OperatorNote>, description = "Optional: who asks and why"),
    responses((status = 200, description = "The saga after the request", body = SagaView),
        BadRequest, NotFound, Conflict, Unavailable))]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: AskedBy,
    OptionalJson(note): OptionalJson<OperatorNote>,
) -> Result<Json<SagaView>, ApiError> {
    act(&state, &id, Action::Retry, note, caller).await
}

/// Makes a call that waits on its backoff now.
#[utoipa::path(post, path = "/v1/sagas/{id}/retry-now", tag = "operator",
    params(("id" = String, Path, description = "Saga id")),
    request_body(content = Option<OperatorNote>, description = "Optional: who asks and why"),
    responses((status = 200, description = "The saga after the request", body = SagaView),
        BadRequest, NotFound, Conflict, Unavailable))]
pub async fn retry_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: AskedBy,
    OptionalJson(note): OptionalJson<OperatorNote>,
) -> Result<Json<SagaView>, ApiError> {
    act(&state, &id, Action::RetryNow, note, caller).await
}

/// Records that a person settled a step by hand (a refund issued, stock fixed); the saga goes
/// on from there, and a stuck rollback whose last step is resolved ends `aborted`. Only for a
/// step that is stuck or waiting for a retry, as what fits the saga's direction.
#[utoipa::path(post, path = "/v1/sagas/{id}/steps/{step}/resolve", tag = "operator",
    params(("id" = String, Path, description = "Saga id"),
        ("step" = String, Path, description = "Step name from the workflow")),
    request_body = ResolveStep,
    responses((status = 200, description = "The saga after the request", body = SagaView),
        BadRequest, NotFound, Conflict, PayloadTooLarge, UnsupportedMediaType, Unavailable))]
pub async fn resolve(
    State(state): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    caller: AskedBy,
    ApiJson(body): ApiJson<ResolveStep>,
) -> Result<Json<SagaView>, ApiError> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason: say what was done by hand (1 to 1000 characters)",
        ));
    }
    let saga = state
        .runtime
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown saga {id:?}")))?;
    let index = saga
        .plan
        .steps
        .iter()
        .position(|s| s.name == step)
        .ok_or_else(|| ApiError::not_found(format!("saga {id} has no step {step:?}")))?;
    let note = OperatorNote {
        reason: Some(body.reason),
        by: body.by,
    };
    let action = Action::Resolve {
        step: index,
        resolution: body.resolution,
    };
    act(&state, &id, action, note, caller).await
}

/// Resumes every stuck saga the filters match (`state` must be `stuck` or absent).
#[utoipa::path(post, path = "/v1/sagas/bulk/retry", tag = "operator",
    params(SagaQuery),
    request_body(content = Option<OperatorNote>, description = "Optional: who asks and why"),
    responses((status = 200, body = BulkRetry), BadRequest, Unavailable))]
pub async fn bulk_retry(
    State(state): State<AppState>,
    ApiQuery(mut query): ApiQuery<SagaQuery>,
    caller: AskedBy,
    OptionalJson(note): OptionalJson<OperatorNote>,
) -> Result<Json<BulkRetry>, ApiError> {
    match query.state.as_deref() {
        None | Some("") | Some("stuck") => query.state = Some(SagaState::Stuck.as_str().into()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state: a bulk retry resumes stuck sagas only (got {other:?})"
            )));
        }
    }
    let (filter, _, _) = filter_of(query)?;
    let operator = operator(Action::Retry, note, caller)?;
    Ok(Json(state.runtime.bulk_retry(&filter, &operator).await?))
}
