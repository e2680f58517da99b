//! The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver.
//!
//! An operator's walk: the sagas list loads without console errors and shows a committed saga
//! (also found by its business key); a stuck saga's page shows the stuck step, and resolving it
//! by clicking (reason typed into the in-page dialog) turns the saga `aborted`, on the page and
//! in the API's events; the participants page shows the circuit; the workflows page draws one
//! node per step. A second test checks the token prompt against a fake API that answers `401`.
//!
//! The browser tests run on sled only (the store plays no part in what the page shows). They
//! fail, not skip, when Chromium or chromedriver is missing: `.ci/run` installs them.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
mod setup;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use headless_chromium::fantoccini::Locator;
use headless_chromium::{Browser, ConsoleMessage};
use sagas::api::{SagaState, SubmitSaga};
use sagas::{CoordinatorClient, Phase, WorkflowBuilder};
use serde_json::{Value, json};

use fake_participant::FakeParticipant;

/// A browser, or a failure that says what to install.
async fn browser() -> Browser {
    Browser::start()
        .await
        .unwrap_or_else(|e| panic!("the dashboard tests need a headless Chromium: {e}"))
}

/// Console errors since the last look; resource loads the test expects to fail are the
/// caller's to filter.
async fn console_errors(browser: &Browser) -> Vec<ConsoleMessage> {
    let messages = browser.console_messages().await.unwrap();
    messages.into_iter().filter(|m| m.is_error()).collect()
}

/// Panics with the browser's error and what the page's banner said.
async fn expect<T>(browser: &Browser, result: Result<T, headless_chromium::Error>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => {
            let banner = browser
                .execute(
                    "const b = document.getElementById('banner'); return b && !b.hidden ? b.textContent : null",
                    vec![],
                )
                .await
                .ok();
            let console = browser.console_messages().await.unwrap_or_default();
            panic!("{e}\nbanner: {banner:?}\nconsole: {console:#?}")
        }
    }
}

#[tokio::test]
async fn an_operator_finds_sagas_and_resolves_a_stuck_one_by_clicking() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = setup::start(dir.path()).await;
    let client = CoordinatorClient::new(coordinator.url());
    let (fake, addr) = FakeParticipant::start().await;
    let policy = json!({"timeout_ms": 2000, "retry": setup::fast_retry(2, 2)});
    setup::register(&client, "p", addr, policy).await;
    let workflow = WorkflowBuilder::new()
        .step("s1", "p", "s")
        .step("t1", "p", "t")
        .build()
        .unwrap();
    client.put_workflow("w", &workflow).await.unwrap();

    let submit = |business_key: &str| SubmitSaga {
        workflow: "w".into(),
        input: json!({"order_id": business_key, "amount": 2500}).into(),
        callback_url: None,
        business_key: Some(business_key.into()),
    };
    let committed = client
        .submit_body(&submit("order-1001"), None, Some(10_000))
        .await
        .unwrap()
        .saga;
    assert_eq!(committed.state, SagaState::Committed, "{committed:?}");
    // The try is refused, so s1 is compensated; its compensation keeps failing: stuck.
    fake.answer(Phase::Try, 409);
    fake.answer(Phase::Compensate, 500);
    let submitted = client
        .submit_body(&submit("order-1002"), None, Some(0))
        .await
        .unwrap()
        .saga;
    let stuck = setup::wait_for(&client, &submitted.id, |s| s.state == SagaState::Stuck).await;
    assert_eq!(stuck.steps[0].status.as_str(), "stuck", "{stuck:?}");

    let browser = browser().await;
    let ui = format!("{}/ui", coordinator.url());

    // The list: loads clean, shows the committed saga and counts the stuck one.
    browser.goto(&ui).await.unwrap();
    let row = format!(
        "tr[data-saga-id='{}'][data-state='committed']",
        committed.id
    );
    expect(&browser, browser.wait_for_element(&row).await).await;
    expect(
        &browser,
        browser.wait_for_text("#stuck-count", |t| t == "1").await,
    )
    .await;
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors on /ui: {errors:#?}");

    // Search by business key: only that saga is listed.
    let search = browser.find(Locator::Css("#search")).await.unwrap();
    search.send_keys("order-1002\u{E007}").await.unwrap();
    // The chip is drawn with the filtered table, so once it shows, so does the result.
    expect(
        &browser,
        browser
            .wait_for_text("#key-chip", |t| t.contains("order-1002"))
            .await,
    )
    .await;
    let found = format!("tr[data-saga-id='{}'][data-state='stuck']", stuck.id);
    expect(&browser, browser.wait_for_element(&found).await).await;
    let rows = browser
        .find_all(Locator::Css("table.sagas tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the search for order-1002 lists one saga");

    // The stuck saga's page, by deep link: the stuck step, and a button to resolve it.
    browser
        .goto(&format!("{ui}/sagas/{}", stuck.id))
        .await
        .unwrap();
    expect(
        &browser,
        browser
            .wait_for_element("tr[data-step='s1'][data-status='stuck']")
            .await,
    )
    .await;
    expect(
        &browser,
        browser.wait_for_text("#saga-state", |t| t == "stuck").await,
    )
    .await;
    expect(
        &browser,
        browser
            .wait_for_element("#timeline tr.call[data-step='s1'][data-phase='compensate']")
            .await,
    )
    .await;
    // Retry asks for a reason only; cancelling sends nothing.
    expect(
        &browser,
        browser.click_element("button[data-action='retry']").await,
    )
    .await;
    expect(
        &browser,
        browser.wait_for_element("#operate-dialog[open]").await,
    )
    .await;
    let settled_as_field = browser
        .find(Locator::Css("#operate-as-field"))
        .await
        .unwrap();
    assert!(!settled_as_field.is_displayed().await.unwrap());
    expect(&browser, browser.click_element("#operate-cancel").await).await;
    expect(
        &browser,
        browser
            .wait_for_element("#operate-dialog:not([open])")
            .await,
    )
    .await;
    expect(
        &browser,
        browser
            .click_element("button[data-action='resolve'][data-step='s1']")
            .await,
    )
    .await;
    assert!(settled_as_field.is_displayed().await.unwrap());
    expect(
        &browser,
        browser.wait_for_element("#operate-dialog[open]").await,
    )
    .await;
    let settled_as = browser.find(Locator::Css("#operate-as")).await.unwrap();
    assert_eq!(
        settled_as.prop("value").await.unwrap().as_deref(),
        Some("compensated"),
        "a stuck compensation is settled as compensated by default"
    );
    let reason = "refund issued by hand, ticket OPS-42";
    browser
        .find(Locator::Css("#operate-reason"))
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    browser
        .find(Locator::Css("#operate-by"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#operate-confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The page shows the new state, the step settled by hand, and the operator's act.
    expect(
        &browser,
        browser
            .wait_for_text("#saga-state", |t| t == "aborted")
            .await,
    )
    .await;
    expect(
        &browser,
        browser
            .wait_for_text("tr[data-step='s1']", |t| {
                t.contains("resolved by hand as compensated")
            })
            .await,
    )
    .await;
    expect(
        &browser,
        browser
            .wait_for_text("#timeline tr.marker[data-event='operated']", |t| {
                t.contains(reason) && t.contains("alice")
            })
            .await,
    )
    .await;
    let dialog_open = browser
        .find_all(Locator::Css("#operate-dialog[open]"))
        .await
        .unwrap();
    assert!(
        dialog_open.is_empty(),
        "the dialog closes once the API accepted"
    );
    // ... and so does the API.
    let saga = client.get_saga(&stuck.id).await.unwrap();
    assert_eq!(saga.state, SagaState::Aborted, "{saga:?}");
    let events = client.saga_events(&stuck.id).await.unwrap().events;
    let operated = events.iter().filter(|e| e.kind == "operated").count();
    assert_eq!(operated, 1, "the cancelled retry sent nothing: {events:#?}");
    assert!(
        events.iter().any(|e| e.kind == "operated"
            && e.reason.as_deref() == Some(reason)
            && e.by.as_deref() == Some("alice")),
        "{events:#?}"
    );
    let compensations = fake.count(Phase::Compensate);

    // Participants, reached through the navigation: the circuit as the API reports it.
    browser
        .find(Locator::Css("nav a[data-section='participants']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let circuit = setup::circuit(&client, "p").await;
    let cell = format!("tr[data-participant='p'][data-circuit='{circuit}'] .badge");
    expect(
        &browser,
        browser
            .wait_for_text(&cell, |t| t == circuit.replace('_', " "))
            .await,
    )
    .await;

    // Workflows: one node per step in the drawn DAG, and an edge s1 -> t1.
    browser.goto(&format!("{ui}/workflows")).await.unwrap();
    expect(
        &browser,
        browser
            .wait_for_element("section[data-workflow='w'] svg.dag")
            .await,
    )
    .await;
    let nodes = browser
        .find_all(Locator::Css(
            "section[data-workflow='w'] svg.dag g.dag-node",
        ))
        .await
        .unwrap();
    let mut names = Vec::new();
    for node in &nodes {
        names.push(node.attr("data-step").await.unwrap().unwrap_or_default());
    }
    assert_eq!(names, ["s1", "t1"]);
    let edges = browser
        .find_all(Locator::Css(
            "section[data-workflow='w'] svg.dag path.dag-edge",
        ))
        .await
        .unwrap();
    assert_eq!(edges.len(), 1);

    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(
        fake.count(Phase::Compensate),
        compensations,
        "a resolved step is not called again"
    );
    browser.close().await;
    coordinator.shutdown().await;
}

/// Serves the dashboard beside a fake API that wants `Authorization: Bearer s3cret`, and records
/// the authorization each API call carried.
async fn dashboard_behind_a_token() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let guarded = |body: Value| {
        let seen = seen.clone();
        move |headers: HeaderMap| {
            let seen = seen.clone();
            let body = body.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                seen.lock().unwrap().push(auth.clone());
                if auth.as_deref() == Some("Bearer s3cret") {
                    (StatusCode::OK, Json(body))
                } else {
                    let error = json!({"error": {"code": "unauthorized", "message": "a token is required"}});
                    (StatusCode::UNAUTHORIZED, Json(error))
                }
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/v1/sagas",
            get(guarded(json!({"sagas": [], "next_cursor": null}))),
        )
        .route("/v1/workflows", get(guarded(json!({"workflows": []}))))
        .merge(coordinator::dashboard::routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_dashboard_asks_for_a_token_when_the_api_wants_one() {
    let (url, seen) = dashboard_behind_a_token().await;
    let browser = browser().await;
    browser.goto(&format!("{url}/ui")).await.unwrap();
    expect(
        &browser,
        browser.wait_for_element("#token-dialog[open]").await,
    )
    .await;
    browser
        .find(Locator::Css("#token-input"))
        .await
        .unwrap()
        .send_keys("s3cret")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#token-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    expect(
        &browser,
        browser
            .wait_for_text("main .empty", |t| t.contains("No sagas match"))
            .await,
    )
    .await;
    let open = browser
        .find_all(Locator::Css("#token-dialog[open]"))
        .await
        .unwrap();
    assert!(open.is_empty(), "the prompt closes once a token is given");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&None),
        "the first calls go without a token: {seen:?}"
    );
    assert_eq!(
        seen.last().cloned().flatten().as_deref(),
        Some("Bearer s3cret"),
        "{seen:?}"
    );
    // The only console errors are the refused calls themselves.
    let errors = console_errors(&browser).await;
    assert!(
        errors.iter().all(|e| e.message.contains("401")),
        "{errors:#?}"
    );
    browser.close().await;
}

#[tokio::test]
async fn the_dashboard_works_against_a_coordinator_checking_api_tokens() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let digest: String = sha2::Sha256::digest(b"dashboard-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = dir.path().join("auth.toml");
    let file = format!("[[tokens]]\nname = \"ops\"\nsha256 = \"{digest}\"\nscopes = [\"read\"]\n");
    std::fs::write(&auth, file).unwrap();
    let coordinator =
        setup::start_with(&dir.path().join("c"), |o| o.auth_file = Some(auth.clone())).await;
    let browser = browser().await;
    browser
        .goto(&format!("{}/ui", coordinator.url()))
        .await
        .unwrap();
    expect(
        &browser,
        browser.wait_for_element("#token-dialog[open]").await,
    )
    .await;
    browser
        .find(Locator::Css("#token-input"))
        .await
        .unwrap()
        .send_keys("dashboard-token")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#token-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    expect(
        &browser,
        browser
            .wait_for_text("main .empty", |t| t.contains("No sagas match"))
            .await,
    )
    .await;
    browser.close().await;
    coordinator.shutdown().await;
}
