//! Waiting for a condition with a deadline, never for a fixed time: a test that sleeps "long
//! enough" passes on a quiet machine and fails (or proves nothing) on a loaded one.

use std::time::{Duration, Instant};

/// Calls `check` every `interval` until it returns `Some`, and returns that. Fails with
/// `what` and the time waited once `timeout` has passed, or with `check`'s own error.
pub async fn until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}, in vain"
        );
        tokio::time::sleep(interval).await;
    }
}
