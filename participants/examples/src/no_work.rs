//! Benchmark mode (`--no-work`): branch calls are answered `200` at once and nothing is done.
//!
//! A participant started with `--no-work` still opens its database, serves its admin and
//! health routes and registers with the coordinator as usual, but every branch call (every
//! phase of every action it registers) is answered `200 {"no_work": true}` as soon as its body
//! has been read: no barrier, no business change, no database access, no flush. A load run
//! against such participants shows the coordinator's own cost per saga (its log, dispatch and
//! HTTP) without the participants' work competing for the same CPU.
//!
//! It breaks every guarantee a participant gives: nothing is reserved, deducted, created or
//! undone, nothing is ever rejected, duplicates are not detected, and the books do not balance.
//! It exists for benchmarks only, as `--unsafe-no-barrier` exists only for the chaos harness's
//! sanity check.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use participants::BranchReply;
use serde_json::json;

/// Wraps `routes` so that a `POST` to one of `branch_paths` is answered without reaching them.
pub(crate) fn install(routes: Router, branch_paths: BTreeSet<String>) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(
        Arc::new(branch_paths),
        answer,
    ))
}

/// axum middleware: answers branch calls itself, passes everything else on.
async fn answer(
    State(branch_paths): State<Arc<BTreeSet<String>>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST || !branch_paths.contains(req.uri().path()) {
        return next.run(req).await;
    }
    // Reading the body lets hyper keep the connection alive for the coordinator's next call;
    // its content does not matter, its size does (the server's body limit applies).
    match Bytes::from_request(req, &()).await {
        Ok(_) => BranchReply::ok(json!({"no_work": true})).into_response(),
        Err(e) => BranchReply::status_error(e.status().as_u16(), e.body_text()).into_response(),
    }
}
