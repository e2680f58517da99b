//! Talking to a cluster of coordinators: any instance answers any request, so a client that
//! cannot reach one (killed, paused, restarting) asks the next.
//!
//! [`Coordinators`] is what the workload loops ([`crate::workload`]) send to: a single
//! [`CoordinatorClient`] always asks the same coordinator; a [`FailoverClient`] asks its
//! first choice, and on each retry (a transport error, `429`, `5xx`) the next instance in
//! turn. Resubmitting with the same idempotency key to another instance is safe: the key is
//! unique across the cluster.

use sagas::CoordinatorClient;

/// Where a request goes on each attempt.
pub trait Coordinators {
    /// The coordinator to ask on attempt `attempt` (0 for the first) of one request.
    fn for_attempt(&self, attempt: u32) -> &CoordinatorClient;
}

impl Coordinators for CoordinatorClient {
    fn for_attempt(&self, _attempt: u32) -> &CoordinatorClient {
        self
    }
}

/// The instances of a cluster, starting with a preferred one and moving to the next on
/// every retry.
#[derive(Debug, Clone)]
pub struct FailoverClient {
    instances: Vec<CoordinatorClient>,
    first: usize,
}

impl FailoverClient {
    /// Asks `instances[first]` first (wrapping), then the next ones in turn.
    ///
    /// # Panics
    /// If `instances` is empty.
    pub fn new(instances: Vec<CoordinatorClient>, first: usize) -> FailoverClient {
        assert!(!instances.is_empty(), "a failover client needs an instance");
        let first = first % instances.len();
        FailoverClient { instances, first }
    }

    /// The preferred instance.
    pub fn first(&self) -> &CoordinatorClient {
        &self.instances[self.first]
    }

    /// How many instances it knows.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Never: [`FailoverClient::new`] refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

impl Coordinators for FailoverClient {
    fn for_attempt(&self, attempt: u32) -> &CoordinatorClient {
        &self.instances[(self.first + attempt as usize) % self.instances.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_go_round_the_instances_from_the_preferred_one() {
        let instances: Vec<CoordinatorClient> = (0..3)
            .map(|i| CoordinatorClient::new(format!("http://127.0.0.1:{}", 7700 + i)))
            .collect();
        let client = FailoverClient::new(instances, 4);
        let asked: Vec<&str> = (0..4)
            .map(|attempt| client.for_attempt(attempt).base_url())
            .collect();
        assert_eq!(
            asked,
            [
                "http://127.0.0.1:7701",
                "http://127.0.0.1:7702",
                "http://127.0.0.1:7700",
                "http://127.0.0.1:7701"
            ]
        );
        assert_eq!(client.first().base_url(), "http://127.0.0.1:7701");
    }
}
