//! `/v1/participants`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use sagas::ParticipantSpec;
use sagas::api::{ParticipantList, ParticipantView};

use super::extract::ApiJson;
use super::openapi::{BadRequest, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType};
use super::{ApiError, AppState};

fn view(state: &AppState, name: String, spec: &Arc<ParticipantSpec>) -> ParticipantView {
    let stats = state.runtime.dispatcher().lane_stats(&name);
    ParticipantView {
        name,
        spec: (**spec).clone(),
        circuit: stats.circuit.into(),
        in_flight: stats.in_flight,
        queued: stats.queued,
        recent: stats.recent,
    }
}

/// Registers or replaces a participant's branch endpoints and policy. Sagas submitted after
/// it use the new registration (on every instance of a cluster).
#[utoipa::path(put, path = "/v1/participants/{name}", tag = "participants",
    params(("name" = String, Path, description = "Participant name (letters, digits, `_`, `-`, `.`)")),
    request_body = ParticipantSpec,
    responses((status = 200, body = ParticipantView), BadRequest, PayloadTooLarge,
        UnsupportedMediaType, Unavailable))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<ParticipantSpec>,
) -> Result<Json<ParticipantView>, ApiError> {
    let guard = state.runtime.dispatcher().outbound().guard();
    guard
        .check_url("base_url", &spec.base_url)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let spec = state
        .runtime
        .registry()
        .put_participant(&name, spec)
        .await?;
    tracing::info!(participant = %name, base_url = %spec.base_url, "participant registered");
    Ok(Json(view(&state, name, &spec)))
}

/// One participant: its registration, circuit state, load and recent error rate and latency.
#[utoipa::path(get, path = "/v1/participants/{name}", tag = "participants",
    params(("name" = String, Path, description = "Participant name")),
    responses((status = 200, body = ParticipantView), NotFound, Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ParticipantView>, ApiError> {
    // Another instance of a cluster may have changed it.
    state.runtime.registry().refresh().await?;
    let spec = state
        .runtime
        .registry()
        .participant(&name)
        .ok_or_else(|| ApiError::not_found(format!("unknown participant {name:?}")))?;
    Ok(Json(view(&state, name, &spec)))
}

/// Every registered participant with its live state on this instance.
#[utoipa::path(get, path = "/v1/participants", tag = "participants",
    responses((status = 200, body = ParticipantList), Unavailable))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ParticipantList>, ApiError> {
    // Another instance of a cluster may have changed them.
    state.runtime.registry().refresh().await?;
    let participants = state
        .runtime
        .registry()
        .participants()
        .into_iter()
        .map(|(n, s)| view(&state, n, &s))
        .collect();
    Ok(Json(ParticipantList { participants }))
}
