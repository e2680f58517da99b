//! The real `sagactl` binary against a real coordinator started in this process (with the
//! example participants and a participant that fails on purpose): tables for people, JSON
//! that matches the API, the events timeline, operator actions with who and why, workflow
//! files, and the exit statuses 0, 1 and 2.

mod harness;

use harness::{Harness, eventually, sagactl, sagactl_env};
use serde_json::Value;

/// The line of `text` that contains every one of `parts`; fails the test when none does.
#[track_caller]
fn line_with<'a>(text: &'a str, parts: &[&str]) -> &'a str {
    text.lines()
        .find(|line| parts.iter().all(|p| line.contains(p)))
        .unwrap_or_else(|| panic!("no line has all of {parts:?} in:\n{text}"))
}

/// Submits a `place_order` for alice and waits until it committed; returns its id.
async fn place_order(harness: &Harness, order_id: &str) -> String {
    let input = format!(
        r#"{{"order_id": "{order_id}", "account": "alice", "amount": 2500, "points": 25}}"#
    );
    let run = harness
        .run(&[
            "submit",
            "place_order",
            "--input",
            &input,
            "--idempotency-key",
            order_id,
            "--wait-ms",
            "20000",
            "-o",
            "json",
        ])
        .await
        .ok();
    let id = run.json()["id"].as_str().expect("an id").to_string();
    harness.wait_state(&id, "committed").await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_list_get_and_events_of_committed_sagas() {
    let harness = Harness::start().await;
    harness.deposit("alice", 10_000).await;
    let first = place_order(&harness, "order-1001").await;

    // The submitted input travels as written; the business key comes from /order_id.
    let saga = harness.saga(&first).await;
    assert_eq!(saga["business_key"], "order-1001");
    assert_eq!(saga["input"]["amount"], 2500);

    // A table for people...
    let list = harness.run(&["sagas", "list"]).await.ok().stdout;
    let header = list.lines().next().unwrap();
    for column in [
        "ID",
        "WORKFLOW",
        "STATE",
        "BUSINESS KEY",
        "CREATED",
        "UPDATED",
    ] {
        assert!(header.contains(column), "{list}");
    }
    line_with(
        &list,
        &[&first, "place_order v1", "committed", "order-1001"],
    );
    // ... and for scripts, exactly what the API answers.
    let json = harness
        .run(&["sagas", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, harness.api_get("/v1/sagas").await);
    let get = harness
        .run(&["sagas", "get", &first, "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(get, harness.api_get(&format!("/v1/sagas/{first}")).await);

    // get: the saga's head, then its steps.
    let shown = harness.run(&["sagas", "get", &first]).await.ok().stdout;
    line_with(&shown, &["id:", &first]);
    line_with(&shown, &["state:", "committed"]);
    line_with(&shown, &["business key:", "order-1001"]);
    line_with(&shown, &["STEP", "STATUS", "ATTEMPTS", "PHASE", "RESOLVED"]);
    line_with(
        &shown,
        &["create_order", "order", "saga", "succeeded", "action"],
    );
    line_with(
        &shown,
        &["freeze_funds", "wallet", "tcc", "confirmed", "confirm"],
    );
    line_with(
        &shown,
        &["award_points", "points", "saga", "succeeded", "action"],
    );

    // events: a line per event, each call's end with its outcome, status and latency.
    let events = harness.run(&["sagas", "events", &first]).await.ok().stdout;
    assert!(events.starts_with(&format!("saga {first}: ")), "{events}");
    line_with(&events, &["+0ms", "created"]);
    for (step, phase) in [
        ("create_order", "action"),
        ("freeze_funds", "try"),
        ("freeze_funds", "confirm"),
        ("award_points", "action"),
    ] {
        line_with(&events, &["→", step, phase, "#1", "started"]);
        let ended = line_with(&events, &["←", step, phase, "#1", "ok 200"]);
        assert!(ended.contains("ms"), "no latency in {ended:?}");
    }
    line_with(&events, &["decided", "commit"]);
    line_with(&events, &["finished", "committed"]);
    let api_events = harness.api_get(&format!("/v1/sagas/{first}/events")).await;
    let event_count = api_events["events"].as_array().unwrap().len();
    assert_eq!(events.lines().count(), event_count + 2, "{events}");
    let json = harness
        .run(&["sagas", "events", &first, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, api_events);

    // Filters, pages and --all.
    let second = place_order(&harness, "order-1002").await;
    let by_key = harness
        .run(&[
            "sagas",
            "list",
            "--business-key",
            "order-1002",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let ids: Vec<&Value> = by_key["sagas"].as_array().unwrap().iter().collect();
    assert_eq!(ids.len(), 1, "{by_key}");
    assert_eq!(ids[0]["id"], second.as_str());
    let page = harness
        .run(&["sagas", "list", "--limit", "1"])
        .await
        .ok()
        .stdout;
    line_with(&page, &["more: --cursor"]);
    let all = harness
        .run(&[
            "sagas",
            "list",
            "--limit",
            "1",
            "--all",
            "--state",
            "committed",
            "--workflow",
            "place_order",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let ids: Vec<&str> = all["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert_eq!(all["next_cursor"], Value::Null);
    let none = harness
        .run(&["sagas", "list", "--state", "stuck"])
        .await
        .ok();
    assert_eq!(none.stdout, "no sagas match\n");

    // An operator action the saga's state does not allow is an error answer: exit 1.
    let refused = harness
        .run(&["sagas", "abort", &first, "--reason", "too late"])
        .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.starts_with("error: "), "{}", refused.stderr);
    assert!(refused.stdout.is_empty());

    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_show_their_circuit_load_and_latency() {
    let harness = Harness::start().await;
    let list = harness.run(&["participants", "list"]).await.ok().stdout;
    line_with(
        &list,
        &[
            "NAME",
            "BASE URL",
            "CIRCUIT",
            "IN FLIGHT",
            "QUEUED",
            "ERROR RATE",
            "P50",
            "P99",
        ],
    );
    line_with(&list, &["wallet", &harness.wallet_url(), "closed"]);
    for name in ["order", "points", "fake"] {
        line_with(&list, &[name, "closed"]);
    }
    let json = harness
        .run(&["participants", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, harness.api_get("/v1/participants").await);

    let wallet = harness
        .run(&["participants", "get", "wallet"])
        .await
        .ok()
        .stdout;
    line_with(&wallet, &["circuit:", "closed"]);
    line_with(&wallet, &["base url:", &harness.wallet_url()]);
    line_with(&wallet, &["freeze", "tcc", "try "]);

    let unknown = harness.run(&["participants", "get", "nobody"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.starts_with("error: not_found: "),
        "{}",
        unknown.stderr
    );
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_apply_from_files_and_directories() {
    let harness = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("refund.yaml");
    std::fs::write(
        &yaml,
        "# a refund: one step\nsteps:\n  - name: pay_back\n    participant: fake\n    action: ok\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();

    // The name comes from the file name.
    let applied = harness
        .run(&["workflows", "apply", "-f", yaml])
        .await
        .ok()
        .stdout;
    line_with(&applied, &["refund", "1", "pay_back", yaml]);
    let shown = harness
        .run(&["workflows", "get", "refund"])
        .await
        .ok()
        .stdout;
    line_with(&shown, &["name:", "refund"]);
    line_with(&shown, &["version:", "1"]);
    line_with(&shown, &["pay_back", "fake", "ok"]);
    let json = harness
        .run(&["workflows", "get", "refund", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, harness.api_get("/v1/workflows/refund").await);

    // Or from --name; an identical definition keeps its version.
    let again = harness
        .run(&[
            "workflows",
            "apply",
            "-f",
            yaml,
            "--name",
            "refund_v2",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(again["name"], "refund_v2");
    assert_eq!(again["version"], 1);

    // A directory applies each workflow file in it; a changed file gets a new version.
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    std::fs::write(
        set.join("refund.json"),
        r#"{"steps": [{"name": "pay_back", "participant": "fake", "action": "ok"},
                      {"name": "notify", "participant": "fake", "action": "ok"}]}"#,
    )
    .unwrap();
    std::fs::write(
        set.join("audit.yml"),
        "steps: [{name: log, participant: fake, action: ok}]\n",
    )
    .unwrap();
    std::fs::write(set.join("README.txt"), "not a workflow").unwrap();
    let both = harness
        .run(&[
            "workflows",
            "apply",
            "-f",
            set.to_str().unwrap(),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let applied: Vec<(&str, u64)> = both["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(applied, [("audit", 1), ("refund", 2)]);
    let list = harness.run(&["workflows", "list"]).await.ok().stdout;
    line_with(&list, &["NAME", "VERSION", "STEPS"]);
    line_with(&list, &["refund", "2", "pay_back, notify"]);
    line_with(
        &list,
        &[
            "place_order",
            "1",
            "create_order, freeze_funds, award_points",
        ],
    );

    // A file that does not parse is bad usage: nothing is applied, exit 2.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "steps: [{name: x, participant: fake, action: ok, colour: red}]\n",
    )
    .unwrap();
    let run = harness
        .run(&[
            "workflows",
            "apply",
            "-f",
            yaml,
            "-f",
            bad.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("bad.yaml"), "{}", run.stderr);
    // A definition the coordinator refuses (an unknown participant) is an error answer: 1.
    let unknown = dir.path().join("lost.yaml");
    std::fs::write(
        &unknown,
        "steps: [{name: x, participant: nobody, action: ok}]\n",
    )
    .unwrap();
    let run = harness
        .run(&["workflows", "apply", "-f", unknown.to_str().unwrap()])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains("lost.yaml"),
        "{}",
        run.stderr
    );
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_retry_now_record_who_asked_and_why() {
    let harness = Harness::start().await;
    let submitted = harness
        .run(&["submit", "slow_flow", "--input", "{}", "-o", "json"])
        .await
        .ok()
        .json();
    let id = submitted["id"].as_str().unwrap().to_string();
    // Its only call failed and now waits ten minutes for the next attempt.
    eventually("the call to wait on its backoff", || async {
        let saga = harness.saga(&id).await;
        (saga["steps"][0]["status"] == "retrying").then_some(())
    })
    .await;

    // --by defaults to $USER (the harness sets USER=tester).
    harness
        .run(&[
            "sagas",
            "retry-now",
            &id,
            "--reason",
            "participant redeployed",
        ])
        .await
        .ok();
    eventually("the second attempt to fail and wait", || async {
        let saga = harness.saga(&id).await;
        let step = &saga["steps"][0];
        (step["attempts"] == 2 && step["status"] == "retrying").then_some(())
    })
    .await;
    let aborted = harness
        .run(&[
            "sagas",
            "abort",
            &id,
            "--reason",
            "customer called to cancel",
            "--by",
            "alice",
        ])
        .await
        .ok()
        .stdout;
    line_with(&aborted, &["id:", &id]);
    harness.wait_state(&id, "aborted").await;

    let events = harness.run(&["sagas", "events", &id]).await.ok().stdout;
    line_with(
        &events,
        &[
            "*",
            "operator",
            "retry_now",
            "by tester",
            r#"reason: "participant redeployed""#,
        ],
    );
    line_with(
        &events,
        &[
            "*",
            "operator",
            "abort",
            "by alice",
            r#"reason: "customer called to cancel""#,
        ],
    );
    line_with(
        &events,
        &[
            "←",
            "charge",
            "action",
            "#1",
            "transient 500",
            "ledger is down",
        ],
    );
    line_with(&events, &["←", "charge", "action", "#2", "transient 500"]);
    line_with(&events, &["←", "charge", "compensate", "ok 200"]);
    line_with(
        &events,
        &["·", "decided", "abort", "customer called to cancel"],
    );
    line_with(&events, &["finished", "aborted"]);
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_saga_is_retried_in_bulk_then_resolved_by_hand() {
    let harness = Harness::start().await;
    let submitted = harness
        .run(&[
            "submit",
            "stuck_flow",
            "--input",
            r#"{"order": 7}"#,
            "--business-key",
            "order-7",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let id = submitted["id"].as_str().unwrap().to_string();
    harness.wait_state(&id, "stuck").await;
    let stuck = harness
        .run(&["sagas", "list", "--state", "stuck"])
        .await
        .ok()
        .stdout;
    line_with(&stuck, &[&id, "stuck_flow v1", "stuck", "order-7"]);
    let shown = harness.run(&["sagas", "get", &id]).await.ok().stdout;
    line_with(
        &shown,
        &["reserve", "fake", "stuck", "compensate", "ledger is down"],
    );
    line_with(&shown, &["ship", "rejected, undo compensated"]);

    // A bulk retry resumes it; undoing `reserve` still fails, so it turns stuck again.
    let bulk = harness
        .run(&[
            "sagas",
            "bulk-retry",
            "--workflow",
            "stuck_flow",
            "--reason",
            "ledger is back",
        ])
        .await
        .ok()
        .stdout;
    assert_eq!(bulk, "resumed 1 stuck saga\n");
    eventually("the saga to turn stuck again", || async {
        let stuck = harness
            .event_types(&id)
            .await
            .iter()
            .filter(|t| *t == "stuck")
            .count();
        (stuck == 2 && harness.saga(&id).await["state"] == "stuck").then_some(())
    })
    .await;

    // --reason is required.
    let run = harness
        .run(&["sagas", "resolve", &id, "reserve", "--as", "compensated"])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    let resolved = harness
        .run(&[
            "sagas",
            "resolve",
            &id,
            "reserve",
            "--as",
            "compensated",
            "--reason",
            "stock released by hand (ticket 42)",
            "--by",
            "carol",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(resolved["id"], id.as_str());
    let saga = harness.wait_state(&id, "aborted").await;
    assert_eq!(saga["steps"][0]["resolved"], "compensated");

    let events = harness.run(&["sagas", "events", &id]).await.ok().stdout;
    line_with(&events, &["!", "stuck reserve"]);
    line_with(
        &events,
        &[
            "*",
            "operator",
            "retry",
            "by tester",
            r#"reason: "ledger is back""#,
        ],
    );
    line_with(
        &events,
        &[
            "*",
            "operator",
            "resolve",
            "by carol",
            r#"reason: "stock released by hand (ticket 42)""#,
        ],
    );
    line_with(&events, &["·", "step_resolved reserve", "as compensated"]);
    line_with(&events, &["←", "ship", "action", "rejected 409"]);
    line_with(&events, &["finished", "aborted"]);

    // Resolving it again: the step is no longer stuck, an error answer.
    let again = harness
        .run(&[
            "sagas",
            "resolve",
            &id,
            "reserve",
            "--as",
            "compensated",
            "--reason",
            "twice",
        ])
        .await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.starts_with("error: "), "{}", again.stderr);
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_saga_is_an_error_answer() {
    let harness = Harness::start().await;
    for command in ["get", "events"] {
        let run = harness.run(&["sagas", command, "no-such-saga"]).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            run.stderr.starts_with("error: not_found: ") && run.stderr.contains("no-such-saga"),
            "{}",
            run.stderr
        );
    }
    let run = harness
        .run(&["submit", "no_such_workflow", "--input", "{}"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: not_found: "),
        "{}",
        run.stderr
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn bad_usage_exits_2() {
    // Nothing needs to listen: every one of these fails before a request is sent.
    let nowhere = ["--coordinator", "http://127.0.0.1:9"];
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().unwrap();
    let not_json = dir.path().join("input.txt");
    std::fs::write(&not_json, "amount=1").unwrap();
    let not_json = format!("@{}", not_json.to_str().unwrap());
    let cases: [(&[&str], &str); 9] = [
        (&["sagas", "list", "--bogus"], "--bogus"),
        (&["sagas", "list", "--state", "done"], "done"),
        (&["sagas", "frobnicate"], "frobnicate"),
        (&["submit", "place_order"], "--input"),
        (&["sagas", "list", "--output", "yaml"], "yaml"),
        (&["workflows", "apply", "-f", missing], missing),
        (&["submit", "place_order", "--input", "{oops"], "not JSON"),
        (&["submit", "place_order", "--input", &not_json], "not JSON"),
        (
            &["submit", "place_order", "--input", "@/no/such/input.json"],
            "/no/such/input.json",
        ),
    ];
    for (args, mentions) in cases {
        let mut all = nowhere.to_vec();
        all.extend_from_slice(args);
        let run = sagactl(&all).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(mentions), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let run = sagactl(&["--coordinator", "localhost:7700", "sagas", "list"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("http://"), "{}", run.stderr);
}

#[tokio::test]
async fn an_unreachable_coordinator_is_named() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = sagactl_env(&["sagas", "list"], &[("SAGACTL_COORDINATOR", &url)]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach the coordinator at {url}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("refused"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_travels_as_a_bearer_header() {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::get;

    // A stand-in coordinator that remembers the Authorization header of each request.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/v1/participants",
        get(move |headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            record.lock().unwrap().push(auth);
            axum::Json(serde_json::json!({"participants": []}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let list = ["participants", "list"];
    sagactl_env(
        &list,
        &[("SAGACTL_COORDINATOR", &url), ("SAGACTL_TOKEN", "s3cret")],
    )
    .await
    .ok();
    let run = sagactl_env(
        &["participants", "list", "--token", "fl4g"],
        &[("SAGACTL_COORDINATOR", &url)],
    )
    .await
    .ok();
    assert_eq!(run.stdout, "no participants registered\n");
    sagactl_env(&list, &[("SAGACTL_COORDINATOR", &url)])
        .await
        .ok();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Some("Bearer s3cret".to_string()),
            Some("Bearer fl4g".to_string()),
            None
        ]
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_with_api_tokens_answers_only_with_the_token() {
    const TOKEN: &str = "sagactl-test-token";
    // printf %s sagactl-test-token | sha256sum
    const HASH: &str = "b5bb0ad4d883449e350c2323ea76d6972ef4c6d8e9d15384455ce2add52884f6";
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    let file = format!("[[tokens]]\nname = \"cli\"\nsha256 = \"{HASH}\"\nscopes = [\"read\"]\n");
    std::fs::write(&auth, file).unwrap();
    let mut options = coordinator::CoordinatorOptions::ephemeral(dir.path().join("c"));
    options.auth_file = Some(auth);
    let running = coordinator::start(options).await.unwrap();
    let url = running.url();

    let refused = sagactl_env(&["sagas", "list"], &[("SAGACTL_COORDINATOR", &url)]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("unauthorized") && refused.stderr.contains("SAGACTL_TOKEN"),
        "{}",
        refused.stderr
    );
    let listed = sagactl_env(
        &["sagas", "list", "--output", "json"],
        &[("SAGACTL_COORDINATOR", &url), ("SAGACTL_TOKEN", TOKEN)],
    )
    .await
    .ok();
    assert!(listed.json()["sagas"].is_array(), "{}", listed.stdout);
    running.shutdown().await;
}
