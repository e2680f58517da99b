//! Security: API tokens and their scopes (`--auth-file`), signed outbound calls
//! (`--signing-key`), the outbound guard (`--allow-outbound`). Each against a real coordinator
//! on port 0.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)] // shared by several test binaries, each using part of it
mod setup;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use fake_participant::{FakeParticipant, eventually};
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use sagas::{CoordinatorClient, Phase};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DEPLOYER: &str = "deployer-secret-token";
const CHECKOUT: &str = "checkout-secret-token";
const OPS: &str = "ops-secret-token";
const VIEWER: &str = "viewer-secret-token";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An auth file with four tokens: `deployer` (admin, read), `checkout` (submit, read), `ops`
/// (operate, read), `viewer` (read).
fn auth_file(dir: &Path) -> PathBuf {
    let path = dir.join("auth.toml");
    let mut text = String::new();
    for (name, token, scopes) in [
        ("deployer", DEPLOYER, r#""admin", "read""#),
        ("checkout", CHECKOUT, r#""submit", "read""#),
        ("ops", OPS, r#""operate", "read""#),
        ("viewer", VIEWER, r#""read""#),
    ] {
        text.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n\n",
            sha256_hex(token)
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `method path` with `token` (none when `None`): the status, `WWW-Authenticate` and body.
async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test]
async fn each_route_answers_401_403_or_passes_by_its_scope() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path());
    let coordinator =
        setup::start_with(&dir.path().join("c"), |o| o.auth_file = Some(auth.clone())).await;
    let base = coordinator.url();
    let (_fake, addr) = FakeParticipant::start().await;

    // Open: the probes and the API's documents.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let (status, challenge, _) = call(&base, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(challenge, None, "{path}");
    }

    // No token: 401 with a bare challenge; an unknown one: 401 with invalid_token.
    let (status, challenge, body) = call(&base, Method::GET, "/v1/sagas", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="saga-coordinator""#)
    );
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, challenge, _) =
        call(&base, Method::GET, "/v1/sagas", Some("not-a-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains(r#"error="invalid_token""#));
    // The hash itself is no token.
    let (status, _, _) = call(
        &base,
        Method::GET,
        "/v1/sagas",
        Some(&sha256_hex(VIEWER)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let basic = reqwest::Client::new()
        .get(format!("{base}/v1/sagas"))
        .header("authorization", format!("Basic {VIEWER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    for path in ["/metrics", "/v1/participants", "/v1/no-such-route"] {
        let (status, challenge, _) = call(&base, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(challenge.is_some(), "{path}");
    }

    // read: every GET, nothing else.
    for path in ["/v1/sagas", "/metrics", "/v1/participants", "/v1/workflows"] {
        let (status, _, _) = call(&base, Method::GET, path, Some(VIEWER), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _, _) = call(&base, Method::GET, "/v1/no-such-route", Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let submission = json!({"workflow": "w", "input": {}});
    let (status, challenge, body) = call(
        &base,
        Method::POST,
        "/v1/sagas",
        Some(VIEWER),
        Some(submission.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submit")
    );
    assert!(challenge.unwrap().contains(r#"error="insufficient_scope""#));

    // admin: participants and workflows; nobody else.
    let participant = serde_json::to_value(setup::participant_spec(addr, json!({}))).unwrap();
    for token in [CHECKOUT, OPS, VIEWER] {
        let (status, _, _) = call(
            &base,
            Method::PUT,
            "/v1/participants/p",
            Some(token),
            Some(participant.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token}");
    }
    let (status, _, _) = call(
        &base,
        Method::PUT,
        "/v1/participants/p",
        Some(DEPLOYER),
        Some(participant),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let workflow = json!({"steps": [{"name": "only", "participant": "p", "action": "s"}]});
    let (status, _, _) = call(
        &base,
        Method::PUT,
        "/v1/workflows/w",
        Some(CHECKOUT),
        Some(workflow.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        &base,
        Method::PUT,
        "/v1/workflows/w",
        Some(DEPLOYER),
        Some(workflow),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // submit: POST /v1/sagas only.
    let (status, _, body) = call(
        &base,
        Method::POST,
        "/v1/sagas?wait_ms=5000",
        Some(CHECKOUT),
        Some(submission.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, _, _) = call(
        &base,
        Method::POST,
        "/v1/sagas",
        Some(DEPLOYER),
        Some(submission),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // operate: the operator actions only (a committed saga cannot be aborted: 409, past auth).
    let abort = format!("/v1/sagas/{id}/abort");
    for token in [CHECKOUT, DEPLOYER, VIEWER] {
        let (status, _, _) = call(&base, Method::POST, &abort, Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token}");
    }
    let (status, _, _) = call(&base, Method::POST, &abort, Some(OPS), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = call(&base, Method::POST, "/v1/sagas/bulk/retry", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&base, Method::POST, "/v1/sagas/bulk/retry", Some(OPS), None).await;
    assert_eq!(status, StatusCode::OK);

    // The SDK client sends its token.
    let client = CoordinatorClient::with_token(base.clone(), Some(VIEWER)).unwrap();
    assert_eq!(client.get_saga(&id).await.unwrap().id, id);
    let anonymous = CoordinatorClient::new(base.clone());
    match anonymous.get_saga(&id).await {
        Err(sagas::ClientError::Api { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    coordinator.shutdown().await;
}

#[tokio::test]
async fn an_operator_action_records_the_token_name_not_the_by_it_claims() {
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path());
    let coordinator =
        setup::start_with(&dir.path().join("c"), |o| o.auth_file = Some(auth.clone())).await;
    let deployer = CoordinatorClient::with_token(coordinator.url(), Some(DEPLOYER)).unwrap();
    let checkout = CoordinatorClient::with_token(coordinator.url(), Some(CHECKOUT)).unwrap();
    let ops = CoordinatorClient::with_token(coordinator.url(), Some(OPS)).unwrap();
    let (fake, addr) = FakeParticipant::start().await;
    fake.hold(Phase::Action);
    setup::register(&deployer, "p", addr, json!({})).await;
    setup::one_step_workflow(&deployer, "w", "p", "s").await;
    let id = checkout
        .submit("w", json!({}), None, None)
        .await
        .unwrap()
        .saga
        .id;
    eventually("the action call arrives", || async {
        fake.count(Phase::Action) == 1
    })
    .await;
    let note = sagas::api::OperatorNote {
        reason: Some("customer asked".into()),
        by: Some("mallory".into()),
    };
    ops.abort_with(&id, &note).await.unwrap();
    fake.release_all();
    setup::wait_for(&ops, &id, |s| s.state.is_terminal()).await;
    let events = ops.saga_events(&id).await.unwrap().events;
    let operated = events
        .iter()
        .find(|e| e.kind == "operated")
        .expect("the abort is recorded");
    assert_eq!(operated.by.as_deref(), Some("ops"));
    assert_eq!(operated.reason.as_deref(), Some("customer asked"));
    coordinator.shutdown().await;
}

#[tokio::test]
async fn a_bad_auth_file_stops_start_up_naming_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(
        &path,
        "[[tokens]]\nname = \"x\"\nsha256 = \"not-hex\"\nscopes = [\"read\"]\n",
    )
    .unwrap();
    let mut options = setup::options(&dir.path().join("c"));
    options.auth_file = Some(path);
    let error = coordinator::start(options).await.err().expect("refused");
    let message = error.to_string();
    assert!(message.contains("tokens[0].sha256"), "{message}");
}

#[tokio::test]
async fn the_document_declares_the_bearer_scheme_and_the_auth_answers() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(&dir.path().join("c")).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", coordinator.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let submit = &doc["paths"]["/v1/sagas"]["post"];
    assert_eq!(submit["security"], json!([{"bearer": []}]));
    for status in ["401", "403", "413"] {
        assert!(submit["responses"][status].is_object(), "{status}");
    }
    assert!(
        doc["paths"]["/v1/sagas/{id}/abort"]["post"]["responses"]["413"].is_object(),
        "an optional body can be too large too"
    );
    assert!(doc["paths"]["/v1/sagas/{id}/abort"]["post"]["responses"]["401"].is_object());
    let healthz = &doc["paths"]["/healthz"]["get"];
    assert!(healthz["security"].is_null());
    assert!(healthz["responses"]["401"].is_null());
    coordinator.shutdown().await;
}

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    signature: Option<String>,
    body: Vec<u8>,
}

/// A receiver on a free loopback port that answers `200 {}` to everything and records it.
async fn recorder() -> (Arc<Mutex<Vec<Seen>>>, SocketAddr) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: HeaderMap,
              body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    target: uri.path_and_query().unwrap().to_string(),
                    signature: headers
                        .get("saga-signature")
                        .map(|v| v.to_str().unwrap().to_string()),
                    body: body.to_vec(),
                });
                axum::Json(json!({}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, addr)
}

/// Checks `seen` against DESIGN.md's formula, computed here from the secret:
/// `t=<unix seconds>,kid=<ID>,v1=<hex HMAC-SHA256(SECRET, "<t>.<METHOD>.<path>.<body>")>`.
fn assert_signed(seen: &Seen, kid: &str, secret: &[u8]) {
    let header = seen.signature.as_deref().expect("a Saga-Signature header");
    let fields: Vec<(&str, &str)> = header
        .split(',')
        .map(|part| part.split_once('=').unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{header}");
    assert_eq!(fields[0].0, "t");
    assert_eq!(fields[1], ("kid", kid));
    assert_eq!(fields[2].0, "v1");
    let t: u64 = fields[0].1.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t.abs_diff(now) < 60, "signed at {t}, now {now}");
    let mut message = format!("{t}.{}.{}.", seen.method, seen.target).into_bytes();
    message.extend_from_slice(&seen.body);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&message);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(fields[2].1, expected, "{} {}", seen.method, seen.target);
}

#[tokio::test]
async fn branch_calls_and_callbacks_carry_the_designed_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, addr) = recorder().await;
    let coordinator = setup::start_with(&dir.path().join("c"), |o| {
        o.signing_keys = vec![
            "current:s3cret-now".parse().unwrap(),
            "previous:s3cret-before".parse().unwrap(),
        ];
    })
    .await;
    let client = CoordinatorClient::new(coordinator.url());
    setup::register(&client, "p", addr, json!({})).await;
    setup::one_step_workflow(&client, "w", "p", "t").await;
    let body = sagas::api::SubmitSaga {
        workflow: "w".into(),
        input: json!({"amount": 1.50, "note": "é"}).into(),
        callback_url: Some(format!("http://{addr}/done?order=7")),
        business_key: None,
    };
    let id = client.submit_body(&body, None, None).await.unwrap().saga.id;
    setup::wait_for(&client, &id, |s| s.state.is_terminal()).await;
    eventually("the callback arrives", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s.target.starts_with("/done"))
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert!(targets.contains(&"/try"), "{targets:?}");
    assert!(targets.contains(&"/confirm"), "{targets:?}");
    assert!(targets.contains(&"/done?order=7"), "{targets:?}");
    for request in &seen {
        assert_signed(request, "current", b"s3cret-now");
    }
    coordinator.shutdown().await;
}

#[tokio::test]
async fn the_guard_refuses_link_local_unspecified_and_metadata_targets() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(&dir.path().join("c")).await;
    let client = CoordinatorClient::new(coordinator.url());
    let (_fake, addr) = FakeParticipant::start().await;
    let mut spec = setup::participant_spec(addr, json!({}));
    for url in [
        "http://169.254.169.254",
        "http://[fe80::1]:8080",
        "http://0.0.0.0:7701",
        "http://metadata.google.internal",
    ] {
        spec.base_url = url.into();
        match client.put_participant("p", &spec).await {
            Err(sagas::ClientError::Api {
                status: 400,
                message,
                ..
            }) => assert!(message.starts_with("base_url:"), "{url}: {message}"),
            other => panic!("{url}: expected 400, got {other:?}"),
        }
    }
    setup::register(&client, "p", addr, json!({})).await;
    setup::one_step_workflow(&client, "w", "p", "s").await;
    let body = sagas::api::SubmitSaga {
        workflow: "w".into(),
        input: json!({}).into(),
        callback_url: Some("http://169.254.169.254/latest/meta-data".into()),
        business_key: None,
    };
    match client.submit_body(&body, None, None).await {
        Err(sagas::ClientError::Api {
            status: 400,
            message,
            ..
        }) => assert!(message.starts_with("callback_url:"), "{message}"),
        other => panic!("expected 400, got {other:?}"),
    }
    coordinator.shutdown().await;
}

#[tokio::test]
async fn allow_outbound_narrows_targets_and_is_checked_on_the_resolved_address() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start_with(&dir.path().join("c"), |o| {
        o.allow_outbound = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let client = CoordinatorClient::new(coordinator.url());
    let (fake, addr) = FakeParticipant::start().await;
    let mut spec = setup::participant_spec(addr, json!({}));
    // An address outside the list: refused at registration.
    match client.put_participant("p", &spec).await {
        Err(sagas::ClientError::Api {
            status: 400,
            message,
            ..
        }) => {
            assert!(message.contains("--allow-outbound"), "{message}")
        }
        other => panic!("expected 400, got {other:?}"),
    }
    // A name: accepted, and refused when it resolves to 127.0.0.1 at call time.
    spec.base_url = format!("http://localhost:{}", addr.port());
    client.put_participant("p", &spec).await.unwrap();
    setup::one_step_workflow(&client, "w", "p", "s").await;
    let id = client
        .submit("w", json!({}), None, Some(10_000))
        .await
        .unwrap()
        .saga
        .id;
    let saga = setup::wait_for(&client, &id, |s| s.state.is_terminal()).await;
    assert_eq!(saga.state, sagas::api::SagaState::Aborted);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let events = client.saga_events(&id).await.unwrap().events;
    let refused = events
        .iter()
        .find_map(|e| e.error.as_deref().filter(|e| e.contains("outbound guard")));
    assert!(refused.is_some(), "{events:#?}");
    coordinator.shutdown().await;
}

#[tokio::test]
async fn oversized_deep_or_misnamed_input_gets_4xx_never_a_500() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(&dir.path().join("c")).await;
    let base = coordinator.url();
    let client = CoordinatorClient::new(base.clone());
    let (_fake, addr) = FakeParticipant::start().await;
    setup::register(&client, "p", addr, json!({})).await;
    setup::one_step_workflow(&client, "w", "p", "s").await;

    let huge = json!({"workflow": "w", "input": {"blob": "x".repeat(3 << 20)}});
    let (status, _, body) = call(&base, Method::POST, "/v1/sagas", None, Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let deep = format!(
        r#"{{"workflow": "w", "input": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/sagas"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let steps: Vec<Value> = (0..300)
        .map(|i| json!({"name": format!("s{i}"), "participant": "p", "action": "s"}))
        .collect();
    let (status, _, body) = call(
        &base,
        Method::PUT,
        "/v1/workflows/many",
        None,
        Some(json!({"steps": steps})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for name in ["a%2Fb", "-dash-first", "dot..%0A"] {
        let spec = serde_json::to_value(setup::participant_spec(addr, json!({}))).unwrap();
        let (status, _, body) = call(
            &base,
            Method::PUT,
            &format!("/v1/participants/{name}"),
            None,
            Some(spec),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }
    // Still serving.
    let (status, _, _) = call(&base, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    coordinator.shutdown().await;
}

#[tokio::test]
async fn alert_webhooks_carry_the_designed_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, hook) = recorder().await;
    let coordinator = setup::start_with(&dir.path().join("c"), |o| {
        o.signing_keys = vec!["alerts-key:s3cret-hook".parse().unwrap()];
        o.alerts.webhook = Some(format!("http://{hook}/alerts?team=payments"));
    })
    .await;
    let client = CoordinatorClient::new(coordinator.url());
    // Two consecutive failures open the circuit, which is alerted.
    let (flaky, addr) = FakeParticipant::start().await;
    let policy = json!({
        "circuit_breaker": {"failure_threshold": 2, "open_ms": 600000},
        "retry": setup::fast_retry(1, 1000)
    });
    setup::register(&client, "flaky", addr, policy).await;
    setup::one_step_workflow(&client, "w", "flaky", "s").await;
    flaky.answer(Phase::Action, 500);
    flaky.answer(Phase::Compensate, 500);
    client.submit("w", json!({}), None, None).await.unwrap();
    eventually("the alert arrives", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s.target.starts_with("/alerts"))
    })
    .await;
    let alert = seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.target.starts_with("/alerts"))
        .cloned()
        .unwrap();
    assert_eq!(alert.target, "/alerts?team=payments");
    assert_signed(&alert, "alerts-key", b"s3cret-hook");
    coordinator.shutdown().await;
}

/// The first `lines` lines the binary logs with `args`, then it is killed.
fn first_log_lines(args: &[&str], dir: &Path, lines: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let seen: Vec<String> = stderr.lines().take(lines).map(Result::unwrap).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

#[test]
fn the_binary_warns_loudly_when_the_api_is_open_and_not_when_tokens_are_on() {
    let dir = tempfile::tempdir().unwrap();
    // Start-up logs a handful of lines before "listening"; the warning comes first.
    let open = first_log_lines(&[], &dir.path().join("open"), 2).join("\n");
    assert!(open.contains("AUTHENTICATION IS OFF"), "{open}");
    let auth = auth_file(dir.path());
    let guarded = first_log_lines(
        &["--auth-file", auth.to_str().unwrap()],
        &dir.path().join("guarded"),
        2,
    )
    .join("\n");
    assert!(!guarded.contains("AUTHENTICATION IS OFF"), "{guarded}");
    assert!(guarded.contains("API tokens required"), "{guarded}");
}
