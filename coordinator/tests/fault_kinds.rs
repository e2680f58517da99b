//! Regression tests for the kinds of fault found by replaying public bug reports of other saga
//! coordinators (issue 9), each against a coordinator in process on port 0:
//!
//! 1. configuration that can never work is refused when registered or loaded, and a call that
//!    cannot even be built is not sent (nothing to compensate, no breaker failure);
//! 2. registry writes do not race: a version names one definition forever;
//! 3. every operator request is answered, whatever the saga does meanwhile;
//! 4. time arithmetic saturates: a huge delay waits, it never spins;
//! 5. the saga input reaches participants, callbacks and the API exactly as submitted;
//! 6. a restart never silently undoes an operator's change.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod fake_participant;
#[allow(dead_code)]
#[macro_use]
mod setup;

use std::path::Path;
use std::time::Duration;

use fake_participant::{FakeParticipant, eventually};
use sagas::api::{SagaState, StepStatus};
use sagas::{
    ClientError, CoordinatorClient, ParticipantSpec, Phase, WorkflowBuilder, WorkflowSpec,
};
use serde_json::{Value, json};
use setup::{circuit, fast_retry, participant_spec, register, start, start_with, wait_for};

/// Status and error message of a failed API call.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api {
            status, message, ..
        }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request to the coordinator: status and body text.
async fn raw(method: reqwest::Method, url: String, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Writes registry records straight into a store on `dir`, as an older coordinator (one that
/// validated less) could have left them, then closes it.
async fn stored_before_validation(
    dir: &Path,
    participant: (&str, &ParticipantSpec),
    workflows: &[(&str, WorkflowSpec)],
) {
    let store = setup::open_store(dir).await;
    store
        .put_participant(participant.0, participant.1)
        .await
        .unwrap();
    for (name, spec) in workflows {
        store.put_workflow(name, 1, spec).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Configuration that can never work; calls that cannot be built
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn configuration_that_cannot_work_is_refused_naming_the_field_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;

        // A YAML block scalar (`name: |`) ends a name with a newline; it would go into a header.
        let workflow = |name: &str| {
            serde_json::from_value::<WorkflowSpec>(json!({
                "steps": [{"name": "ok", "participant": "p", "action": "s"},
                          {"name": name, "participant": "p", "action": "s"}]
            }))
            .unwrap()
        };
        for bad in ["reserve\n", "a b", "a:b", "..", ""] {
            let (status, message) = refused(client.put_workflow("bad", &workflow(bad)).await);
            assert_eq!(status, 400, "{bad:?}: {message}");
            assert!(
                message.starts_with("steps[1].name: must be 1 to 128"),
                "{bad:?}: {message}"
            );
        }
        assert_eq!(refused(client.get_saga("x").await).0, 404);

        let mut spec = participant_spec(addr, json!({}));
        for (field, base_url) in [
            ("base_url", "http://exa mple.com"),
            ("base_url", "http://h:1/\n"),
            ("base_url", "ftp://h"),
            ("base_url", "http://h/?x=1"),
        ] {
            spec.base_url = base_url.into();
            let (status, message) = refused(client.put_participant("q", &spec).await);
            assert_eq!(status, 400, "{base_url:?}");
            assert!(message.starts_with(&format!("{field}: ")), "{message}");
        }
        let mut spec = participant_spec(addr, json!({}));
        spec.actions.insert(
            "spaced".into(),
            serde_json::from_value(json!({"action": "/a b", "compensate": "/c"})).unwrap(),
        );
        let (status, message) = refused(client.put_participant("q", &spec).await);
        assert_eq!(status, 400);
        assert!(
            message.starts_with("actions.spaced.action: must start with '/'"),
            "{message}"
        );
        let mut spec = participant_spec(addr, json!({}));
        spec.actions.insert(
            "new\nline".into(),
            serde_json::from_value(json!({"action": "/a", "compensate": "/c"})).unwrap(),
        );
        assert_eq!(refused(client.put_participant("q", &spec).await).0, 400);
        let url = format!("{}/v1/participants/bad%0Aname", coordinator.url());
        let body = serde_json::to_string(&participant_spec(addr, json!({}))).unwrap();
        let (status, text) = raw(reqwest::Method::PUT, url, &body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("name: must be 1 to 128"), "{text}");

        // A callback URL is a request too.
        one_step_workflow_p(&client).await;
        for callback in [
            "http://exa mple.com/cb",
            "not a url",
            "http://h/cb#frag",
            "mailto:x@y",
        ] {
            let body = json!({"workflow": "w", "input": {}, "callback_url": callback}).to_string();
            let (status, text) = raw(
                reqwest::Method::POST,
                format!("{}/v1/sagas", coordinator.url()),
                &body,
            )
            .await;
            assert_eq!(status, 400, "{callback:?}: {text}");
            assert!(text.contains("callback_url: "), "{text}");
        }
        coordinator.shutdown().await;
    }
}

async fn one_step_workflow_p(client: &CoordinatorClient) {
    setup::one_step_workflow(client, "w", "p", "s").await;
}

on_both_stores! {
    async fn a_workflow_file_that_cannot_work_stops_the_start_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("workflows");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(
            files.join("bad.yaml"),
            "steps:\n  - name: |\n      reserve\n    participant: p\n    action: s\n",
        )
        .unwrap();
        let mut config = setup::options(&dir.path().join("data"));
        config.workflows = Some(files);
        let error = coordinator::start(config)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("bad.yaml"), "{error}");
        assert!(error.contains("steps[0].name: must be 1 to 128"), "{error}");
    }
}

on_both_stores! {
    async fn a_call_that_cannot_be_built_is_not_sent_and_costs_the_participant_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, addr) = FakeParticipant::start().await;
        // Two failures would open this participant's circuit.
        let policy = json!({"retry": fast_retry(2, 2), "circuit_breaker": {"failure_threshold": 2, "open_ms": 60_000}});
        let spec = participant_spec(addr, policy);
        let step = |name: &str| {
            serde_json::from_value::<WorkflowSpec>(json!({
                "steps": [{"name": name, "participant": "p", "action": "s"}]
            }))
            .unwrap()
        };
        // Stored by a coordinator that did not check names yet.
        stored_before_validation(
            dir.path(),
            ("p", &spec),
            &[("bad", step("reserve\n")), ("good", step("reserve"))],
        )
        .await;
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());

        for _ in 0..5 {
            let saga = client
                .submit("bad", json!({}), None, Some(10_000))
                .await
                .unwrap()
                .saga;
            assert_eq!(saga.state, SagaState::Aborted, "{saga:?}");
            // Never sent: nothing was owed, nothing was compensated.
            assert_eq!(saga.steps[0].status, StepStatus::Skipped, "{saga:?}");
            let error = saga.steps[0].last_error.as_deref().unwrap_or_default();
            assert!(error.contains("cannot be built, not sent"), "{error}");
        }
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        assert_eq!(circuit(&client, "p").await, "closed");
        // The participant's healthy workflows are untouched.
        let good = client
            .submit("good", json!({}), None, Some(10_000))
            .await
            .unwrap()
            .saga;
        assert_eq!(good.state, SagaState::Committed, "{good:?}");
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Registry writes
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn concurrent_workflow_puts_each_get_their_own_version_which_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        let definition = |i: u64| {
            WorkflowBuilder::new()
                .step("only", "p", "s")
                .step_timeout_ms(1_000 + i)
                .build()
                .unwrap()
        };
        let answers = futures::future::join_all((0..16).map(|i| {
            let client = client.clone();
            async move { (i, client.put_workflow("w", &definition(i)).await) }
        }))
        .await;
        let mut versions = Vec::new();
        for (i, answer) in answers {
            match answer {
                Ok(view) => {
                    assert_eq!(view.spec, definition(i), "the answer names what was put");
                    versions.push((view.version, definition(i)));
                }
                Err(e) => assert_eq!(refused::<()>(Err(e)).0, 409),
            }
        }
        let mut numbers: Vec<u32> = versions.iter().map(|(v, _)| *v).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            versions.len(),
            "a version was handed out twice: {versions:?}"
        );
        let (newest, newest_spec) = versions.iter().max_by_key(|(v, _)| *v).cloned().unwrap();
        // Putting the newest definition again keeps its version.
        let again = client.put_workflow("w", &newest_spec).await.unwrap();
        assert_eq!(again.version, newest);

        coordinator.shutdown().await;
        // The store names every version as it was answered.
        {
            let store = setup::open_store(dir.path()).await;
            for (version, spec) in &versions {
                assert_eq!(
                    store
                        .workflow_version("w", *version)
                        .await
                        .unwrap()
                        .as_ref(),
                    Some(spec)
                );
            }
        }
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let view = reqwest::get(format!("{}/v1/workflows/w", coordinator.url()))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(view["version"], newest);
        assert_eq!(
            view["steps"][0]["timeout_ms"],
            json!(newest_spec.steps[0].timeout_ms)
        );
        drop(client);
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn concurrent_participant_puts_leave_memory_and_store_agreeing_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        futures::future::join_all((0..16).map(|i| {
            let client = client.clone();
            async move {
                let spec = participant_spec(addr, json!({"timeout_ms": 1_000 + i}));
                client.put_participant("p", &spec).await.unwrap()
            }
        }))
        .await;
        let before: Value = reqwest::get(format!("{}/v1/participants/p", coordinator.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        coordinator.shutdown().await;
        let coordinator = start(dir.path()).await;
        let after: Value = reqwest::get(format!("{}/v1/participants/p", coordinator.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(before["policy"], after["policy"]);
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Operator requests
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn every_abort_is_answered_promptly_while_sagas_finish() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        setup::one_step_workflow(&client, "w", "p", "s").await;
        let outcomes = futures::future::join_all((0..150u64).map(|i| {
            let client = client.clone();
            async move {
                let saga = client
                    .submit("w", json!({"i": i}), None, None)
                    .await
                    .unwrap()
                    .saga;
                // Spread the aborts over the saga's short life.
                tokio::time::sleep(Duration::from_micros(i % 7 * 300)).await;
                let answer = tokio::time::timeout(Duration::from_secs(5), client.abort(&saga.id)).await;
                match answer {
                    Err(_) => Err(format!("abort of saga {} unanswered after 5 s", saga.id)),
                    Ok(Ok(view)) => Ok((200, view.state.to_string())),
                    Ok(Err(ClientError::Api {
                        status: 409,
                        message,
                        ..
                    })) => Ok((409, message)),
                    Ok(Err(other)) => Err(format!("abort of saga {}: {other}", saga.id)),
                }
            }
        }))
        .await;
        let mut answered = (0, 0);
        for outcome in outcomes {
            let (status, message) = outcome.unwrap();
            if status == 200 {
                answered.0 += 1;
            } else {
                answered.1 += 1;
                assert!(
                    !message.contains("not allowed while"),
                    "plain words: {message}"
                );
            }
        }
        assert_eq!(answered.0 + answered.1, 150);
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_refused_operator_request_says_why_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({"retry": fast_retry(1, 1)})).await;
        setup::one_step_workflow(&client, "w", "p", "s").await;
        fake.answer(Phase::Action, 409);
        fake.answer(Phase::Compensate, 500);
        let saga = client
            .submit("w", json!({}), None, None)
            .await
            .unwrap()
            .saga;
        let stuck = wait_for(&client, &saga.id, |s| s.state == SagaState::Stuck).await;
        let (status, message) = refused(client.abort(&stuck.id).await);
        assert_eq!(status, 409);
        assert!(
            message.starts_with(&format!("saga {} is stuck:", saga.id)),
            "{message}"
        );
        assert!(
            message.contains("retry it, or resolve its steps"),
            "{message}"
        );
        fake.answer(Phase::Compensate, 200);
        client.retry(&saga.id).await.unwrap();
        let done = wait_for(&client, &saga.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Aborted);
        let (status, message) = refused(client.retry(&saga.id).await);
        assert_eq!(status, 409);
        assert!(
            message.contains("has aborted; a finished saga cannot be changed"),
            "{message}"
        );
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Time arithmetic
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn durations_outside_their_documented_range_are_refused_at_registration() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        let huge = u64::MAX;
        for (policy, field) in [
            (
                json!({"retry": {"initial_ms": huge, "max_ms": huge}}),
                "policy.retry.initial_ms",
            ),
            (json!({"timeout_ms": huge}), "policy.timeout_ms"),
            (
                json!({"circuit_breaker": {"open_ms": huge}}),
                "policy.circuit_breaker.open_ms",
            ),
            (
                json!({"retry": {"max_attempts": 0}}),
                "policy.retry.max_attempts",
            ),
        ] {
            let (status, message) = refused(
                client
                    .put_participant("p", &participant_spec(addr, policy))
                    .await,
            );
            assert_eq!(status, 400);
            assert!(
                message.starts_with(&format!("{field}: must be between")),
                "{message}"
            );
        }
        register(&client, "p", addr, json!({})).await;
        let workflow: WorkflowSpec = serde_json::from_value(json!({
            "steps": [{"name": "a", "participant": "p", "action": "s",
                       "retry": {"initial_ms": huge, "max_ms": huge}}],
            "timeout_ms": huge
        }))
        .unwrap();
        let (status, message) = refused(client.put_workflow("w", &workflow).await);
        assert_eq!(status, 400);
        assert!(
            message.starts_with("timeout_ms: must be between 1 and"),
            "{message}"
        );
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_huge_stored_retry_delay_waits_instead_of_spinning() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, addr) = FakeParticipant::start().await;
        fake.answer(Phase::Action, 500);
        let huge = u64::MAX;
        let mut spec = participant_spec(addr, json!({}));
        let policy = spec.policy.get_or_insert_with(Default::default);
        policy.retry.initial_ms = huge;
        policy.retry.max_ms = huge;
        let step: WorkflowSpec = serde_json::from_value(
            json!({"steps": [{"name": "a", "participant": "p", "action": "s"}]}),
        )
        .unwrap();
        stored_before_validation(dir.path(), ("p", &spec), &[("w", step)]).await;
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let saga = client
            .submit("w", json!({}), None, None)
            .await
            .unwrap()
            .saga;
        eventually("the first attempt", || async {
            fake.count(Phase::Action) >= 1
        })
        .await;
        // The bug made four attempts within 0.1 s and then aborted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            fake.count(Phase::Action),
            1,
            "a huge delay must mean waiting"
        );
        let view = client.get_saga(&saga.id).await.unwrap();
        assert_eq!(view.state, SagaState::Running, "{view:?}");
        assert_eq!(view.steps[0].status, StepStatus::Retrying);
        // An operator can still abort it; the compensation is due at once.
        fake.answer(Phase::Compensate, 200);
        client.abort(&saga.id).await.unwrap();
        let done = wait_for(&client, &saga.id, |s| s.state.is_terminal()).await;
        assert_eq!(done.state, SagaState::Aborted);
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The input, exactly as submitted
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn the_input_reaches_participants_callbacks_and_the_api_exactly_as_submitted() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        setup::one_step_workflow(&client, "w", "p", "t").await;
        let input = r#"{"big": 123456789012345678901234567890, "z": 1, "amount": 10.50, "a": [1e3]}"#;
        let body = format!(
            r#"{{"workflow": "w", "input": {input}, "callback_url": "http://{addr}/callback"}}"#
        );
        let submit = |body: String, key: &'static str| {
            let url = format!("{}/v1/sagas?wait_ms=10000", coordinator.url());
            async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let (status, text) = submit(body.clone(), "k").await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&format!(r#""input":{input}"#)), "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(fake.inputs(), vec![input.to_string(); 2], "try and confirm");
        eventually("the callback", || async {
            !fake.callback_texts().is_empty()
        })
        .await;
        assert!(
            fake.callback_texts()[0].contains(input),
            "{:?}",
            fake.callback_texts()
        );

        // The same request with its keys in another order is the same request...
        let reordered = format!(
            r#"{{"workflow": "w", "callback_url": "http://{addr}/callback", "input": {{"a": [1e3], "amount": 10.50, "z": 1, "big": 123456789012345678901234567890}}}}"#
        );
        let (status, text) = submit(reordered, "k").await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&id), "{text}");
        // ...but a number that differs only beyond a float's precision is another one.
        let (status, text) = submit(body.replace("567890,", "567891,"), "k").await;
        assert_eq!(status, 422, "{text}");

        // Through the log: a restarted coordinator shows the same text.
        coordinator.shutdown().await;
        let coordinator = start(dir.path()).await;
        let text = reqwest::get(format!("{}/v1/sagas/{id}", coordinator.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(&format!(r#""input":{input}"#)), "{text}");
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. A restart never undoes an operator's change
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn a_workflow_changed_through_the_api_stays_until_its_file_is_edited() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("workflows");
        std::fs::create_dir_all(&files).unwrap();
        let file = files.join("w.yaml");
        std::fs::write(&file, "steps:\n  - {name: a, participant: p, action: s}\n").unwrap();
        let with_files = |config: &mut coordinator::CoordinatorOptions| {
            config.workflows = Some(files.clone());
        };
        let data = dir.path().join("data");
        let coordinator = start_with(&data, with_files).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        let changed = WorkflowBuilder::new()
            .step("a", "p", "s")
            .step_timeout_ms(777)
            .build()
            .unwrap();
        assert_eq!(client.put_workflow("w", &changed).await.unwrap().version, 2);
        coordinator.shutdown().await;

        let coordinator = start_with(&data, with_files).await;
        let workflow = |url: String| async move {
            reqwest::get(format!("{url}/v1/workflows/w"))
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        let view = workflow(coordinator.url()).await;
        assert_eq!(view["version"], 2, "{view}");
        assert_eq!(view["steps"][0]["timeout_ms"], 777, "{view}");
        coordinator.shutdown().await;

        // Editing the file is a deliberate change: it loads.
        std::fs::write(&file, "steps:\n  - {name: b, participant: p, action: s}\n").unwrap();
        let coordinator = start_with(&data, with_files).await;
        let view = workflow(coordinator.url()).await;
        assert_eq!(view["version"], 3, "{view}");
        assert_eq!(view["steps"][0]["name"], "b", "{view}");
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn a_policy_set_by_an_operator_survives_the_participant_registering_again() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        // The participant registers its endpoints (no policy), an operator sets one...
        let mut endpoints = participant_spec(addr, json!({}));
        endpoints.policy = None;
        client.put_participant("p", &endpoints).await.unwrap();
        let operator = participant_spec(addr, json!({"timeout_ms": 1234}));
        client.put_participant("p", &operator).await.unwrap();
        // ...and the participant restarts and registers its endpoints again.
        let view = client.put_participant("p", &endpoints).await.unwrap();
        assert_eq!(view.spec.policy.as_ref().map(|p| p.timeout_ms), Some(1234));
        coordinator.shutdown().await;
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let view = client.put_participant("p", &endpoints).await.unwrap();
        assert_eq!(view.spec.policy.as_ref().map(|p| p.timeout_ms), Some(1234));
        coordinator.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// A newcomer's first hour
// ---------------------------------------------------------------------------------------------

on_both_stores! {
    async fn a_body_over_the_limit_is_413_and_malformed_json_is_400() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let url = format!("{}/v1/sagas", coordinator.url());
        let big = format!(r#"{{"workflow": "w", "input": "{}"}}"#, "x".repeat(3 << 20));
        let (status, text) = raw(reqwest::Method::POST, url.clone(), &big).await;
        assert_eq!(status, 413, "{}", &text[..text.len().min(300)]);
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
        let (status, text) = raw(reqwest::Method::POST, url, "{not json").await;
        assert_eq!(status, 400, "{text}");
        coordinator.shutdown().await;
    }
}

on_both_stores! {
    async fn metrics_follow_prometheus_conventions_and_exist_before_anything_happens() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = start(dir.path()).await;
        let client = CoordinatorClient::new(coordinator.url());
        let (_fake, addr) = FakeParticipant::start().await;
        register(&client, "p", addr, json!({})).await;
        setup::one_step_workflow(&client, "declared", "p", "s").await;
        let text = setup::metrics_text(&client).await;
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(!typed.is_empty(), "{text}");
        for name in &typed {
            assert!(
                name.starts_with("coordinator_"),
                "{name} has another prefix"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP line"
            );
        }
        // Declared at zero before the first saga of the workflow.
        for series in [
            r#"coordinator_sagas_stuck_total{workflow="declared"}"#,
            r#"coordinator_sagas_submitted_total{workflow="declared"}"#,
            r#"coordinator_sagas_finished_total{workflow="declared",state="aborted"}"#,
            r#"coordinator_branch_calls_total{participant="p",phase="compensate",outcome="transient"}"#,
            "coordinator_log_flushes_total",
            "coordinator_sagas_active",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{series} "))),
                "{series} not declared:\n{text}"
            );
        }
        assert_eq!(
            setup::metric(
                &client,
                r#"coordinator_sagas_stuck_total{workflow="declared"}"#
            )
            .await,
            0.0
        );
        coordinator.shutdown().await;
    }
}
