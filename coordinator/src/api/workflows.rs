//! `/v1/workflows`.

use axum::Json;
use axum::extract::{Path, State};

use sagas::WorkflowSpec;
use sagas::api::{WorkflowList, WorkflowView};

use super::extract::ApiJson;
use super::{ApiError, AppState};

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

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
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

pub async fn list(State(state): State<AppState>) -> Json<WorkflowList> {
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
    Json(WorkflowList { workflows })
}
