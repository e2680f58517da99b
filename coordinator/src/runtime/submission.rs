//! Submissions: a new saga made durable before it is acknowledged, or the saga an idempotency
//! key already names when the request is the same one.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::trace::Span as _;
use sagas::api::SubmitSaga;
use sagas::wire::TraceParent;

use super::task::TaskStart;
use super::{Runtime, RuntimeError};
use crate::engine::{Created, Saga};
use crate::store::Creation;
use crate::telemetry;

impl Runtime {
    /// The business key the workflow's JSON pointer reads from the input (a string, or a
    /// number as its text), if it names one.
    fn default_business_key(&self, request: &SubmitSaga, version: u32) -> Option<String> {
        let workflow = self
            .registry
            .workflow(&request.workflow)
            .filter(|w| w.version == version)?;
        let pointer = workflow.spec.business_key.as_deref()?;
        let key = request.input.scalar_at(pointer)?;
        sagas::limits::check_business_key("business_key", &key)
            .ok()
            .map(|()| key)
    }

    /// Starts a saga, or returns the one the idempotency key already names. `true` when new.
    /// The saga is durable when this returns (durability rule 1). `caller` is the submitter's
    /// trace context (its `traceparent`), which a new saga joins.
    pub async fn submit(
        self: &Arc<Self>,
        request: SubmitSaga,
        key: Option<String>,
        caller: Option<TraceParent>,
    ) -> Result<(Arc<Saga>, bool), RuntimeError> {
        let started = SystemTime::now();
        if self.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        // A resubmission is answered without a new saga being made. On a cluster's database
        // the create itself finds a taken key (one round trip fewer for every new saga);
        // reading it first is worth it where reads are local.
        if let Some(key) = &key
            && !self.store.clustered()
            && let Some(id) = self.store.saga_for_key(key).await?
        {
            match self.existing(&id, key, &request).await {
                // Removed after its retention since the key was read: the key is free again.
                Err(RuntimeError::UnknownSaga(_)) => {}
                other => return other.map(|s| (s, false)),
            }
        }
        // A workflow or participant registered through another instance before this
        // submission is used by it.
        self.registry.refresh().await?;
        let (workflow_version, plan) = self
            .registry
            .resolve(&request.workflow)
            .map_err(RuntimeError::Unrunnable)?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(request.workflow.clone()))?;
        let business_key = match &request.business_key {
            Some(key) => Some(key.clone()),
            None => self.default_business_key(&request, workflow_version),
        };
        let id = uuid::Uuid::now_v7().to_string();
        // The submission span, when spans are exported: the saga's calls descend from it.
        let mut span = self.spans.as_ref().map(|spans| {
            spans.submission(
                caller,
                started,
                vec![
                    KeyValue::new("saga.id", id.clone()),
                    KeyValue::new("saga.workflow", request.workflow.clone()),
                    KeyValue::new("saga.workflow_version", i64::from(workflow_version)),
                ],
            )
        });
        // Recorded, so that every instance and every restart continues this trace.
        let trace = span.as_ref().map(crate::otlp::context_of).or(caller);
        let created = Created {
            id,
            workflow: request.workflow.clone(),
            workflow_version,
            input: request.input.clone(),
            callback_url: request.callback_url.clone(),
            idempotency_key: key.clone(),
            business_key,
            callback_max_attempts: self.engine.callback_max_attempts,
            plan,
            trace,
            at: self.clock.now(),
        };
        let saga = Saga::create(&created)?;
        // Durable when it returns (rule 1), before any participant hears of the saga.
        let creation = self.store.create(&created, key.as_deref()).await;
        if let (Some(span), Ok(Creation::Existing(existing))) = (&mut span, &creation) {
            // Another submission with this key made the saga first; this one made nothing.
            span.set_attribute(KeyValue::new("saga.existing_id", existing.clone()));
        }
        if let Some(mut span) = span {
            if let Err(e) = &creation {
                span.set_status(opentelemetry::trace::Status::error(e.to_string()));
            }
            span.end();
        }
        match creation? {
            Creation::Existing(id) => {
                let key = key.unwrap_or_default();
                self.existing(&id, &key, &request).await.map(|s| (s, false))
            }
            Creation::Created => {
                telemetry::saga_submitted(&saga.workflow);
                let saga = Arc::new(saga);
                let view = saga.clone();
                // Unless recovery got to it first (then it runs already).
                self.spawn_saga(saga, 0, TaskStart::New);
                Ok((view, true))
            }
        }
    }

    /// The saga an idempotency key already names, if the request is the same one.
    async fn existing(
        self: &Arc<Self>,
        id: &str,
        key: &str,
        request: &SubmitSaga,
    ) -> Result<Arc<Saga>, RuntimeError> {
        // The first submission may still be waiting for its flush: answer only once durable.
        self.store.flush().await?;
        // Normally a no-op; restarts the task of a saga whose task stopped on an error. In a
        // cluster the saga may be another instance's: only a claim or a take-over starts it.
        if self.is_ready() && !self.is_shutting_down() && !self.store.clustered() {
            self.resume(id).await?;
        }
        let saga = self
            .get(id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownSaga(id.into()))?;
        // Inputs compare by meaning, exactly (key order aside, no number rounded); a business
        // key counts when the resubmission gives one.
        let same = saga.workflow == request.workflow
            && saga.input == request.input
            && saga.callback_url == request.callback_url
            && request
                .business_key
                .as_ref()
                .is_none_or(|key| saga.business_key.as_ref() == Some(key));
        if same {
            Ok(saga)
        } else {
            Err(RuntimeError::KeyReused(key.into()))
        }
    }
}
