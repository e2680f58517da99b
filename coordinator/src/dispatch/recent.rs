//! The last calls made to one participant, for the error rate and latency operators see
//! (`GET /v1/participants/{name}`, the dashboard): a bounded window, so a participant that
//! recovered stops looking sick after a few hundred calls, without a clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use sagas::api::RecentCalls;

/// How many calls the window keeps.
pub const WINDOW: usize = 256;

/// The outcome and latency of each of the last [`WINDOW`] calls sent (calls refused by the
/// breaker or the bulkhead never reached the participant and are not counted).
#[derive(Debug, Default)]
pub struct Recent {
    /// `(failed, latency in microseconds)`, oldest first.
    calls: Mutex<VecDeque<(bool, u64)>>,
}

impl Recent {
    /// Records a call that reached (or tried to reach) the participant.
    pub fn record(&self, failed: bool, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut calls = self.calls.lock().expect("recent calls lock poisoned");
        if calls.len() == WINDOW {
            calls.pop_front();
        }
        calls.push_back((failed, micros));
    }

    /// The window summarised; latencies are `None` before the first call.
    pub fn summary(&self) -> RecentCalls {
        let calls = self.calls.lock().expect("recent calls lock poisoned");
        let mut latencies: Vec<u64> = calls.iter().map(|&(_, micros)| micros).collect();
        let failed = calls.iter().filter(|&&(failed, _)| failed).count();
        drop(calls);
        latencies.sort_unstable();
        // Nearest-rank percentile, in milliseconds with microsecond resolution.
        let percentile = |p: usize| {
            let rank = (latencies.len() * p).div_ceil(100).max(1) - 1;
            latencies.get(rank).map(|&micros| micros as f64 / 1000.0)
        };
        RecentCalls {
            calls: latencies.len() as u64,
            failed: failed as u64,
            error_rate: if latencies.is_empty() {
                0.0
            } else {
                failed as f64 / latencies.len() as f64
            },
            latency_p50_ms: percentile(50),
            latency_p99_ms: percentile(99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_the_last_calls_only() {
        let recent = Recent::default();
        assert_eq!(recent.summary().latency_p50_ms, None);
        for i in 1..=100u64 {
            recent.record(i % 10 == 0, Duration::from_millis(i));
        }
        let summary = recent.summary();
        assert_eq!((summary.calls, summary.failed), (100, 10));
        assert!((summary.error_rate - 0.1).abs() < 1e-9);
        assert_eq!(summary.latency_p50_ms, Some(50.0));
        assert_eq!(summary.latency_p99_ms, Some(99.0));
        // A recovered participant: the failures leave the window.
        for _ in 0..WINDOW {
            recent.record(false, Duration::from_micros(1500));
        }
        let summary = recent.summary();
        assert_eq!((summary.calls, summary.failed), (WINDOW as u64, 0));
        assert_eq!(summary.latency_p99_ms, Some(1.5));
    }
}
