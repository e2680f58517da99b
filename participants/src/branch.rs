//! A branch call's JSON body, checked against its headers: [`parse`] for any server, and the
//! axum extractor `Branch` (feature `axum`).
//!
//! The coordinator sends the phase both in the body and in `Saga-Phase` (likewise the saga id,
//! step and idempotency key). A disagreement means a broken client or proxy, so it is refused
//! with `400` before any state is touched. A body over the server's limit is a `413`.

use http::HeaderMap;
use thiserror::Error;

use sagas::wire::{
    BranchRequest, HEADER_IDEMPOTENCY_KEY, HEADER_SAGA_ID, HEADER_SAGA_PHASE, HEADER_SAGA_STEP,
};

use crate::reply::BranchReply;

/// Largest branch call body a participant should accept: 4 MiB. The coordinator takes
/// submissions up to 2 MiB, so any input it accepted fits, with the call's envelope, twice
/// over. Servers set it (axum: `DefaultBodyLimit::max(MAX_BODY_BYTES)`); `Branch` honours
/// whatever limit the server set.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A parsed, consistent branch call (axum extractor).
#[cfg(feature = "axum")]
#[derive(Debug, Clone, PartialEq)]
pub struct Branch(pub BranchRequest);

/// Why a request is not a usable branch call. Answered `413 payload_too_large` for a body
/// over the limit, `400 bad_request` otherwise ([`BranchRejection::reply`]).
#[derive(Debug, Error)]
pub enum BranchRejection {
    /// The body is larger than the server's limit.
    #[error("the body is too large: {0}")]
    TooLarge(String),
    /// The body could not be read (the connection broke, ...).
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The body is not JSON, or not a branch request.
    #[error("the body is not a branch request: {0}")]
    Json(#[from] serde_json::Error),
    /// `saga_id` or `step` is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A `Saga-*` or `Idempotency-Key` header disagrees with the body.
    #[error("header {header} is {header_value:?} but the body says {body_value:?}")]
    HeaderMismatch {
        /// The header's name.
        header: &'static str,
        /// What the header says.
        header_value: String,
        /// What the body says.
        body_value: String,
    },
}

impl BranchRejection {
    /// The answer: `413 payload_too_large` or `400 bad_request`, with the error body.
    pub fn reply(&self) -> BranchReply {
        match self {
            BranchRejection::TooLarge(_) => {
                BranchReply::error(413, "payload_too_large", self.to_string())
            }
            _ => BranchReply::error(400, "bad_request", self.to_string()),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for BranchRejection {
    fn into_response(self) -> axum::response::Response {
        self.reply().into_response()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequest<S> for Branch {
    type Rejection = BranchRejection;

    async fn from_request(
        mut req: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::body::Bytes;
        use axum::http::StatusCode;

        // Taken, not cloned: the body extractor below does not need them.
        let headers = std::mem::take(req.headers_mut());
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                BranchRejection::TooLarge(e.body_text())
            } else {
                BranchRejection::Body(e.body_text())
            }
        })?;
        parse(&headers, &body).map(Branch)
    }
}

/// Parses and checks a branch call: the body must be a [`BranchRequest`] with a non-empty
/// `saga_id` and `step`, and each of `Saga-Id`, `Saga-Step`, `Saga-Phase` and
/// `Idempotency-Key` that is present must agree with it (all are optional).
///
/// Errors: [`BranchRejection::Json`], [`BranchRejection::Empty`],
/// [`BranchRejection::HeaderMismatch`].
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<BranchRequest, BranchRejection> {
    let request: BranchRequest = serde_json::from_slice(body)?;
    if request.saga_id.is_empty() {
        return Err(BranchRejection::Empty("saga_id"));
    }
    if request.step.is_empty() {
        return Err(BranchRejection::Empty("step"));
    }
    let expected = [
        (HEADER_SAGA_ID, request.saga_id.clone()),
        (HEADER_SAGA_STEP, request.step.clone()),
        (HEADER_SAGA_PHASE, request.phase.as_str().to_string()),
        (HEADER_IDEMPOTENCY_KEY, request.idempotency_key()),
    ];
    for (header, body_value) in expected {
        if let Some(value) = headers.get(header) {
            let header_value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if header_value != body_value {
                return Err(BranchRejection::HeaderMismatch {
                    header,
                    header_value,
                    body_value,
                });
            }
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use sagas::wire::Phase;

    use super::*;

    const BODY: &[u8] =
        br#"{"saga_id":"s1","step":"freeze_funds","phase":"try","input":{"amount":1}}"#;

    #[test]
    fn parses_a_body_whose_headers_agree() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_SAGA_PHASE, HeaderValue::from_static("try"));
        headers.insert(
            HEADER_IDEMPOTENCY_KEY,
            HeaderValue::from_static("s1:freeze_funds:try"),
        );
        let req = parse(&headers, BODY).unwrap();
        assert_eq!(req.phase, Phase::Try);
        assert_eq!(req.input.get(), r#"{"amount":1}"#);
        // Headers are optional.
        assert!(parse(&HeaderMap::new(), BODY).is_ok());
    }

    #[test]
    fn refuses_disagreeing_headers_bad_json_and_empty_ids() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_SAGA_PHASE, HeaderValue::from_static("cancel"));
        let err = parse(&headers, BODY).unwrap_err();
        assert!(err.to_string().contains("saga-phase"), "{err}");

        assert!(matches!(
            parse(&HeaderMap::new(), b"{not json"),
            Err(BranchRejection::Json(_))
        ));
        assert!(matches!(
            parse(
                &HeaderMap::new(),
                br#"{"saga_id":"s","step":"x","phase":"later"}"#
            ),
            Err(BranchRejection::Json(_))
        ));
        assert!(matches!(
            parse(
                &HeaderMap::new(),
                br#"{"saga_id":"","step":"x","phase":"try"}"#
            ),
            Err(BranchRejection::Empty("saga_id"))
        ));
    }

    #[test]
    fn the_input_keeps_its_exact_text() {
        let body = br#"{"saga_id":"s","step":"x","phase":"try","input":{"big": 123456789012345678901234567890}}"#;
        let req = parse(&HeaderMap::new(), body).unwrap();
        assert_eq!(
            req.input.get(),
            r#"{"big": 123456789012345678901234567890}"#
        );
    }

    /// The extractor in a router: `413` over the body limit, `400` for a body that is not
    /// JSON, both with the error body; a good call gets through.
    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn the_extractor_answers_413_over_the_limit_and_400_for_bad_json() {
        use axum::Router;
        use axum::body::Body;
        use axum::extract::DefaultBodyLimit;
        use axum::routing::post;
        use tower::ServiceExt;

        let app = Router::new()
            .route(
                "/try",
                post(|Branch(req): Branch| async move { req.saga_id }),
            )
            .layer(DefaultBodyLimit::max(BODY.len()));
        let call = |body: Vec<u8>| {
            let app = app.clone();
            async move {
                let request = http::Request::post("/try").body(Body::from(body)).unwrap();
                let response = app.oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                (status, bytes)
            }
        };
        let (status, body) = call(BODY.to_vec()).await;
        assert_eq!((status, &body[..]), (200, &b"s1"[..]));

        for (body, status, code) in [
            ([BODY, b" "].concat(), 413, "payload_too_large"),
            (b"{not json".to_vec(), 400, "bad_request"),
            (
                br#"{"saga_id":"","step":"x","phase":"try"}"#.to_vec(),
                400,
                "bad_request",
            ),
        ] {
            let (got, bytes) = call(body).await;
            let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(got, status, "{reply}");
            assert_eq!(reply["error"]["code"], code, "{reply}");
            assert!(reply["error"]["message"].is_string(), "{reply}");
        }
    }
}
