//! What the `sagactl` tests share: a real coordinator with the example participants
//! ([`examples::LocalServices`]) plus `fake`, a small participant whose endpoints succeed,
//! reject or fail on purpose; a way to run the real `sagactl` binary against them; and a
//! deadline-bound poll.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use examples::LocalServices;
use sagas::{ActionEndpoints, ParticipantSpec, WorkflowSpec};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// How long a poll waits before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// `stuck_flow`: `reserve` succeeds, `ship` is rejected, and undoing `reserve` always fails
/// (twice, 1 ms apart): the saga turns `stuck` within milliseconds.
const STUCK_FLOW: &str = r#"
steps:
  - name: reserve
    participant: fake
    action: sticky
    retry: {initial_ms: 1, max_ms: 1, settle_max_attempts: 2}
  - name: ship
    participant: fake
    action: reject
"#;

/// `slow_flow`: its only step fails and waits ten minutes before the next attempt, so the
/// saga stays `running` (waiting) until an operator acts.
const SLOW_FLOW: &str = r#"
steps:
  - name: charge
    participant: fake
    action: flaky
    retry: {initial_ms: 600000, max_ms: 600000}
"#;

/// What one run of `sagactl` did.
pub struct Run {
    /// The exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the run succeeded, showing its output otherwise.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "sagactl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the real `sagactl` binary with `args` and `envs`, with no `SAGACTL_*` variable of the
/// test's own environment, `USER=tester` and no colour.
pub async fn sagactl_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args(args)
        .env_remove("SAGACTL_COORDINATOR")
        .env_remove("SAGACTL_TOKEN")
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the sagactl binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// [`sagactl_env`] without extra variables.
pub async fn sagactl(args: &[&str]) -> Run {
    sagactl_env(args, &[]).await
}

/// Polls `probe` until it gives a value; fails the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A coordinator, the wallet/order/points participants and the `fake` participant, all on
/// free loopback ports, with `place_order`, `stuck_flow` and `slow_flow` stored.
pub struct Harness {
    services: LocalServices,
    fake: JoinHandle<()>,
    _data: TempDir,
}

impl Harness {
    /// Starts everything and waits until it is registered and ready.
    pub async fn start() -> Harness {
        let data = tempfile::tempdir().expect("a temporary directory");
        let services = LocalServices::start(data.path())
            .await
            .expect("the coordinator and the example participants start");
        let (fake_url, fake) = start_fake_participant().await;
        let client = services.client();
        let endpoints = |action: &str, compensate: &str| ActionEndpoints::Saga {
            action: action.into(),
            compensate: compensate.into(),
        };
        let spec = ParticipantSpec {
            base_url: fake_url,
            actions: BTreeMap::from([
                ("ok".to_string(), endpoints("/ok", "/ok")),
                ("reject".to_string(), endpoints("/reject", "/ok")),
                ("sticky".to_string(), endpoints("/ok", "/fail")),
                ("flaky".to_string(), endpoints("/fail", "/ok")),
            ]),
            policy: None,
        };
        client
            .put_participant("fake", &spec)
            .await
            .expect("fake registers");
        for (name, text) in [("stuck_flow", STUCK_FLOW), ("slow_flow", SLOW_FLOW)] {
            let spec = WorkflowSpec::from_yaml_or_json(text, name).expect("workflow parses");
            client
                .put_workflow(name, &spec)
                .await
                .expect("workflow stored");
        }
        Harness {
            services,
            fake,
            _data: data,
        }
    }

    /// The coordinator's base URL.
    pub fn url(&self) -> String {
        self.services.coordinator.url()
    }

    /// The wallet participant's base URL.
    pub fn wallet_url(&self) -> String {
        self.services.wallet.url().to_string()
    }

    /// Runs `sagactl --coordinator <this coordinator> args...`.
    pub async fn run(&self, args: &[&str]) -> Run {
        let url = self.url();
        let mut all = vec!["--coordinator", url.as_str()];
        all.extend_from_slice(args);
        sagactl(&all).await
    }

    /// `GET {coordinator}{path}` as JSON, straight from the API (to compare with `-o json`).
    pub async fn api_get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url()))
            .await
            .expect("the coordinator answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// A saga as `sagactl sagas get ID -o json` shows it.
    pub async fn saga(&self, id: &str) -> Value {
        self.run(&["sagas", "get", id, "-o", "json"])
            .await
            .ok()
            .json()
    }

    /// Waits until saga `id` is in `state`; returns it.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        eventually(&format!("saga {id} to be {state}"), || async {
            let saga = self.saga(id).await;
            (saga["state"] == state).then_some(saga)
        })
        .await
    }

    /// The types of saga `id`'s events.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        let events = self.api_get(&format!("/v1/sagas/{id}/events")).await;
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Funds `account` at the wallet.
    pub async fn deposit(&self, account: &str, amount: i64) {
        reqwest::Client::new()
            .post(format!("{}/accounts/{account}/deposit", self.wallet_url()))
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("the wallet takes the deposit");
    }

    /// Stops everything.
    pub async fn shutdown(self) {
        self.services.shutdown().await;
        self.fake.abort();
    }
}

/// `fake`: `/ok` answers 200, `/reject` 409, `/fail` 500, for every phase.
async fn start_fake_participant() -> (String, JoinHandle<()>) {
    fn error(code: &str, message: &str) -> Json<Value> {
        Json(json!({"error": {"code": code, "message": message}}))
    }
    let app = Router::new()
        .route("/ok", post(|| async { Json(json!({})) }))
        .route(
            "/reject",
            post(|| async { (StatusCode::CONFLICT, error("out_of_stock", "nothing left")) }),
        )
        .route(
            "/fail",
            post(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error("ledger_down", "the ledger is down"),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("fake serves");
    });
    (url, server)
}
