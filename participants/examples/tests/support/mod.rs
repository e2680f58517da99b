//! In-process participants on port 0 and a small client for branch calls.

#![allow(dead_code)]

use std::future::Future;

use example_participants::{
    ParticipantConfig, ParticipantError, ParticipantKind, RunningParticipant,
};
use serde_json::{Value, json};

pub mod process;

/// Nothing listens on the discard port: registration keeps retrying in the background.
pub const NO_COORDINATOR: &str = "http://127.0.0.1:9";

pub struct Participant {
    pub running: RunningParticipant,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn config(kind: ParticipantKind, dir: &tempfile::TempDir) -> ParticipantConfig {
    ParticipantConfig::new(kind)
        .with_listen("127.0.0.1:0".parse().unwrap())
        .with_data_dir(dir.path().join("db"))
        .with_coordinator(NO_COORDINATOR)
}

pub async fn start<F, Fut>(kind: ParticipantKind, start: F) -> Participant
where
    F: FnOnce(ParticipantConfig) -> Fut,
    Fut: Future<Output = Result<RunningParticipant, ParticipantError>>,
{
    start_in(tempfile::tempdir().unwrap(), kind, |_| {}, start).await
}

/// Starts a participant with its data in `dir` (a new one, or one left by a participant that
/// was shut down) and its test config changed by `adjust`.
pub async fn start_in<F, Fut>(
    dir: tempfile::TempDir,
    kind: ParticipantKind,
    adjust: impl FnOnce(&mut ParticipantConfig),
    start: F,
) -> Participant
where
    F: FnOnce(ParticipantConfig) -> Fut,
    Fut: Future<Output = Result<RunningParticipant, ParticipantError>>,
{
    let mut config = config(kind, &dir);
    adjust(&mut config);
    let running = start(config).await.unwrap();
    Participant {
        running,
        http: reqwest::Client::new(),
        dir,
    }
}

impl Participant {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    /// A branch call as the coordinator makes it: body plus `Saga-*` headers.
    pub async fn branch(
        &self,
        path: &str,
        saga_id: &str,
        step: &str,
        phase: &str,
        input: Value,
    ) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .header("saga-id", saga_id)
            .header("saga-step", step)
            .header("saga-phase", phase)
            .header("idempotency-key", format!("{saga_id}:{step}:{phase}"))
            .json(&json!({"saga_id": saga_id, "step": step, "phase": phase, "input": input}))
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        decode(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        decode(
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.expect("every answer is JSON");
    (status, body)
}
