//! A scriptable participant for coordinator tests: answers each phase with a chosen status
//! (or holds the reply until released) and records every call it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sagas::{BranchRequest, Phase};
use tokio::sync::Notify;

#[derive(Default)]
struct Script {
    /// Status per phase; 200 when absent.
    status: HashMap<Phase, u16>,
    /// Phases whose replies wait for `release`.
    hold: Vec<Phase>,
    calls: Vec<BranchRequest>,
    /// The `traceparent` header of each call, in the order of `calls`.
    traceparents: Vec<Option<String>>,
    arrivals: Vec<(Phase, std::time::Instant)>,
    /// Status `POST /callback` answers; 200 when absent.
    callback_status: Option<u16>,
    /// Bodies `POST /callback` received (as sent, byte for byte), with the status it answered.
    callbacks: Vec<(u16, String)>,
}

#[derive(Clone, Default)]
pub struct FakeParticipant {
    script: Arc<Mutex<Script>>,
    released: Arc<Notify>,
}

async fn handle(
    State(fake): State<FakeParticipant>,
    headers: HeaderMap,
    Json(req): Json<BranchRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let (status, hold) = {
        let mut script = fake.script();
        script.calls.push(req.clone());
        let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
        script.traceparents.push(traceparent.map(String::from));
        script.arrivals.push((req.phase, std::time::Instant::now()));
        (
            script.status.get(&req.phase).copied().unwrap_or(200),
            script.hold.contains(&req.phase),
        )
    };
    if hold {
        fake.released.notified().await;
    }
    (
        StatusCode::from_u16(status).unwrap(),
        Json(serde_json::json!({"phase": req.phase})),
    )
}

async fn callback(State(fake): State<FakeParticipant>, body: String) -> StatusCode {
    let mut script = fake.script();
    let status = script.callback_status.unwrap_or(200);
    script.callbacks.push((status, body));
    StatusCode::from_u16(status).unwrap()
}

impl FakeParticipant {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .expect("a handler panicked while holding the script")
    }

    /// Serves on a free loopback port; paths are `/{phase}`.
    pub async fn start() -> (FakeParticipant, SocketAddr) {
        let fake = FakeParticipant::default();
        let app = axum::Router::new()
            .route("/callback", post(callback))
            .route("/{phase}", post(handle))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, addr)
    }

    pub fn answer(&self, phase: Phase, status: u16) {
        self.script().status.insert(phase, status);
    }

    pub fn hold(&self, phase: Phase) {
        self.script().hold.push(phase);
    }

    pub fn release_all(&self) {
        self.script().hold.clear();
        self.released.notify_waiters();
    }

    /// `(step, phase)` of every call received, in order.
    pub fn calls(&self) -> Vec<(String, Phase)> {
        self.script()
            .calls
            .iter()
            .map(|c| (c.step.clone(), c.phase))
            .collect()
    }

    /// `(step, phase, traceparent header)` of every call received, in order.
    pub fn traced_calls(&self) -> Vec<(String, Phase, Option<String>)> {
        let script = self.script();
        script
            .calls
            .iter()
            .zip(&script.traceparents)
            .map(|(c, t)| (c.step.clone(), c.phase, t.clone()))
            .collect()
    }

    pub fn count(&self, phase: Phase) -> usize {
        self.script()
            .calls
            .iter()
            .filter(|c| c.phase == phase)
            .count()
    }
}

impl FakeParticipant {
    pub fn answer_callbacks(&self, status: u16) {
        self.script().callback_status = Some(status);
    }

    pub fn callbacks(&self) -> Vec<(u16, serde_json::Value)> {
        self.script()
            .callbacks
            .iter()
            .map(|(status, body)| (*status, serde_json::from_str(body).unwrap()))
            .collect()
    }

    /// Callback bodies exactly as they arrived.
    pub fn callback_texts(&self) -> Vec<String> {
        self.script()
            .callbacks
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The `input` of every branch call received, exactly as it arrived.
    pub fn inputs(&self) -> Vec<String> {
        self.script()
            .calls
            .iter()
            .map(|c| c.input.get().to_string())
            .collect()
    }

    /// When each call of `phase` arrived.
    pub fn arrivals(&self, phase: Phase) -> Vec<std::time::Instant> {
        self.script()
            .arrivals
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// Calls `check` every 10 ms until it gives `Ok`; after `timeout`, fails the test with the last
/// `Err` (what was still awaited, and what was seen instead).
pub async fn wait_for<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(waiting) => assert!(
                tokio::time::Instant::now() < deadline,
                "gave up after {timeout:?}: {waiting}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `condition` until it holds, for at most 30 s; `what` names it in the failure.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(Duration::from_secs(30), async || {
        if condition().await {
            Ok(())
        } else {
            Err(format!("waiting for {what}"))
        }
    })
    .await
}
