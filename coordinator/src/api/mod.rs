//! HTTP API v1 (JSON): participants, workflows, sagas, health. The README documents every route;
//! `docs/ARCHITECTURE.md` says where the API sits.
//! Every error is `{"error": {"code", "message"}}`; bad input is a 4xx, never a panic.

mod error;
mod extract;
mod health;
pub mod openapi;
mod operator_routes;
mod participants;
mod sagas_routes;
mod workflows;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::auth::{self, Tokens};
use crate::runtime::Runtime;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    /// Ingress limit on `POST /v1/sagas`; `None` means unlimited.
    pub submit_limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
}

/// The API router. `submit_rate_limit`: submissions per second, `None` for unlimited.
/// `tokens`: the API tokens every route but the health probes and documents then needs;
/// `None` leaves the API open.
pub fn router(
    runtime: Arc<Runtime>,
    submit_rate_limit: Option<std::num::NonZeroU32>,
    tokens: Option<Arc<Tokens>>,
) -> Router {
    let submit_limiter = submit_rate_limit.map(|rate| {
        Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
            rate,
        )))
    });
    let state = AppState {
        runtime,
        submit_limiter,
    };
    let (api, mut document) = documented_routes().with_state(state).split_for_parts();
    openapi::declare_security(&mut document);
    let api = api
        .merge(openapi::routes(document))
        .fallback(|| async { ApiError::not_found("no such route") });
    match tokens {
        Some(tokens) => api.layer(axum::middleware::from_fn_with_state(tokens, auth::check)),
        None => api,
    }
}

/// Every API route, each with its OpenAPI description: serving a route means documenting it.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(participants::list))
        .routes(routes!(participants::put, participants::get))
        .routes(routes!(workflows::list))
        .routes(routes!(workflows::put, workflows::get))
        .routes(routes!(sagas_routes::submit, sagas_routes::list))
        .routes(routes!(sagas_routes::get))
        .routes(routes!(sagas_routes::states))
        .routes(routes!(sagas_routes::events))
        .routes(routes!(operator_routes::bulk_retry))
        .routes(routes!(operator_routes::abort))
        .routes(routes!(operator_routes::retry))
        .routes(routes!(operator_routes::retry_now))
        .routes(routes!(operator_routes::resolve))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}
