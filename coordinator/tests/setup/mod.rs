//! Starting coordinators on a data directory, registering fake participants, and polling
//! sagas and metrics: what the integration tests share.
//!
//! Every behaviour test runs twice, once with each store: write it with [`on_both_stores!`],
//! and [`start_with`] starts its coordinators on the embedded sled store in the data directory
//! or on a PostgreSQL database of its own (one per data directory, so a restart finds its data).

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use coordinator::testing::{PgOptions, PgStore, SledStore, Store};
use coordinator::{CoordinatorOptions, RunningCoordinator};
use sagas::api::SagaView;
use sagas::{CoordinatorClient, ParticipantSpec, WorkflowBuilder};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Writes each `async fn name() { ... }` as a module `name` with two tests, `sled` and
/// `postgres`, running the same body on each store.
#[macro_export]
macro_rules! on_both_stores {
    ($($(#[$doc:meta])* async fn $name:ident() $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario() $body

            #[tokio::test]
            async fn sled() {
                $crate::setup::run_on($crate::setup::Backend::Sled, scenario()).await
            }

            #[tokio::test]
            async fn postgres() {
                $crate::setup::run_on($crate::setup::Backend::Postgres, scenario()).await
            }
        }
    )*};
}

/// The store a test's coordinators run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store, in the data directory.
    Sled,
    /// A PostgreSQL database of the test's own.
    Postgres,
}

thread_local! {
    /// The store of the test running on this thread (`#[tokio::test]` runs its body here).
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sled) };
}

/// Runs `scenario` with its coordinators on `backend`.
pub async fn run_on<F: Future>(backend: Backend, scenario: F) -> F::Output {
    BACKEND.set(backend);
    scenario.await
}

/// The store of the running test.
pub fn backend() -> Backend {
    BACKEND.get()
}

/// The PostgreSQL database that stands for data directory `dir`, created on first use.
fn database_for(dir: &Path) -> String {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let mut databases = DATABASES.get_or_init(Default::default).lock().unwrap();
    databases
        .entry(dir.to_path_buf())
        .or_insert_with(|| {
            let name = format!("t_{}", uuid::Uuid::now_v7().simple());
            throwaway_postgres::PostgresServer::shared()
                .create_database(&name)
                .unwrap()
        })
        .clone()
}

/// A lease short enough that a test which kills a coordinator does not wait long.
const TEST_LEASE: Duration = Duration::from_millis(1_000);

/// Options for a coordinator of the running test on data directory `dir`.
pub fn options(dir: &Path) -> CoordinatorOptions {
    let mut options = CoordinatorOptions::ephemeral(dir);
    options.shutdown_grace = Duration::from_secs(2);
    if backend() == Backend::Postgres {
        options.database_url = Some(database_for(dir));
        options.lease = TEST_LEASE;
    }
    options
}

/// The store a coordinator of the running test on `dir` uses, opened directly (once that
/// coordinator let go of it, for sled).
pub async fn open_store(dir: &Path) -> Arc<dyn Store> {
    if backend() == Backend::Postgres {
        let options = PgOptions {
            lease: TEST_LEASE,
            ..PgOptions::new(database_for(dir))
        };
        return Arc::new(PgStore::connect(&options).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match SledStore::open(dir) {
            Ok(store) => return Arc::new(store),
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a coordinator on `dir` (changed by `configure` first) and waits until it is ready,
/// retrying while a previous one on the same directory still holds its database lock.
pub async fn start_with(
    dir: &Path,
    configure: impl Fn(&mut CoordinatorOptions),
) -> RunningCoordinator {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut config = options(dir);
        configure(&mut config);
        match coordinator::start(config).await {
            Ok(running) => {
                let client = CoordinatorClient::new(running.url());
                while !client.is_ready().await {
                    assert!(Instant::now() < deadline, "coordinator never became ready");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return running;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot restart the coordinator: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// [`start_with`] the defaults.
pub async fn start(dir: &Path) -> RunningCoordinator {
    start_with(dir, |_| {}).await
}

/// The spec of a participant at `addr` with a TCC action `t` and a SAGA action `s`, with
/// `policy` merged over the defaults.
pub fn participant_spec(addr: SocketAddr, policy: Value) -> ParticipantSpec {
    serde_json::from_value(json!({
        "base_url": format!("http://{addr}"),
        "actions": {
            "t": {"try": "/try", "confirm": "/confirm", "cancel": "/cancel"},
            "s": {"action": "/action", "compensate": "/compensate"}
        },
        "policy": policy
    }))
    .unwrap()
}

/// Registers [`participant_spec`] as `name`.
pub async fn register(client: &CoordinatorClient, name: &str, addr: SocketAddr, policy: Value) {
    client
        .put_participant(name, &participant_spec(addr, policy))
        .await
        .unwrap();
}

/// Puts workflow `name`: one step `only` calling `participant`'s `action`.
pub async fn one_step_workflow(
    client: &CoordinatorClient,
    name: &str,
    participant: &str,
    action: &str,
) {
    let spec = WorkflowBuilder::new()
        .step("only", participant, action)
        .build()
        .unwrap();
    client.put_workflow(name, &spec).await.unwrap();
}

/// Polls saga `id` until `done` holds, failing after 30 s with the last state seen.
pub async fn wait_for(
    client: &CoordinatorClient,
    id: &str,
    done: impl Fn(&SagaView) -> bool,
) -> SagaView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saga = client.get_saga(id).await.unwrap();
        if done(&saga) {
            return saga;
        }
        assert!(
            Instant::now() < deadline,
            "saga {id} stayed {:?}: {saga:?}",
            saga.state
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The live circuit state of participant `name`.
pub async fn circuit(client: &CoordinatorClient, name: &str) -> String {
    let url = format!("{}/v1/participants/{name}", client.base_url());
    let view: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    view["circuit"].as_str().unwrap().to_string()
}

/// A fast retry schedule with the given budgets.
pub fn fast_retry(max_attempts: u32, settle_max_attempts: u32) -> Value {
    json!({"initial_ms": 10, "max_ms": 50, "multiplier": 2.0,
           "max_attempts": max_attempts, "settle_max_attempts": settle_max_attempts})
}

/// `/metrics` as text.
pub async fn metrics_text(client: &CoordinatorClient) -> String {
    reqwest::get(format!("{}/metrics", client.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the series `series` (a name, with its labels if it has any, exactly as
/// rendered) on `/metrics`; 0 when absent.
pub async fn metric(client: &CoordinatorClient, series: &str) -> f64 {
    metrics_text(client)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
