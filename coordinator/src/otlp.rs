//! Span export over OTLP/HTTP (`--otlp-endpoint URL`, protobuf to `URL/v1/traces`): one trace
//! per saga, with a span for its submission and one per branch call and completion callback.
//!
//! Each coordinator holds its own tracer provider rather than installing a global one: spans
//! are made where the saga's trace context is known (the runtime and the dispatcher, from
//! [`crate::trace_context`]), so nothing depends on a `tracing` subscriber, and several
//! coordinators in one process (the tests) each export their own spans to their own endpoint.
//!
//! The SDK's batch processor runs on a thread of its own with a blocking HTTP client, so
//! exporting never holds a tokio worker; its queue is bounded (spans beyond it are dropped
//! and counted by the SDK), so a dead collector cannot grow memory.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span,
};
use sagas::wire::TraceParent;

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The OTLP exporter refused its configuration or could not build its HTTP client.
    #[error("cannot export spans to {endpoint}: {source}")]
    Exporter {
        /// Where spans were to go.
        endpoint: String,
        /// Why not.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// How spans are exported (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpOptions {
    /// The collector's base URL; spans go to `{endpoint}/v1/traces`. Default: none, no spans
    /// are exported.
    pub endpoint: Option<String>,
    /// Longest time a finished span waits before it is sent (spans go in batches). Default
    /// 5 s; 1 ms to 1 minute.
    pub export_interval: Duration,
}

impl Default for OtlpOptions {
    fn default() -> Self {
        OtlpOptions {
            endpoint: None,
            export_interval: Duration::from_secs(5),
        }
    }
}

/// The URL spans are POSTed to: the base URL with `/v1/traces` (unless it names it already).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// One coordinator's span exporter and the spans it makes.
#[derive(Clone)]
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl SpanExport {
    /// Exports to `endpoint` in batches at most `export_interval` apart, naming the coordinator
    /// `instance` (the resource's `service.instance.id`).
    pub fn start(
        endpoint: &str,
        export_interval: Duration,
        instance: &str,
    ) -> Result<SpanExport, OtlpError> {
        let url = traces_url(endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .build()
            .map_err(|source| OtlpError::Exporter {
                endpoint: url,
                source,
            })?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(export_interval)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            // A submitter's "not sampled" holds for the whole saga; a saga of its own is kept.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(
                Resource::builder()
                    .with_service_name("saga-coordinator")
                    .with_attribute(KeyValue::new("service.instance.id", instance.to_string()))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("coordinator");
        Ok(SpanExport { provider, tracer })
    }

    /// Starts the span of a saga's submission at `started`: a child of the submitter's span
    /// when it sent a `traceparent`, else the root of a new trace. End it once the saga is
    /// durable; its context is what the saga records ([`context_of`]).
    pub fn submission(
        &self,
        caller: Option<TraceParent>,
        started: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let parent = caller.map_or_else(Context::new, remote);
        self.tracer
            .span_builder("saga.submit")
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent)
    }

    /// Starts a span for a call made on a saga's behalf (`name`), a child of the saga's
    /// span.
    pub fn call(&self, name: &'static str, saga: TraceParent, attributes: Vec<KeyValue>) -> Span {
        self.tracer
            .span_builder(Cow::Borrowed(name))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &remote(saga))
    }

    /// Sends what is still batched and stops the exporter; spans ended after this are not
    /// sent. Blocking work (the SDK's thread, the HTTP client) runs off the async workers.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "span export did not shut down cleanly"),
            Err(e) => tracing::warn!(error = %e, "span export shutdown panicked"),
        }
    }
}

/// A span's context as a `traceparent` (to record, or to send downstream).
pub fn context_of(span: &Span) -> TraceParent {
    let context = span.span_context();
    TraceParent {
        trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(context.span_id().to_bytes()),
        sampled: context.is_sampled(),
    }
}

/// Records how a call ended and ends its span: `outcome` as `saga.call.status`, the HTTP
/// status when there was an answer, and an error status with `error` when it failed.
pub fn end_call(
    mut span: Span,
    outcome: &'static str,
    http_status: Option<u16>,
    error: Option<&str>,
) {
    span.set_attribute(KeyValue::new("saga.call.status", outcome));
    if let Some(status) = http_status {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(error) = error {
        span.set_status(Status::error(error.to_string()));
    }
    span.end();
}

/// A context whose parent is the remote span `parent`.
fn remote(parent: TraceParent) -> Context {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        parent.trace_id.into(),
        parent.span_id.into(),
        flags,
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/otlp/"),
            "http://c:4318/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
