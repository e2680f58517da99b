//! Checking the coordinator's `Saga-Signature` (see `sagas::signing` for the format): a
//! participant given the coordinator's key answers a branch call that is unsigned, signed with
//! another key, changed on the way or stale (more than 5 minutes off its clock) with `401`,
//! before any state is touched.
//!
//! [`SignatureCheck::verify`] works for any server; with the `axum` feature,
//! [`require_signature`] is a middleware (`axum::middleware::from_fn_with_state`) over the
//! routes it wraps.

use std::collections::BTreeSet;

use http::HeaderMap;
use sagas::signing::{HEADER_SAGA_SIGNATURE, unix_now};
use sagas::{SignatureError, SigningKeys};

use crate::reply::BranchReply;

/// The keys a participant accepts, and which paths must be signed.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    keys: SigningKeys,
    /// `None`: every request the check wraps.
    paths: Option<BTreeSet<String>>,
}

impl SignatureCheck {
    /// Accepts a signature by any of `keys` on every request it wraps.
    pub fn new(keys: SigningKeys) -> SignatureCheck {
        SignatureCheck { keys, paths: None }
    }

    /// Checks only requests to these paths (the branch endpoints); others pass unchecked.
    pub fn only(mut self, paths: impl IntoIterator<Item = String>) -> SignatureCheck {
        self.paths = Some(paths.into_iter().collect());
        self
    }

    /// Whether a request to `path` must be signed.
    pub fn covers(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|paths| paths.contains(path))
    }

    /// Checks a request: its `method` (`POST`), `target` (path and query as received),
    /// `headers` and exact `body`, against the clock now.
    ///
    /// Errors: why it is refused ([`SignatureError`]).
    pub fn verify(
        &self,
        method: &str,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let header = match headers.get(HEADER_SAGA_SIGNATURE) {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| SignatureError::Malformed("not ASCII"))?,
            ),
            None => None,
        };
        self.keys.verify(header, method, target, body, unix_now())
    }

    /// The answer to a refused request: `401 bad_signature`.
    pub fn refusal(error: &SignatureError) -> BranchReply {
        BranchReply::error(401, "bad_signature", error.to_string())
    }
}

/// The axum middleware: refuses (`401`) a request to a covered path whose signature does not
/// verify; a body over [`crate::branch::MAX_BODY_BYTES`] is `413`. Use with
/// `axum::middleware::from_fn_with_state(Arc::new(check), require_signature)`.
#[cfg(feature = "axum")]
pub async fn require_signature(
    axum::extract::State(check): axum::extract::State<std::sync::Arc<SignatureCheck>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;

    if !check.covers(request.uri().path()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::branch::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return BranchReply::error(413, "payload_too_large", e.to_string()).into_response();
        }
    };
    let target = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    if let Err(error) = check.verify(parts.method.as_str(), &target, &parts.headers, &bytes) {
        tracing::warn!(%target, %error, "branch call refused: bad signature");
        return SignatureCheck::refusal(&error).into_response();
    }
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    next.run(request).await
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use sagas::SigningKey;
    use tower::ServiceExt;

    use super::*;

    fn app() -> axum::Router {
        let key: SigningKey = "k1:s3cret".parse().unwrap();
        let check =
            SignatureCheck::new(SigningKeys::new(vec![key]).unwrap()).only(["/try".to_string()]);
        axum::Router::new()
            .route(
                "/try",
                axum::routing::post(|body: String| async move { body }),
            )
            .route("/accounts", axum::routing::post(|| async { "open" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(check),
                require_signature,
            ))
    }

    async fn send(path: &str, signature: Option<String>, body: &str) -> (StatusCode, String) {
        let mut request = Request::post(path);
        if let Some(signature) = signature {
            request = request.header(HEADER_SAGA_SIGNATURE, signature);
        }
        let response = app()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn good_signatures_pass_with_the_body_intact_and_bad_or_stale_ones_get_401() {
        let key: SigningKey = "k1:s3cret".parse().unwrap();
        let body = r#"{"saga_id":"s","step":"a","phase":"try","input":{}}"#;
        let now = unix_now();
        let good = key.sign(now, "POST", "/try", body.as_bytes());
        assert_eq!(
            send("/try", Some(good.clone()), body).await,
            (StatusCode::OK, body.to_string())
        );
        let other_key: SigningKey = "k1:other".parse().unwrap();
        let refused = [
            None,
            Some(other_key.sign(now, "POST", "/try", body.as_bytes())),
            Some(key.sign(now - 301, "POST", "/try", body.as_bytes())),
            Some(key.sign(now, "POST", "/try?x=1", body.as_bytes())),
            Some("t=1,kid=k1".to_string()),
        ];
        for signature in refused {
            let (status, answer) = send("/try", signature.clone(), body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature:?}");
            assert!(answer.contains("bad_signature"), "{answer}");
        }
        // The same signature over another body.
        let (status, _) = send("/try", Some(good), "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A path the check does not cover.
        assert_eq!(send("/accounts", None, "").await.0, StatusCode::OK);
    }
}
