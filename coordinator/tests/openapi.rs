//! The OpenAPI document (`/openapi.json`) covers every route the API serves, with request,
//! response and error schemas, and the reference page (`/docs`) is served from the binary.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod setup;

use serde_json::Value;

/// Every route of DESIGN.md's "Coordinator API v1", as `(method, path)`.
const CONTRACT: &[(&str, &str)] = &[
    ("put", "/v1/participants/{name}"),
    ("get", "/v1/participants/{name}"),
    ("get", "/v1/participants"),
    ("put", "/v1/workflows/{name}"),
    ("get", "/v1/workflows/{name}"),
    ("get", "/v1/workflows"),
    ("post", "/v1/sagas"),
    ("get", "/v1/sagas"),
    ("get", "/v1/sagas/{id}"),
    ("get", "/v1/sagas/{id}/events"),
    ("post", "/v1/sagas/{id}/abort"),
    ("post", "/v1/sagas/{id}/retry"),
    ("post", "/v1/sagas/{id}/retry-now"),
    ("post", "/v1/sagas/{id}/steps/{step}/resolve"),
    ("post", "/v1/sagas/bulk/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

async fn document(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `(method, path)` of every operation in `doc`.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(*method).is_some() {
                operations.push((method.to_string(), path.clone()));
            }
        }
    }
    operations
}

/// Follows a `$ref` into `#/components/schemas`.
fn schema_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

#[tokio::test]
async fn every_route_is_documented_with_its_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator::start(setup::options(dir.path()))
        .await
        .unwrap();
    let base = coordinator.url();
    let doc = document(&base).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let documented = operations(&doc);
    for (method, path) in CONTRACT {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is missing from /openapi.json"
        );
    }
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method];
        let responses = operation["responses"].as_object().unwrap();
        let success = responses
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .unwrap_or_else(|| panic!("{method} {path}: no success response"));
        assert!(
            success.1["content"]
                .as_object()
                .is_some_and(|c| !c.is_empty()),
            "{method} {path}: the success response has no schema"
        );
        // Every error answer is the error body.
        for (status, response) in responses {
            if status.starts_with('4') || (status.starts_with('5') && path.starts_with("/v1")) {
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema_name(schema),
                    Some("ErrorBody"),
                    "{method} {path} {status}"
                );
            }
        }
        // Bodies are described; every `$ref` resolves.
        if matches!(method.as_str(), "put") || path == "/v1/sagas" && method == "post" {
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            let name = schema_name(body).unwrap_or_else(|| panic!("{method} {path}: no body"));
            assert!(schemas.contains_key(name), "{name}");
        }
        for param in path.split('/').filter(|s| s.starts_with('{')) {
            let name = param.trim_matches(['{', '}']);
            let params = operation["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path}: path parameter {name} undocumented"
            );
        }
    }
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    // Query filters are parameters of the list.
    let list = doc["paths"]["/v1/sagas"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for name in [
        "state",
        "workflow",
        "business_key",
        "created_after",
        "created_before",
        "limit",
        "cursor",
    ] {
        assert!(
            list.iter().any(|p| p["name"] == name && p["in"] == "query"),
            "{name}"
        );
    }
    coordinator.shutdown().await;
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator::start(setup::options(dir.path()))
        .await
        .unwrap();
    let base = coordinator.url();
    let doc = document(&base).await;
    let http = reqwest::Client::new();
    for (method, path) in operations(&doc) {
        let target = path.replace("{id}", "no-such-saga").replace(['{', '}'], "");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = http
            .request(method.clone(), format!("{base}{target}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is documented but not served");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is documented but not served: {status} {body}"
        );
        assert!(
            status < 500 || path == "/readyz" || path == "/metrics",
            "{method} {path}: {status} {body}"
        );
    }
    coordinator.shutdown().await;
}

/// The router is built only from documented handlers (`utoipa_axum::routes!`): a route added
/// any other way would be served without being in the document.
#[test]
fn routes_are_added_only_with_their_documentation() {
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    for entry in std::fs::read_dir(&api).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            assert!(
                !code.contains(".route(") && !code.contains(".nest("),
                "{}:{}: a route added without utoipa_axum::routes! is not in /openapi.json",
                path.display(),
                n + 1
            );
        }
    }
}

#[tokio::test]
async fn the_reference_page_is_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator::start(setup::options(dir.path()))
        .await
        .unwrap();
    let base = coordinator.url();
    let page = reqwest::get(format!("{base}/docs/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    // Every asset the page loads is served here: nothing comes from a CDN.
    let mut assets = 0;
    for attribute in ["src=\"", "href=\""] {
        for rest in html.split(attribute).skip(1) {
            let target = &rest[..rest.find('"').unwrap()];
            assert!(!target.contains("://"), "external asset {target}");
            let url = format!("{base}/docs/{}", target.trim_start_matches("./"));
            let asset = reqwest::get(&url).await.unwrap();
            assert_eq!(asset.status(), 200, "{url}");
            assets += 1;
        }
    }
    assert!(assets >= 2, "{html}");
    // The page is pointed at this document.
    let config = reqwest::get(format!("{base}/docs/swagger-initializer.js"))
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    coordinator.shutdown().await;
}
