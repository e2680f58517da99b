//! HTTP API v1 (JSON): participants, workflows, sagas, health. The README documents every route;
//! `docs/ARCHITECTURE.md` says where the API sits.
//! Every error is `{"error": {"code", "message"}}`; bad input is a 4xx, never a panic.

mod error;
mod extract;
mod health;
mod operator_routes;
mod participants;
mod sagas_routes;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

pub use error::ApiError;

use crate::runtime::Runtime;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    /// Ingress limit on `POST /v1/sagas`; `None` means unlimited.
    pub submit_limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
}

/// The API router. `submit_rate_limit`: submissions per second, `None` for unlimited.
pub fn router(runtime: Arc<Runtime>, submit_rate_limit: Option<std::num::NonZeroU32>) -> Router {
    let submit_limiter = submit_rate_limit.map(|rate| {
        Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
            rate,
        )))
    });
    Router::new()
        .route("/v1/participants", get(participants::list))
        .route(
            "/v1/participants/{name}",
            put(participants::put).get(participants::get),
        )
        .route("/v1/workflows", get(workflows::list))
        .route(
            "/v1/workflows/{name}",
            put(workflows::put).get(workflows::get),
        )
        .route(
            "/v1/sagas",
            post(sagas_routes::submit).get(sagas_routes::list),
        )
        .route("/v1/sagas/{id}", get(sagas_routes::get))
        .route("/v1/sagas/{id}/events", get(sagas_routes::events))
        .route("/v1/sagas/bulk/retry", post(operator_routes::bulk_retry))
        .route("/v1/sagas/{id}/abort", post(operator_routes::abort))
        .route("/v1/sagas/{id}/retry", post(operator_routes::retry))
        .route("/v1/sagas/{id}/retry-now", post(operator_routes::retry_now))
        .route(
            "/v1/sagas/{id}/steps/{step}/resolve",
            post(operator_routes::resolve),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(AppState {
            runtime,
            submit_limiter,
        })
}
