//! API tokens (`--auth-file`): who may call which route.
//!
//! The auth file is TOML, one `[[tokens]]` table per token:
//!
//! ```toml
//! [[tokens]]
//! name = "checkout-service"
//! sha256 = "<hex SHA-256 of the token>"
//! scopes = ["submit", "read"]
//! ```
//!
//! Only the token's SHA-256 is stored; a presented token is hashed and compared with every
//! stored hash in constant time. Scopes do not imply each other: `read` (every `GET`, and `POST /v1/sagas/states`), `submit`
//! (`POST /v1/sagas`), `operate` (abort, retry, retry-now, resolve, bulk retry), `admin`
//! (`PUT` participants and workflows). A request without a known token is `401` with
//! `WWW-Authenticate: Bearer`; a known token without the route's scope is `403`. The health
//! probes (`/healthz`, `/readyz`) and the API's documents (`/openapi.json`, `/docs`) stay open.
//! The matched token's name travels with the request as a [`Caller`], so operator actions
//! record it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "saga-coordinator";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET`: sagas, events, participants, workflows, metrics; and `POST
    /// /v1/sagas/states` (a batch of saga states, what participants' retention sweeps ask).
    Read,
    /// `POST /v1/sagas`.
    Submit,
    /// Operator actions: abort, retry, retry-now, resolve, bulk retry.
    Operate,
    /// Registering participants and defining workflows.
    Admin,
}

impl Scope {
    /// The scope's name in the auth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

/// Why the auth file cannot be used. The coordinator does not start with it.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file cannot be read.
    #[error("cannot read the auth file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the documented shape.
    #[error("auth file {path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: toml::de::Error,
    },
    /// One token breaks a rule.
    #[error("auth file {path}: tokens[{index}].{field}: {rule}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Which `[[tokens]]` table, from 0.
        index: usize,
        /// The field.
        field: &'static str,
        /// What it must be.
        rule: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
}

/// One token: its name, the SHA-256 of its secret, its scopes.
#[derive(Debug, Clone)]
struct ApiToken {
    name: Arc<str>,
    sha256: [u8; 32],
    scopes: Vec<Scope>,
}

/// The tokens of an auth file.
#[derive(Debug, Clone)]
pub struct Tokens {
    tokens: Vec<ApiToken>,
}

/// Who made a request: the name of the token it carried. In the request's extensions once the
/// token is checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's `name` in the auth file.
    pub name: Arc<str>,
}

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: health probes and the API's documents.
    Open,
    /// A known token with this scope.
    Scope(Scope),
    /// Any known token (a route that does not exist, a method a route does not take).
    Known,
}

impl Tokens {
    /// Reads and checks the auth file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(path, &text)
    }

    /// Checks the auth file's `text` (`path` names it in errors): names non-empty and unique,
    /// hashes 64 hex digits, at least one scope per token.
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, AuthFileError> {
        let file: AuthFile = toml::from_str(text).map_err(|source| AuthFileError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let bad = |index, field, rule: &str| AuthFileError::Token {
            path: path.to_owned(),
            index,
            field,
            rule: rule.to_string(),
        };
        let mut tokens: Vec<ApiToken> = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.into_iter().enumerate() {
            if entry.name.trim().is_empty()
                || entry.name.chars().count() > 128
                || entry.name.chars().any(char::is_control)
            {
                return Err(bad(
                    index,
                    "name",
                    "must be 1 to 128 characters without control characters",
                ));
            }
            if tokens.iter().any(|t| *t.name == *entry.name) {
                return Err(bad(index, "name", "another token has this name"));
            }
            let sha256 = decode_sha256(&entry.sha256).ok_or_else(|| {
                bad(
                    index,
                    "sha256",
                    "must be the token's SHA-256 as 64 hex digits (printf %s TOKEN | sha256sum)",
                )
            })?;
            if entry.scopes.is_empty() {
                return Err(bad(
                    index,
                    "scopes",
                    "must name at least one of read, submit, operate, admin",
                ));
            }
            tokens.push(ApiToken {
                name: entry.name.into(),
                sha256,
                scopes: entry.scopes,
            });
        }
        Ok(Tokens { tokens })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the file holds no token (every protected request is then refused).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token whose hash is `presented`'s SHA-256. Every stored hash is compared, each in
    /// constant time, so the time taken says nothing about which (if any) matched.
    fn find(&self, presented: &str) -> Option<&ApiToken> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.sha256.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }
}

/// `text` as 32 bytes, if it is 64 hex digits.
fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// What `method` on `path` asks of the caller.
pub fn requirement(method: &Method, path: &str) -> Requirement {
    let documents = path == crate::api::openapi::DOCUMENT_PATH
        || path == crate::api::openapi::REFERENCE_PATH
        || path.starts_with("/docs/");
    if path == "/healthz" || path == "/readyz" || documents {
        return Requirement::Open;
    }
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    match *method {
        Method::GET | Method::HEAD => Requirement::Scope(Scope::Read),
        Method::POST if path == "/v1/sagas" => Requirement::Scope(Scope::Submit),
        // A read in a POST (the ids travel in the body): participants' retention sweeps.
        Method::POST if path == "/v1/sagas/states" => Requirement::Scope(Scope::Read),
        Method::POST if path.starts_with("/v1/sagas/") => Requirement::Scope(Scope::Operate),
        Method::PUT if under("/v1/participants") || under("/v1/workflows") => {
            Requirement::Scope(Scope::Admin)
        }
        _ => Requirement::Known,
    }
}

/// The bearer token of `request`, if it carries one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `401` with `WWW-Authenticate` (RFC 6750): `invalid_token` when a token was sent.
fn unauthorized(token_sent: bool) -> Response {
    let (message, challenge) = if token_sent {
        (
            "unknown API token",
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
        )
    } else {
        (
            "this route needs an API token: send Authorization: Bearer <token>",
            format!("Bearer realm=\"{REALM}\""),
        )
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("a challenge is ASCII"),
    );
    response
}

/// `403`: the token is known but lacks `scope`.
fn forbidden(caller: &str, scope: Scope) -> Response {
    let mut response = ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "token {caller:?} lacks the {:?} scope this route needs",
            scope.as_str()
        ),
    )
    .into_response();
    let challenge = format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
        scope.as_str()
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("a challenge is ASCII"),
    );
    response
}

/// The middleware: lets a request through when its route is open or its token has the
/// route's scope (adding the [`Caller`]); answers `401` or `403` otherwise.
pub async fn check(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let needed = requirement(request.method(), request.uri().path());
    if needed == Requirement::Open {
        return next.run(request).await;
    }
    let Some(presented) = bearer(&request) else {
        return unauthorized(false);
    };
    let Some(token) = tokens.find(presented) else {
        return unauthorized(true);
    };
    if let Requirement::Scope(scope) = needed
        && !token.scopes.contains(&scope)
    {
        return forbidden(&token.name, scope);
    }
    let caller = Caller {
        name: token.name.clone(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_OF_SECRET: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let text = format!(
            "[[tokens]]\nname = \"ops\"\nsha256 = \"{HASH_OF_SECRET}\"\nscopes = [\"read\", \"operate\"]\n"
        );
        let tokens = Tokens::parse(Path::new("auth.toml"), &text).unwrap();
        let token = tokens
            .find("secret")
            .expect("the token whose hash is listed");
        assert_eq!(&*token.name, "ops");
        assert_eq!(token.scopes, [Scope::Read, Scope::Operate]);
        assert!(tokens.find("Secret").is_none());
        assert!(tokens.find(HASH_OF_SECRET).is_none());
    }

    #[test]
    fn bad_files_name_the_token_and_field() {
        let cases = [
            (
                "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"read\"]\n",
                "sha256",
            ),
            (
                &format!(
                    "[[tokens]]\nname = \"\"\nsha256 = \"{HASH_OF_SECRET}\"\nscopes = [\"read\"]\n"
                ),
                "name",
            ),
            (
                &format!("[[tokens]]\nname = \"a\"\nsha256 = \"{HASH_OF_SECRET}\"\nscopes = []\n"),
                "scopes",
            ),
        ];
        for (text, field) in cases {
            match Tokens::parse(Path::new("auth.toml"), text) {
                Err(AuthFileError::Token { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let unknown_scope = format!(
            "[[tokens]]\nname = \"a\"\nsha256 = \"{HASH_OF_SECRET}\"\nscopes = [\"root\"]\n"
        );
        assert!(matches!(
            Tokens::parse(Path::new("auth.toml"), &unknown_scope),
            Err(AuthFileError::Toml { .. })
        ));
    }

    #[test]
    fn each_route_asks_for_its_scope() {
        let cases = [
            (Method::GET, "/healthz", Requirement::Open),
            (Method::GET, "/readyz", Requirement::Open),
            (Method::GET, "/openapi.json", Requirement::Open),
            (Method::GET, "/metrics", Requirement::Scope(Scope::Read)),
            (Method::GET, "/v1/sagas/x", Requirement::Scope(Scope::Read)),
            (Method::POST, "/v1/sagas", Requirement::Scope(Scope::Submit)),
            (
                Method::POST,
                "/v1/sagas/states",
                Requirement::Scope(Scope::Read),
            ),
            (
                Method::POST,
                "/v1/sagas/x/abort",
                Requirement::Scope(Scope::Operate),
            ),
            (
                Method::POST,
                "/v1/sagas/bulk/retry",
                Requirement::Scope(Scope::Operate),
            ),
            (
                Method::PUT,
                "/v1/participants/w",
                Requirement::Scope(Scope::Admin),
            ),
            (
                Method::PUT,
                "/v1/workflows/w",
                Requirement::Scope(Scope::Admin),
            ),
            (Method::DELETE, "/v1/sagas/x", Requirement::Known),
            (Method::PUT, "/v1/participantsx", Requirement::Known),
        ];
        for (method, path, expected) in cases {
            assert_eq!(requirement(&method, path), expected, "{method} {path}");
        }
    }
}
