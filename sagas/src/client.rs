//! An async client for the coordinator's HTTP API v1.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use crate::api::{
    ErrorBody, ParticipantView, SagaEvents, SagaList, SagaView, SubmitSaga, WorkflowView,
};
use crate::participant::ParticipantSpec;
use crate::workflow::WorkflowSpec;

#[derive(Debug, Error)]
pub enum ClientError {
    /// The request did not get an HTTP answer (connection refused, reset, timeout).
    #[error("coordinator unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The coordinator answered with an error body.
    #[error("coordinator answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl ClientError {
    /// True when resending the same request (with the same idempotency key) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// What `submit` returns: the HTTP status (`202` running, `200` terminal) and the saga.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub status: u16,
    pub saga: SagaView,
}

#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    base_url: String,
    http: reqwest::Client,
}

impl CoordinatorClient {
    /// `base_url` like `http://127.0.0.1:7700`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a reqwest client with static settings always builds");
        Self::with_http(base_url, http)
    }

    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        CoordinatorClient {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<(u16, T), ClientError> {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map(|v| (status, v))
                .map_err(|e| ClientError::Api {
                    status,
                    code: "bad_response".into(),
                    message: format!("cannot decode response: {e}"),
                });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
                "http_error".into(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
        };
        Err(ClientError::Api {
            status,
            code,
            message,
        })
    }

    pub async fn put_participant(
        &self,
        name: &str,
        spec: &ParticipantSpec,
    ) -> Result<ParticipantView, ClientError> {
        let resp = self
            .http
            .put(format!("{}/v1/participants/{name}", self.base_url))
            .json(spec)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    pub async fn put_workflow(
        &self,
        name: &str,
        spec: &WorkflowSpec,
    ) -> Result<WorkflowView, ClientError> {
        let resp = self
            .http
            .put(format!("{}/v1/workflows/{name}", self.base_url))
            .json(spec)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// Submits a saga. With `wait_ms`, the coordinator answers once the saga is terminal or
    /// the wait is over, whichever comes first.
    pub async fn submit(
        &self,
        workflow: &str,
        input: Value,
        idempotency_key: Option<&str>,
        wait_ms: Option<u64>,
    ) -> Result<Submitted, ClientError> {
        let body = SubmitSaga {
            workflow: workflow.into(),
            input: input.into(),
            callback_url: None,
        };
        self.submit_body(&body, idempotency_key, wait_ms).await
    }

    pub async fn submit_body(
        &self,
        body: &SubmitSaga,
        idempotency_key: Option<&str>,
        wait_ms: Option<u64>,
    ) -> Result<Submitted, ClientError> {
        let mut req = self
            .http
            .post(format!("{}/v1/sagas", self.base_url))
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        if let Some(ms) = wait_ms {
            req = req.query(&[("wait_ms", ms)]);
        }
        let (status, saga) = Self::decode(req.send().await?).await?;
        Ok(Submitted { status, saga })
    }

    pub async fn get_saga(&self, id: &str) -> Result<SagaView, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/sagas/{id}", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    pub async fn saga_events(&self, id: &str) -> Result<SagaEvents, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/sagas/{id}/events", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// One page of `GET /v1/sagas`; filters are optional.
    pub async fn list_sagas(
        &self,
        state: Option<&str>,
        workflow: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SagaList, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = state {
            query.push(("state", s.into()));
        }
        if let Some(w) = workflow {
            query.push(("workflow", w.into()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.into()));
        }
        let resp = self
            .http
            .get(format!("{}/v1/sagas", self.base_url))
            .query(&query)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    pub async fn abort(&self, id: &str) -> Result<SagaView, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/sagas/{id}/abort", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    pub async fn retry(&self, id: &str) -> Result<SagaView, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/sagas/{id}/retry", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// True once `/readyz` answers 200 (recovery finished).
    pub async fn is_ready(&self) -> bool {
        match self
            .http
            .get(format!("{}/readyz", self.base_url))
            .send()
            .await
        {
            Ok(resp) => resp.status().is_success(),
            Err(_) => false,
        }
    }
}
