//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once recovery has resumed every active saga, 503 before and while shutting down.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.runtime.is_ready() && !state.runtime.is_shutting_down() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        )
    }
}

/// Prometheus text format.
pub async fn metrics() -> (StatusCode, String) {
    match crate::telemetry::handle() {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed\n".into(),
        ),
    }
}
