//! `/v1/workflows`.

use axum::Json;
use axum::extract::{Path, State};

use sagas::WorkflowSpec;
use sagas::api::{WorkflowList, WorkflowView};

use super::extract::ApiJson;
use super::openapi::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType,
};
use super::{ApiError, AppState};

/// Stores a new version of a workflow (steps, DAG, timeouts, business key pointer). Running
/// sagas keep the version they started with.
#[utoipa::path(put, path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    request_body = WorkflowSpec,
    responses((status = 200, body = WorkflowView), BadRequest, Conflict, PayloadTooLarge,
        UnsupportedMediaType, Unavailable))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<WorkflowSpec>,
) -> Result<Json<WorkflowView>, ApiError> {
    let stored = state
        .runtime
        .registry()
        .put_workflow(&name, spec, true)
        .await?;
    Ok(Json(WorkflowView {
        name,
        version: stored.version,
        spec: stored.spec,
    }))
}

/// A workflow at its newest version.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = WorkflowView), NotFound, Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    // Another instance of a cluster may have changed it.
    state.runtime.registry().refresh().await?;
    let stored = state
        .runtime
        .registry()
        .workflow(&name)
        .ok_or_else(|| ApiError::not_found(format!("unknown workflow {name:?}")))?;
    Ok(Json(WorkflowView {
        name,
        version: stored.version,
        spec: stored.spec,
    }))
}

/// Every workflow at its newest version.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, body = WorkflowList), Unavailable))]
pub async fn list(State(state): State<AppState>) -> Result<Json<WorkflowList>, ApiError> {
    // Another instance of a cluster may have changed them.
    state.runtime.registry().refresh().await?;
    let workflows = state
        .runtime
        .registry()
        .workflows()
        .into_iter()
        .map(|(name, w)| WorkflowView {
            name,
            version: w.version,
            spec: w.spec,
        })
        .collect();
    Ok(Json(WorkflowList { workflows }))
}
