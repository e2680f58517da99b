//! Registers a participant with the coordinator in the background.
//!
//! A participant must serve before the coordinator is reachable: after a crash the coordinator
//! may come back later than its participants, and branch calls for recovered sagas must not
//! wait for registration. So registration retries with capped exponential backoff and jitter
//! until the coordinator accepts it, logging every failure, while the server already runs.

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

impl Registration {
    /// Starts registering `spec` under `name`; needs a tokio runtime.
    pub fn spawn(coordinator: CoordinatorClient, name: String, spec: ParticipantSpec) -> Self {
        let (done, registered) = watch::channel(false);
        let task = tokio::spawn(async move {
            let backoff = ExponentialBuilder::default()
                .with_min_delay(MIN_DELAY)
                .with_max_delay(MAX_DELAY)
                .with_jitter()
                .without_max_times();
            let result = (|| coordinator.put_participant(&name, &spec))
                .retry(backoff)
                // A refusal (an invalid spec, say) will not change by asking again.
                .when(sagas::ClientError::is_retryable)
                .notify(|err, retry_in| {
                    tracing::warn!(
                        participant = %name,
                        coordinator = %coordinator.base_url(),
                        error = %err,
                        ?retry_in,
                        "registration failed; retrying"
                    );
                })
                .await;
            match result {
                Ok(_) => {
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
