//! The API's error type and how each lower-layer error maps to a status code.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use sagas::api::{ErrorBody, ErrorDetail};

use crate::registry::RegistryError;
use crate::runtime::{Refusal, RuntimeError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (with `429` and `503`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `429` with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(retry_after_secs.max(1));
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// A request axum could not read: its own status (`413` for a body over the limit, `415` for
/// a body that is not JSON, `400` for the rest), with our error body.
pub(super) fn rejected(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "payload_too_large", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported_media_type", text),
        // A body that parses as JSON but does not fit the schema is a 422 in axum; this API
        // documents every malformed request as a 400.
        _ => ApiError::bad_request(text),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        rejected(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        rejected(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        rejected(r.status(), r.body_text())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Store(e) => e.into(),
            RegistryError::VersionTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "storage error");
        match e {
            // Nothing is known durable, so nothing was accepted: the client may resend.
            StoreError::Flush(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_durable",
                format!("the saga log could not be flushed ({e}); nothing was accepted"),
            ),
            StoreError::Fenced(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "moved", e.to_string())
            }
            // The store is down or failing (a lost database connection, a disk error): the
            // request may succeed later, so it is a 503 to retry, not a 500.
            _ => {
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    e.to_string(),
                );
                error.retry_after = Some(1);
                error
            }
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let message = e.to_string();
        match e {
            RuntimeError::UnknownWorkflow(_) | RuntimeError::UnknownSaga(_) => {
                ApiError::not_found(message)
            }
            RuntimeError::Unrunnable(_) => {
                ApiError::new(StatusCode::CONFLICT, "unrunnable", message)
            }
            RuntimeError::KeyReused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            RuntimeError::Illegal(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            RuntimeError::Refused(Refusal::NotNow(_)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            RuntimeError::Refused(
                Refusal::ShuttingDown | Refusal::Stopped(_) | Refusal::Moved(_),
            ) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
            RuntimeError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            RuntimeError::Store(e) => e.into(),
            RuntimeError::Registry(e) => e.into(),
        }
    }
}
