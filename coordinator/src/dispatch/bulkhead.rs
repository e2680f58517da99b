//! A bulkhead per participant: at most `max_concurrency` calls in flight and at most
//! `queue_capacity` waiting, so a hung participant ties up only its own slots, never the
//! sagas that do not touch it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BulkheadRefusal {
    #[error("bulkhead queue is full ({0} waiting)")]
    QueueFull(u64),
    #[error("no bulkhead slot within {0} ms")]
    WaitedTooLong(u64),
}

pub struct Bulkhead {
    slots: Arc<Semaphore>,
    queue_capacity: u64,
    queued: AtomicU64,
    in_flight: Arc<AtomicU64>,
    /// The participant's `coordinator_bulkhead_queued` and `_in_flight` gauges, moved with
    /// the counters above. Deltas, not values: a lane rebuilt for a new policy and the old
    /// one's calls still in flight add up.
    queued_gauge: Gauge,
    in_flight_gauge: Arc<Gauge>,
}

/// A slot; freed on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicU64>,
    in_flight_gauge: Arc<Gauge>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_gauge.decrement(1.0);
    }
}

impl Bulkhead {
    /// At most `max_concurrency` calls in flight and `queue_capacity` waiting; `gauges` are
    /// the participant's (queued, in flight) gauges.
    pub fn new(max_concurrency: u32, queue_capacity: u32, gauges: (Gauge, Gauge)) -> Bulkhead {
        Bulkhead {
            slots: Arc::new(Semaphore::new(max_concurrency.max(1) as usize)),
            queue_capacity: u64::from(queue_capacity),
            queued: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            queued_gauge: gauges.0,
            in_flight_gauge: Arc::new(gauges.1),
        }
    }

    /// A slot now, or after waiting in the queue at most `wait`.
    pub async fn enter(&self, wait: Duration) -> Result<Slot, BulkheadRefusal> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.queued.fetch_add(1, Ordering::Relaxed);
                if queued >= self.queue_capacity {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    return Err(BulkheadRefusal::QueueFull(queued));
                }
                self.queued_gauge.increment(1.0);
                let acquired = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.queued_gauge.decrement(1.0);
                match acquired {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(BulkheadRefusal::WaitedTooLong(wait.as_millis() as u64)),
                }
            }
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_gauge.increment(1.0);
        Ok(Slot {
            _permit: permit,
            in_flight: self.in_flight.clone(),
            in_flight_gauge: self.in_flight_gauge.clone(),
        })
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounds_concurrency_and_queue() {
        let bulkhead = Arc::new(Bulkhead::new(2, 1, (Gauge::noop(), Gauge::noop())));
        let a = bulkhead.enter(Duration::from_secs(1)).await.unwrap();
        let _b = bulkhead.enter(Duration::from_secs(1)).await.unwrap();
        assert_eq!(bulkhead.in_flight(), 2);
        let waiting = {
            let bulkhead = bulkhead.clone();
            tokio::spawn(async move { bulkhead.enter(Duration::from_secs(10)).await.map(|_| ()) })
        };
        while bulkhead.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            bulkhead.enter(Duration::from_secs(1)).await.err(),
            Some(BulkheadRefusal::QueueFull(1))
        );
        drop(a);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        let _c = bulkhead.enter(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            bulkhead.enter(Duration::from_millis(50)).await.err(),
            Some(BulkheadRefusal::WaitedTooLong(50))
        );
    }
}
