//! An async client for the coordinator's HTTP API v1.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use crate::api::{
    BulkRetry, ErrorBody, OperatorNote, ParticipantList, ParticipantView, ResolveStep, SagaEvents,
    SagaList, SagaQuery, SagaStates, SagaStatesQuery, SagaView, SubmitSaga, WorkflowList,
    WorkflowView,
};
use crate::participant::ParticipantSpec;
use crate::workflow::WorkflowSpec;

/// Why a [`CoordinatorClient`] call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The request did not get an HTTP answer (connection refused, reset, timeout).
    #[error("coordinator unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The coordinator answered with an error body.
    #[error("coordinator answered {status} {code}: {message}")]
    Api {
        /// HTTP status: `400` malformed or invalid request, `404` unknown saga, workflow or
        /// participant, `409` not allowed in the saga's current state, `413` body too large,
        /// `422` idempotency key reused with another body, `429` over the submission rate,
        /// `503` shutting down or not durable, `500` storage failure. A `2xx` when its body
        /// could not be decoded.
        status: u16,
        /// The body's `code` ([`ErrorDetail::code`](crate::api::ErrorDetail::code)); `http_error`
        /// when the body was not an error body, `bad_response` when a `2xx` body could not be
        /// decoded.
        code: String,
        /// The body's `message`, else the body's text.
        message: String,
    },
}

impl ClientError {
    /// True when resending the same request (with the same idempotency key) may succeed:
    /// a transport error, `429` or a `5xx`.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// True when the coordinator accepted the request (a `2xx`) and only its answer could
    /// not be read (`bad_response`: a coordinator of another version): what it did is done.
    pub fn was_accepted(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if (200..300).contains(status))
    }
}

/// What `submit` returns: the HTTP status (`202` running, `200` terminal) and the saga.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// `202` while the saga runs, `200` once it is `committed` or `aborted`.
    pub status: u16,
    /// The saga: the new one, or the one the idempotency key already named.
    pub saga: SagaView,
}

/// An async client for the coordinator's HTTP API v1. Cheap to clone (clones share one
/// connection pool). Each method makes one request; error answers are [`ClientError::Api`].
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    base_url: String,
    http: reqwest::Client,
}

impl CoordinatorClient {
    /// `base_url` like `http://127.0.0.1:7700`; requests time out after 120 s.
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a reqwest client with static settings always builds");
        Self::with_http(base_url, http)
    }

    /// [`CoordinatorClient::new`] sending `token` as `Authorization: Bearer <token>` with every
    /// request (a coordinator with `--auth-file`); `None` sends none.
    ///
    /// Errors: the token has characters an HTTP header cannot carry.
    pub fn with_token(
        base_url: impl Into<String>,
        token: Option<&str>,
    ) -> Result<Self, reqwest::header::InvalidHeaderValue> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .default_headers(headers)
            .build()
            .expect("a reqwest client with static settings always builds");
        Ok(Self::with_http(base_url, http))
    }

    /// [`CoordinatorClient::new`] with your own `reqwest` client (timeouts, TLS, proxy).
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        CoordinatorClient {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The coordinator's base URL, without a trailing `/`.
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

    /// `PUT /v1/participants/{name}`: registers or updates a participant; idempotent and
    /// durable when it returns. A `spec` without `policy` keeps the stored one. Returns what is
    /// now registered; `400` when `name` or `spec` breaks a rule of [`crate::limits`].
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

    /// `PUT /v1/workflows/{name}`: stores a definition, durable when it returns. A changed
    /// definition gets the next version, an identical one keeps its own; running sagas keep
    /// theirs. `400` for a [`WorkflowError`](crate::WorkflowError) (including an unknown
    /// participant or action), `409` when another writer stored that version first (read it
    /// and try again).
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

    /// Submits a saga (`POST /v1/sagas`). With `wait_ms`, the coordinator answers once the
    /// saga is terminal or the wait is over, whichever comes first (it waits 60 s at most).
    /// A saga is created at most once per `idempotency_key` (1 to 256 characters).
    ///
    /// A [`Value`] cannot hold a number beyond 64 bits exactly: to send an input's exact text,
    /// use [`CoordinatorClient::submit_body`] with a [`RawJson`](crate::RawJson) input.
    /// Errors: `400` bad body or key, `404` unknown workflow, `409` a participant or action
    /// of the workflow is not registered, `422` key reused with another body, `429` over the
    /// rate and `503` shutting down (both retryable).
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
            business_key: None,
        };
        self.submit_body(&body, idempotency_key, wait_ms).await
    }

    /// [`CoordinatorClient::submit`] with a whole body: an exact-text input or a
    /// `callback_url`.
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

    /// `GET /v1/sagas/{id}`; `404` for an unknown id.
    pub async fn get_saga(&self, id: &str) -> Result<SagaView, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/sagas/{id}", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// `POST /v1/sagas/states`: the state of each of `ids` (at most
    /// [`MAX_STATE_IDS`](crate::api::MAX_STATE_IDS), else `400`), `unknown` for an id the
    /// coordinator does not hold. Needs the `read` scope on a coordinator with `--auth-file`.
    pub async fn saga_states(&self, ids: &[String]) -> Result<SagaStates, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/sagas/states", self.base_url))
            .json(&SagaStatesQuery { ids: ids.to_vec() })
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// `GET /v1/sagas/{id}/events`: the saga's audit trail; `404` for an unknown id.
    pub async fn saga_events(&self, id: &str) -> Result<SagaEvents, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/sagas/{id}/events", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// One page of `GET /v1/sagas`; every filter is optional. `state` is a wire name
    /// ([`SagaState::as_str`](crate::api::SagaState::as_str)), `limit` 1 to 1000 (default
    /// 100), `cursor` the previous page's `next_cursor`; anything else is `400`.
    pub async fn list_sagas(
        &self,
        state: Option<&str>,
        workflow: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SagaList, ClientError> {
        let query = SagaQuery {
            state: state.map(Into::into),
            workflow: workflow.map(Into::into),
            limit: limit.map(|l| l as usize),
            cursor: cursor.map(Into::into),
            ..SagaQuery::default()
        };
        self.query_sagas(&query).await
    }

    /// One page of `GET /v1/sagas` with every filter ([`SagaQuery`]): by business key, time
    /// range, state, workflow. A bad filter is `400`.
    pub async fn query_sagas(&self, query: &SagaQuery) -> Result<SagaList, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/sagas", self.base_url))
            .query(query)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// An operator action on one saga: `POST /v1/sagas/{id}/{action}` with `body`.
    async fn operate<B: serde::Serialize>(
        &self,
        id: &str,
        action: &str,
        body: &B,
    ) -> Result<SagaView, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/sagas/{id}/{action}", self.base_url))
            .json(body)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// `POST /v1/sagas/{id}/abort`: rolls back a saga that has not decided yet and returns it.
    /// `409` once it has decided (confirming, compensating, finished or stuck).
    pub async fn abort(&self, id: &str) -> Result<SagaView, ClientError> {
        self.abort_with(id, &OperatorNote::default()).await
    }

    /// [`CoordinatorClient::abort`], recording who asks and why.
    pub async fn abort_with(&self, id: &str, note: &OperatorNote) -> Result<SagaView, ClientError> {
        self.operate(id, "abort", note).await
    }

    /// `POST /v1/sagas/{id}/retry`: resumes a `stuck` saga with a fresh attempt budget and
    /// returns it. `409` when it is not stuck.
    pub async fn retry(&self, id: &str) -> Result<SagaView, ClientError> {
        self.retry_with(id, &OperatorNote::default()).await
    }

    /// [`CoordinatorClient::retry`], recording who asks and why.
    pub async fn retry_with(&self, id: &str, note: &OperatorNote) -> Result<SagaView, ClientError> {
        self.operate(id, "retry", note).await
    }

    /// `POST /v1/sagas/{id}/retry-now`: a call waiting on its backoff is made now. `409` when
    /// nothing waits.
    pub async fn retry_now(&self, id: &str, note: &OperatorNote) -> Result<SagaView, ClientError> {
        self.operate(id, "retry-now", note).await
    }

    /// `POST /v1/sagas/{id}/steps/{step}/resolve`: a person settled the step by hand; the
    /// saga goes on from there. `409` unless the step is stuck or waiting for a retry.
    pub async fn resolve_step(
        &self,
        id: &str,
        step: &str,
        resolve: &ResolveStep,
    ) -> Result<SagaView, ClientError> {
        self.operate(id, &format!("steps/{step}/resolve"), resolve)
            .await
    }

    /// `POST /v1/sagas/bulk/retry`: resumes every stuck saga the filters match (`state` must
    /// be `stuck` or absent; `workflow`, `business_key` and the time range narrow it).
    pub async fn bulk_retry(
        &self,
        query: &SagaQuery,
        note: &OperatorNote,
    ) -> Result<BulkRetry, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/sagas/bulk/retry", self.base_url))
            .query(query)
            .json(note)
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// `GET /v1/participants`: every registered participant with its live state.
    pub async fn list_participants(&self) -> Result<ParticipantList, ClientError> {
        self.get_json("/v1/participants").await
    }

    /// `GET /v1/participants/{name}`; `404` when unknown.
    pub async fn get_participant(&self, name: &str) -> Result<ParticipantView, ClientError> {
        self.get_json(&format!("/v1/participants/{name}")).await
    }

    /// `GET /v1/workflows`: the newest version of every workflow.
    pub async fn list_workflows(&self) -> Result<WorkflowList, ClientError> {
        self.get_json("/v1/workflows").await
    }

    /// `GET /v1/workflows/{name}`: its newest version; `404` when unknown.
    pub async fn get_workflow(&self, name: &str) -> Result<WorkflowView, ClientError> {
        self.get_json(&format!("/v1/workflows/{name}")).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await?;
        Ok(Self::decode(resp).await?.1)
    }

    /// True once `/readyz` answers 200 (recovery finished); false while it does not or when
    /// the coordinator is unreachable.
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
