//! The operator dashboard at `/ui`: a small single-page app, embedded in the binary, that
//! reads and operates sagas through the JSON API v1 (no build step, no CDN, no server-side
//! rendering).
//!
//! `/ui`, `/ui/` and every other path under `/ui/` (deep links such as `/ui/sagas/{id}`) serve
//! the same `index.html`; the script routes in the browser. `/ui/assets/{file}` serves the
//! embedded script, stylesheet and icon, and answers `404` for anything else. Every answer
//! carries a strict Content-Security-Policy (scripts, styles and fetches from this origin only,
//! no inline code), so even data that slipped past the page's escaping could not run.
//!
//! The routes hold no state and are merged beside the API by the server, outside any API
//! middleware: the page must load without a token so that it can ask for one (it sends it as
//! `Authorization: Bearer` on every API call once an API answer is `401`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// `default-src 'self'` with nothing inline, no plugins, no framing, no `<base>` changes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file and how it is served.
struct Asset {
    /// The name under `/ui/assets/`, or `index.html` for the page itself.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A strong validator computed at compile time, so a reload revalidates for free.
    etag: &'static str,
}

/// Builds an [`Asset`] from a file in `assets/`, with its ETag computed at compile time.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("assets/", $name));
        const ETAG_BYTES: [u8; 18] = etag_of(BODY);
        const ETAG: &str = match std::str::from_utf8(&ETAG_BYTES) {
            Ok(etag) => etag,
            Err(_) => panic!("an ETag is ASCII"),
        };
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            etag: ETAG,
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything under `/ui/assets/`.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// `"` + 16 hex digits of the FNV-1a hash of `body` + `"`.
const fn etag_of(body: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < body.len() {
        hash ^= body[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut etag = [b'"'; 18];
    let mut digit = 0;
    while digit < 16 {
        etag[1 + digit] = HEX[((hash >> (60 - 4 * digit)) & 0xf) as usize];
        digit += 1;
    }
    etag
}

/// The dashboard's routes, for any router state (they use none).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/{*deep_link}", get(page))
}

/// The page, for `/ui` and every deep link under it.
async fn page(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => serve(asset, &headers),
        None => with_security_headers(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no dashboard asset {file:?}\n"),
            )
                .into_response(),
        ),
    }
}

/// `200` with the body, or `304` when the browser's copy is current. `no-cache`: always
/// revalidate, so a new binary's dashboard shows at the next load.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|tags| tags.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    let response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let mut response = with_security_headers(response);
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, body.to_vec())
    }

    fn content_type(headers: &HeaderMap) -> &str {
        headers[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_deep_links_serve_index_html() {
        for path in [
            "/ui",
            "/ui/",
            "/ui/sagas/0190e4c2-5b1a-7c3d-8e9f-0a1b2c3d4e5f",
            "/ui/participants",
            "/ui/workflows/place_order",
            "/ui/no/such/page",
        ] {
            let (status, headers, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(content_type(&headers), "text/html; charset=utf-8", "{path}");
            assert_eq!(body, INDEX.body, "{path}");
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_types() {
        for (name, expected) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get(&format!("/ui/assets/{name}"), &[]).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(content_type(&headers), expected, "{name}");
            assert!(!body.is_empty(), "{name}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_not_found_rather_than_the_page() {
        for path in [
            "/ui/assets/nope.js",
            "/ui/assets/index.html",
            "/ui/assets/..%2Fmod.rs",
        ] {
            let (status, headers, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                content_type(&headers),
                "text/plain; charset=utf-8",
                "{path}"
            );
            assert!(
                !String::from_utf8(body).unwrap().contains("<html"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn every_answer_forbids_inline_and_foreign_code() {
        for path in [
            "/ui",
            "/ui/sagas/x",
            "/ui/assets/app.js",
            "/ui/assets/missing",
        ] {
            let (_, headers, _) = get(path, &[]).await;
            let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(
                policy.starts_with("default-src 'self';"),
                "{path}: {policy}"
            );
            assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
            assert!(!policy.contains("unsafe-eval"), "{path}: {policy}");
            assert!(
                policy.contains("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
        }
    }

    #[tokio::test]
    async fn a_current_copy_is_revalidated_with_its_etag() {
        let (_, headers, _) = get("/ui/assets/app.css", &[]).await;
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let (status, _, body) = get("/ui/assets/app.css", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = get("/ui/assets/app.css", &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(status, StatusCode::OK);
        // Each file has its own tag.
        let (_, js, _) = get("/ui/assets/app.js", &[]).await;
        assert_ne!(js[header::ETAG], headers[header::ETAG]);
    }

    #[test]
    fn etags_are_quoted_hex_of_the_content() {
        let etag = etag_of(b"");
        assert_eq!(&etag, b"\"cbf29ce484222325\"");
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        for asset in ASSETS {
            assert!(
                page.contains(&format!("/ui/assets/{}", asset.name)),
                "index.html does not reference {}",
                asset.name
            );
        }
        // Nothing inline, nothing from elsewhere: the CSP would refuse it.
        assert!(!page.contains("<script>"), "inline script in index.html");
        assert!(!page.contains("style="), "inline style in index.html");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
