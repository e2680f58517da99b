//! What a participant answers: an HTTP status and a JSON body ([`BranchReply`]), and why a
//! business change was not applied ([`Rejection`]).
//!
//! Every error a participant emits has the coordinator's shape (`sagas::api::ErrorBody`):
//!
//! ```json
//! {"error": {"code": "insufficient_funds", "message": "account \"alice\" has 10 available, 30 requested"}}
//! ```
//!
//! `code` is stable and machine-readable (`snake_case`); `message` is for people.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use sagas::api::{ErrorBody, ErrorDetail};

/// An HTTP status and a JSON body: what a branch call (or an admin call) answers. The barrier
/// stores these per phase and replays them to duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchReply {
    /// HTTP status code, e.g. `200`, `409`.
    pub status: u16,
    /// The JSON body: the business's own answer on success, `{"error": {"code", "message"}}`
    /// otherwise.
    pub body: Value,
}

impl BranchReply {
    /// `200` with `body`.
    pub fn ok(body: Value) -> Self {
        BranchReply { status: 200, body }
    }

    /// `status` with the error body `{"error": {"code", "message"}}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        };
        BranchReply {
            status,
            // Two strings always serialise.
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    /// `status` with the error body, its code named after the status: `payload_too_large`
    /// for `413`, `method_not_allowed` for `405`, `bad_request` for `400`, and so on (the
    /// canonical reason in `snake_case`; `error` for a status without one). For errors raised
    /// by the HTTP layer rather than by a business rule.
    pub fn status_error(status: u16, message: impl Into<String>) -> Self {
        let code = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(|reason| reason.to_ascii_lowercase().replace([' ', '-'], "_"))
            .unwrap_or_else(|| "error".into());
        BranchReply::error(status, &code, message)
    }

    /// Whether the status is `2xx`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for BranchReply {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body)).into_response()
    }
}

/// Why a business closure did not apply its change, answered as
/// `{"error": {"code", "message"}}` with `status`.
///
/// `409`/`422` are business rejections: final for a forward phase (the barrier stores them
/// and the saga rolls back). Any other status is a failure the coordinator retries, never
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{status} {code}: {message}")]
pub struct Rejection {
    /// HTTP status of the answer.
    pub status: u16,
    /// Machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

impl Rejection {
    /// `409`: the request is valid but the state forbids it (e.g. insufficient funds).
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Rejection {
            status: 409,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `422`: the input itself is unusable (missing field, zero amount, overflow).
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Rejection {
            status: 422,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `500 invariant_violated`: the stored state contradicts what the barrier guarantees.
    /// Never stored, so the coordinator keeps retrying (and eventually marks the saga `stuck`
    /// for an operator).
    pub fn invariant(message: impl Into<String>) -> Self {
        Rejection {
            status: 500,
            code: "invariant_violated".into(),
            message: message.into(),
        }
    }

    /// Whether this is a business rejection (`409`/`422`), final for a forward phase.
    pub fn is_business(&self) -> bool {
        matches!(self.status, 409 | 422)
    }

    /// The answer: `status` with `{"error": {"code", "message"}}`.
    pub fn reply(&self) -> BranchReply {
        BranchReply::error(self.status, &self.code, self.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_have_the_coordinators_shape() {
        let reply = Rejection::conflict("insufficient_funds", "not enough").reply();
        assert_eq!(reply.status, 409);
        assert_eq!(
            reply.body,
            json!({"error": {"code": "insufficient_funds", "message": "not enough"}})
        );
        let parsed: ErrorBody = serde_json::from_value(reply.body).unwrap();
        assert_eq!(parsed.error.code, "insufficient_funds");
    }

    #[test]
    fn status_errors_are_named_after_their_status() {
        for (status, code) in [
            (400, "bad_request"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
            (599, "error"),
        ] {
            let reply = BranchReply::status_error(status, "why");
            assert_eq!(reply.status, status);
            assert_eq!(
                reply.body,
                json!({"error": {"code": code, "message": "why"}}),
                "{status}"
            );
        }
    }
}
