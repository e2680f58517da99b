//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` (`/healthz`); `ready`, `recovering` or `shutting_down` (`/readyz`).
    pub status: &'static str,
}

/// The process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves requests", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// `200` once recovery has resumed every active saga; `503` before, and while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Recovery has resumed every active saga", body = Status),
        (status = 503, description = "Recovering, or shutting down", body = Status)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Status>) {
    let (code, status) = if state.runtime.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if state.runtime.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering")
    };
    (code, Json(Status { status }))
}

/// Every metric in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "Another metrics recorder is installed in this process",
            body = String, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    match crate::telemetry::handle() {
        Some(handle) => (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "another metrics recorder is installed\n".into(),
        ),
    }
}
