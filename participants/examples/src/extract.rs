//! Request parts of the admin routes, whose rejections answer with the error body like
//! everything else: axum's own `Json` and `Path` rejections are plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use participants::BranchReply;
use serde::de::DeserializeOwned;

/// A JSON request body. Over the body limit `413 payload_too_large`; not JSON, or not of the
/// expected shape, `400 bad_request`.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = BranchReply;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| BranchReply::status_error(e.status().as_u16(), e.body_text()))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| BranchReply::error(400, "bad_request", format!("invalid body: {e}")))
    }
}

/// A path parameter, e.g. the `{id}` of `/accounts/{id}`. Unusable (not UTF-8 once decoded)
/// `400 bad_request`.
pub(crate) struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = BranchReply;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|e| BranchReply::status_error(e.status().as_u16(), e.body_text()))
    }
}
