//! A scriptable participant for coordinator tests: answers each phase with a chosen status
//! (or holds the reply until released) and records every call it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
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
}

#[derive(Clone, Default)]
pub struct FakeParticipant {
    script: Arc<Mutex<Script>>,
    released: Arc<Notify>,
}

async fn handle(
    State(fake): State<FakeParticipant>,
    Json(req): Json<BranchRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let (status, hold) = {
        let mut script = fake.script.lock().unwrap();
        script.calls.push(req.clone());
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

impl FakeParticipant {
    /// Serves on a free loopback port; paths are `/{phase}`.
    pub async fn start() -> (FakeParticipant, SocketAddr) {
        let fake = FakeParticipant::default();
        let app = axum::Router::new()
            .route("/{phase}", post(handle))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, addr)
    }

    pub fn answer(&self, phase: Phase, status: u16) {
        self.script.lock().unwrap().status.insert(phase, status);
    }

    pub fn hold(&self, phase: Phase) {
        self.script.lock().unwrap().hold.push(phase);
    }

    pub fn release_all(&self) {
        self.script.lock().unwrap().hold.clear();
        self.released.notify_waiters();
    }

    /// `(step, phase)` of every call received, in order.
    pub fn calls(&self) -> Vec<(String, Phase)> {
        self.script
            .lock()
            .unwrap()
            .calls
            .iter()
            .map(|c| (c.step.clone(), c.phase))
            .collect()
    }

    pub fn count(&self, phase: Phase) -> usize {
        self.script
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.phase == phase)
            .count()
    }
}
