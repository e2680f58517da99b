//! Alerts to an operator's webhook (`--alert-webhook URL`): a JSON [`Alert`] is POSTed when a
//! saga turns stuck, a participant's circuit opens, or a completion callback is abandoned.
//!
//! Raising an alert never blocks or fails the saga path: it goes into a bounded queue (when
//! full, the oldest alert is dropped and counted in `coordinator_alerts_dropped_total`) and
//! one background task delivers the queue in order, retrying each alert with backoff before
//! it gives up on it (`coordinator_alerts_failed_total`). Every alert is also logged at the
//! place it is raised, webhook or not.
//!
//! Alerts come from the task that drives the saga (or, for a circuit, from the instance whose
//! breaker opened), so in a cluster exactly one instance alerts for a given saga. They are
//! kept in memory only: an alert raised just before a crash may be lost (the log line and the
//! saga's state remain).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::outbound::Outbound;
use crate::telemetry;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A confirm, cancel or compensate exhausted its attempts: the saga needs an operator.
    SagaStuck,
    /// A participant's circuit breaker opened (from closed; a failed probe that re-opens it is
    /// the same incident and not alerted again).
    CircuitOpen,
    /// A completion callback gave up after its attempts: nobody was told the outcome.
    CallbackAbandoned,
}

impl AlertKind {
    /// Every kind, for declaring metric series.
    pub const ALL: [AlertKind; 3] = [
        AlertKind::SagaStuck,
        AlertKind::CircuitOpen,
        AlertKind::CallbackAbandoned,
    ];

    /// The name in the JSON body and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SagaStuck => "saga_stuck",
            AlertKind::CircuitOpen => "circuit_open",
            AlertKind::CallbackAbandoned => "callback_abandoned",
        }
    }
}

/// The JSON body POSTed to the webhook. Fields that do not apply to the kind are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// When, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// The coordinator that raised it: `{host}/{listen address}`.
    pub instance: String,
    /// The saga (stuck, callback abandoned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<String>,
    /// The saga's workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The step whose phase gave up (stuck).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The participant concerned (stuck: the step's; circuit open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// What an alert says, before the queue stamps it with the time and the instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFacts {
    /// The saga.
    pub saga_id: Option<String>,
    /// Its workflow.
    pub workflow: Option<String>,
    /// The step.
    pub step: Option<String>,
    /// The participant.
    pub participant: Option<String>,
    /// For a person.
    pub message: String,
}

/// How alerts are delivered (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOptions {
    /// Where alerts are POSTed. Default: none (alerts are only logged).
    pub webhook: Option<String>,
    /// Alerts waiting for delivery at most; past it the oldest is dropped. Default 1000;
    /// 1 to 1,000,000.
    pub queue_capacity: usize,
    /// Attempts to deliver one alert before it is given up. Default 6; 1 to 100.
    pub attempts: u32,
    /// Backoff before the second attempt, doubling (with jitter) up to `max_backoff`.
    /// Default 500 ms; 1 ms to 1 hour.
    pub initial_backoff: Duration,
    /// Longest backoff between two attempts. Default 30 s; from `initial_backoff` to 1 hour.
    pub max_backoff: Duration,
    /// Longest wait for the webhook's answer to one attempt. Default 10 s; 1 ms to 1 hour.
    pub timeout: Duration,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            webhook: None,
            queue_capacity: 1_000,
            attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl AlertOptions {
    /// Checks every field against its documented range; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |option, rule| Err(ConfigError { option, rule });
        if let Some(url) = &self.webhook
            && let Err(e) = sagas::limits::check_http_url("--alert-webhook", url, true)
        {
            return fail("--alert-webhook", e.rule);
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            let rule = format!(
                "must be between 1 and 1000000 (got {})",
                self.queue_capacity
            );
            return fail("alerts.queue_capacity", rule);
        }
        if !(1..=100).contains(&self.attempts) {
            let rule = format!("must be between 1 and 100 (got {})", self.attempts);
            return fail("alerts.attempts", rule);
        }
        let hour = Duration::from_secs(3_600);
        let millisecond = Duration::from_millis(1);
        for (field, value, min) in [
            ("alerts.initial_backoff", self.initial_backoff, millisecond),
            ("alerts.max_backoff", self.max_backoff, self.initial_backoff),
            ("alerts.timeout", self.timeout, millisecond),
        ] {
            if !(min..=hour).contains(&value) {
                let rule = format!("must be between {min:?} and {hour:?} (got {value:?})");
                return fail(field, rule);
            }
        }
        Ok(())
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The webhook answered with a status other than `2xx`.
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    /// No answer: connection refused, timeout, broken connection; or the request could not
    /// be built.
    #[error("webhook unreachable: {0}")]
    Transport(String),
}

impl AlertError {
    /// Worth another attempt: anything but a refusal of the request itself (a `4xx` other than
    /// timeout, too early and too many requests), which the same bytes would meet again.
    fn is_retryable(&self) -> bool {
        match self {
            AlertError::Status(status) => {
                !(400..500).contains(status) || matches!(status, 408 | 425 | 429)
            }
            AlertError::Transport(_) => true,
        }
    }
}

/// Alerts waiting for delivery, oldest first.
struct Queue {
    pending: Mutex<VecDeque<Alert>>,
    capacity: usize,
    added: Notify,
}

impl Queue {
    /// Adds `alert`, dropping (and returning) the oldest one when full.
    fn push(&self, alert: Alert) -> Option<Alert> {
        let dropped = {
            let mut pending = self.pending.lock().expect("alert queue poisoned");
            let dropped = if pending.len() >= self.capacity {
                pending.pop_front()
            } else {
                None
            };
            pending.push_back(alert);
            dropped
        };
        // A permit is kept when the worker is busy, so no alert waits for the next one.
        self.added.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Alert> {
        self.pending
            .lock()
            .expect("alert queue poisoned")
            .pop_front()
    }

    fn len(&self) -> usize {
        self.pending.lock().expect("alert queue poisoned").len()
    }
}

/// One coordinator's alerts: cheap to clone, shared by the runtime and the dispatcher.
#[derive(Clone)]
pub struct Alerts {
    /// `None` when no webhook is configured: alerts are only logged where they are raised.
    queue: Option<Arc<Queue>>,
    instance: Arc<str>,
    clock: Clock,
}

/// The background delivery of one coordinator's alerts; stop it with [`AlertWorker::stop`].
pub struct AlertWorker {
    queue: Arc<Queue>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Alerts {
    /// Alerts of the coordinator `instance`, delivered as `options` says (started here on the
    /// current tokio runtime), or only logged when no webhook is set.
    pub fn start(
        options: &AlertOptions,
        instance: String,
        clock: Clock,
        outbound: &Outbound,
    ) -> (Alerts, Option<AlertWorker>) {
        let Some(url) = options.webhook.clone() else {
            return (Alerts::disabled(instance, clock), None);
        };
        let queue = Arc::new(Queue {
            pending: Mutex::new(VecDeque::new()),
            capacity: options.queue_capacity,
            added: Notify::new(),
        });
        let http = outbound.client(reqwest::Client::builder());
        let stop = CancellationToken::new();
        let delivery = Delivery {
            http,
            outbound: outbound.clone(),
            url,
            options: options.clone(),
        };
        let task = tokio::spawn(delivery.run(queue.clone(), stop.clone()));
        let alerts = Alerts {
            queue: Some(queue.clone()),
            instance: instance.into(),
            clock,
        };
        (alerts, Some(AlertWorker { queue, stop, task }))
    }

    /// Alerts that are only logged.
    pub fn disabled(instance: String, clock: Clock) -> Alerts {
        Alerts {
            queue: None,
            instance: instance.into(),
            clock,
        }
    }

    /// Queues an alert for the webhook, if there is one. Never blocks: a full queue drops its
    /// oldest alert.
    pub fn raise(&self, kind: AlertKind, facts: AlertFacts) {
        let Some(queue) = &self.queue else {
            return;
        };
        let alert = Alert {
            kind,
            at: crate::clock::rfc3339(self.clock.now()),
            instance: self.instance.to_string(),
            saga_id: facts.saga_id,
            workflow: facts.workflow,
            step: facts.step,
            participant: facts.participant,
            message: facts.message,
        };
        if let Some(dropped) = queue.push(alert) {
            telemetry::alert_dropped(dropped.kind);
            tracing::warn!(kind = dropped.kind.as_str(), saga = ?dropped.saga_id,
                participant = ?dropped.participant, "alert queue full; dropped the oldest alert");
        }
    }
}

impl AlertWorker {
    /// Delivers what is queued for at most `grace` (attempts and backoff included), then stops.
    pub async fn stop(self, grace: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            let left = self.queue.len();
            tracing::warn!(
                left,
                "shutdown grace over with alerts undelivered; they are in the log"
            );
        }
    }
}

/// The delivery loop's means: the client, the webhook and the retry budget.
struct Delivery {
    http: reqwest::Client,
    /// Where alerts may go, and their signing.
    outbound: Outbound,
    url: String,
    options: AlertOptions,
}

impl Delivery {
    /// Delivers queued alerts in order until stopped and the queue is empty.
    async fn run(self, queue: Arc<Queue>, stop: CancellationToken) {
        loop {
            if let Some(alert) = queue.pop() {
                self.deliver(&alert).await;
                continue;
            }
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = queue.added.notified() => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// One alert, retried with backoff; counted as sent or failed.
    async fn deliver(&self, alert: &Alert) {
        let body = serde_json::to_vec(alert).expect("an alert is plain data");
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.initial_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let result = (|| self.attempt(&body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(AlertError::is_retryable)
            .notify(|e, after| {
                tracing::debug!(kind = alert.kind.as_str(), error = %e, ?after, "alert not delivered; retrying")
            })
            .await;
        match result {
            Ok(()) => telemetry::alert_sent(alert.kind),
            Err(e) => {
                telemetry::alert_failed(alert.kind);
                tracing::error!(kind = alert.kind.as_str(), saga = ?alert.saga_id,
                    participant = ?alert.participant, error = %e,
                    "alert given up: the webhook did not take it");
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<(), AlertError> {
        let mut request = build_request(&self.http, &self.url, body.to_vec(), self.options.timeout)
            .map_err(|e| AlertError::Transport(e.to_string()))?;
        self.outbound
            .check_target(&request)
            .map_err(AlertError::Transport)?;
        self.outbound.sign(&mut request);
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| AlertError::Transport(crate::dispatch::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AlertError::Status(status.as_u16()))
        }
    }
}

/// The webhook request for one alert's exact body bytes; signed after this (`Outbound::sign`)
/// over these bytes and this URL's path and query: nothing changes the body after that.
fn build_request(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<reqwest::Request, reqwest::Error> {
    http.post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .build()
}

/// This host's name, for telling coordinators apart in alerts and spans.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(n: usize) -> Alert {
        Alert {
            kind: AlertKind::SagaStuck,
            at: "t".into(),
            instance: "i".into(),
            saga_id: Some(n.to_string()),
            workflow: None,
            step: None,
            participant: None,
            message: String::new(),
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_alert() {
        let queue = Queue {
            pending: Mutex::new(VecDeque::new()),
            capacity: 2,
            added: Notify::new(),
        };
        assert_eq!(queue.push(alert(1)), None);
        assert_eq!(queue.push(alert(2)), None);
        assert_eq!(queue.push(alert(3)), Some(alert(1)));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop(), Some(alert(2)));
        assert_eq!(queue.pop(), Some(alert(3)));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn client_errors_are_not_retried_but_overload_and_outages_are() {
        assert!(!AlertError::Status(400).is_retryable());
        assert!(!AlertError::Status(404).is_retryable());
        assert!(AlertError::Status(429).is_retryable());
        assert!(AlertError::Status(503).is_retryable());
        assert!(AlertError::Transport("refused".into()).is_retryable());
    }

    #[test]
    fn options_outside_their_ranges_name_the_field() {
        assert_eq!(AlertOptions::default().validate(), Ok(()));
        let bad = AlertOptions {
            webhook: Some("ftp://x".into()),
            ..AlertOptions::default()
        };
        assert_eq!(bad.validate().unwrap_err().option, "--alert-webhook");
        let bad = AlertOptions {
            max_backoff: Duration::from_millis(1),
            ..AlertOptions::default()
        };
        assert_eq!(bad.validate().unwrap_err().option, "alerts.max_backoff");
    }

    #[test]
    fn the_body_leaves_out_what_does_not_apply() {
        let json = serde_json::to_value(alert(7)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "saga_stuck", "at": "t", "instance": "i", "saga_id": "7",
                               "message": ""})
        );
    }
}
