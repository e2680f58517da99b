//! The OpenAPI document (`GET /openapi.json`) and the interactive reference (`GET /docs`).
//!
//! The document is generated from the handlers' `#[utoipa::path]` attributes and the API
//! types' schemas, and the router is built from the same handlers (`utoipa_axum::routes!`), so
//! a route cannot be served without being documented. The reference page is Swagger UI with
//! its assets compiled into the binary (no CDN: it works offline).

use axum::Router;
use axum::http::Method;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{IntoResponses, OpenApi};

use crate::auth::{Requirement, requirement};

use sagas::api::{ErrorBody, ErrorDetail};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the interactive reference is served.
pub const REFERENCE_PATH: &str = "/docs";

/// The document's fixed parts: title, version, tags. Paths and schemas come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Saga coordinator API",
        description = "Drives sagas (action / compensate) and TCC steps (try / confirm / \
            cancel) across participant services. Every error answer is \
            `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    // The error answers refer to these; utoipa registers only the schemas of `body = ...`.
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "sagas", description = "Submit sagas and follow them."),
        (name = "operator", description = "Operator actions; each is recorded in the saga's \
            events with who asked and the reason given."),
        (name = "participants", description = "Participant services and their branch endpoints."),
        (name = "workflows", description = "Workflow definitions, versioned."),
        (name = "health", description = "Liveness, readiness and metrics.")
    )
)]
pub struct ApiDoc;

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

/// Declares the API tokens in `document`: a bearer security scheme, and on every operation
/// but the open ones (the same rule the middleware follows, `auth::requirement`) the scheme
/// and the `401` and `403` answers. Every operation that takes a body also declares `413`.
pub fn declare_security(document: &mut Document) {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API token from the coordinator's --auth-file, whose scopes include \
                     the route's: read (GET, and POST /v1/sagas/states), submit (POST \
                     /v1/sagas), operate (operator actions), admin (participants, workflows). Without --auth-file the API \
                     is open.",
                ))
                .build(),
        ),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let responses = &mut operation.responses.responses;
            if operation.request_body.is_some() {
                for (status, response) in PayloadTooLarge::responses() {
                    responses.entry(status).or_insert(response);
                }
            }
            if requirement(&method, path) == Requirement::Open {
                continue;
            }
            operation.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(
                BEARER,
                [],
            )]);
            responses.extend(Unauthorized::responses());
            responses.extend(Forbidden::responses());
        }
    }
}

/// The routes serving the document and the reference page for `document`.
pub fn routes(document: Document) -> Router {
    Router::from(utoipa_swagger_ui::SwaggerUi::new(REFERENCE_PATH).url(DOCUMENT_PATH, document))
}

// The error answers the handlers document. Never built: they only describe responses.

/// Bad JSON, bad fields or bad query parameters; the message says which.
#[derive(IntoResponses)]
#[response(status = 400)]
#[allow(dead_code)]
pub struct BadRequest(ErrorBody);

/// No API token, or one the coordinator does not know (with `--auth-file`).
#[derive(IntoResponses)]
#[response(
    status = 401,
    headers(("WWW-Authenticate" = String, description = "Bearer challenge (RFC 6750)"))
)]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// The API token lacks the scope this route needs.
#[derive(IntoResponses)]
#[response(status = 403)]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// Nothing by that name or id.
#[derive(IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// The saga's (or the registry's) state does not allow it now; the message says why in plain
/// words.
#[derive(IntoResponses)]
#[response(status = 409)]
#[allow(dead_code)]
pub struct Conflict(ErrorBody);

/// The body is larger than the limit.
#[derive(IntoResponses)]
#[response(status = 413)]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// The body is not `application/json`.
#[derive(IntoResponses)]
#[response(status = 415)]
#[allow(dead_code)]
pub struct UnsupportedMediaType(ErrorBody);

/// The same idempotency key was used with another body.
#[derive(IntoResponses)]
#[response(status = 422)]
#[allow(dead_code)]
pub struct KeyReused(ErrorBody);

/// Over the submission rate; retry after `Retry-After` seconds.
#[derive(IntoResponses)]
#[response(
    status = 429,
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
#[allow(dead_code)]
pub struct TooManyRequests(ErrorBody);

/// Not now: shutting down, the store is unavailable or the log could not be made durable
/// (nothing was accepted), or the saga moved to another instance of the cluster. Safe to retry.
#[derive(IntoResponses)]
#[response(status = 503)]
#[allow(dead_code)]
pub struct Unavailable(ErrorBody);
