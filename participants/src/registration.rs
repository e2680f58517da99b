//! Registers a participant with the coordinator in the background.
//!
//! A participant must serve before the coordinator is reachable: after a crash the coordinator
//! may come back later than its participants, and branch calls for recovered sagas must not
//! wait for registration. So registration retries with capped exponential backoff and jitter
//! until a coordinator accepts it, logging every failure, while the server already runs.
//!
//! A cluster of coordinators shares one registry, so registering with any one of them is
//! registering with all: each attempt asks the coordinators in turn until one answers.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use sagas::{CoordinatorClient, ParticipantSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Delay before the first retry.
const MIN_DELAY: Duration = Duration::from_millis(100);
/// Cap on the delay between retries, so a coordinator that comes back is noticed quickly.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// The background registration task. Dropping it stops the retries.
#[derive(Debug)]
pub struct Registration {
    registered: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Registers with the first of `coordinators` that answers: the one that did, or the error of
/// the last tried (or a refusal, which asking another would not change).
async fn register_with_any<'a>(
    coordinators: &'a [CoordinatorClient],
    name: &str,
    spec: &ParticipantSpec,
) -> Result<&'a CoordinatorClient, sagas::ClientError> {
    let mut last = None;
    for coordinator in coordinators {
        match coordinator.put_participant(name, spec).await {
            Ok(_) => return Ok(coordinator),
            // Accepted, with an answer this SDK cannot read (a coordinator of another
            // version): the registration is stored all the same, so asking again would only
            // repeat it.
            Err(e) if e.was_accepted() => {
                tracing::warn!(participant = %name, coordinator = %coordinator.base_url(), error = %e, "registered, but the coordinator's answer could not be read");
                return Ok(coordinator);
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!(participant = %name, coordinator = %coordinator.base_url(), error = %e, "coordinator did not answer; trying the next");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one coordinator"))
}

impl Registration {
    /// Starts registering `spec` under `name` with any of `coordinators` (at least one); needs
    /// a tokio runtime.
    pub fn spawn(
        coordinators: Vec<CoordinatorClient>,
        name: String,
        spec: ParticipantSpec,
    ) -> Self {
        assert!(!coordinators.is_empty(), "registration needs a coordinator");
        let (done, registered) = watch::channel(false);
        let task = tokio::spawn(async move {
            let backoff = ExponentialBuilder::default()
                .with_min_delay(MIN_DELAY)
                .with_max_delay(MAX_DELAY)
                .with_jitter()
                .without_max_times();
            let result = (|| register_with_any(&coordinators, &name, &spec))
                .retry(backoff)
                // A refusal (an invalid spec, say) will not change by asking again.
                .when(sagas::ClientError::is_retryable)
                .notify(|err, retry_in| {
                    tracing::warn!(
                        participant = %name,
                        coordinators = coordinators.len(),
                        error = %err,
                        ?retry_in,
                        "registration failed; retrying"
                    );
                })
                .await;
            match result {
                Ok(coordinator) => {
                    tracing::info!(participant = %name, coordinator = %coordinator.base_url(), base_url = %spec.base_url, "registered with the coordinator");
                    let _ = done.send(true);
                }
                Err(err) => {
                    tracing::error!(participant = %name, error = %err, "registration gave up")
                }
            }
        });
        Registration { registered, task }
    }

    /// True once the coordinator accepted the registration.
    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Waits until the coordinator accepted the registration; false if it never will (the
    /// task was stopped). Bound it with `tokio::time::timeout`.
    pub async fn registered(&self) -> bool {
        let mut registered = self.registered.clone();
        registered.wait_for(|done| *done).await.is_ok()
    }

    /// Stops retrying.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}
