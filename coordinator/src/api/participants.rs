//! `/v1/participants`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use sagas::ParticipantSpec;
use sagas::api::{ParticipantList, ParticipantView};

use super::extract::ApiJson;
use super::{ApiError, AppState};

fn view(name: String, spec: &Arc<ParticipantSpec>) -> ParticipantView {
    ParticipantView {
        name,
        spec: (**spec).clone(),
        circuit: "closed".into(),
        in_flight: 0,
        queued: 0,
    }
}

pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<ParticipantSpec>,
) -> Result<Json<ParticipantView>, ApiError> {
    let spec = state
        .runtime
        .registry()
        .put_participant(&name, spec)
        .await?;
    tracing::info!(participant = %name, base_url = %spec.base_url, "participant registered");
    Ok(Json(view(name, &spec)))
}

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ParticipantView>, ApiError> {
    let spec = state
        .runtime
        .registry()
        .participant(&name)
        .ok_or_else(|| ApiError::not_found(format!("unknown participant {name:?}")))?;
    Ok(Json(view(name, &spec)))
}

pub async fn list(State(state): State<AppState>) -> Json<ParticipantList> {
    let participants = state
        .runtime
        .registry()
        .participants()
        .into_iter()
        .map(|(n, s)| view(n, &s))
        .collect();
    Json(ParticipantList { participants })
}
