//! Wall-clock milliseconds derived from tokio's clock, so tests with paused time move the
//! coordinator's notion of "now" too. The engine never reads it; the runtime passes it in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::engine::Millis;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: Millis,
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        Clock {
            base_ms,
            base: Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        later(self.base_ms, self.base.elapsed())
    }

    /// The tokio instant at which `at` falls (now, if it has passed; about 30 years from now
    /// at the latest, so a far-away or saturated time never overflows an `Instant`).
    pub fn instant(&self, at: Millis) -> Instant {
        let since_base = Duration::from_millis(at.saturating_sub(self.base_ms));
        let latest = Instant::now() + FAR_FUTURE;
        self.base
            .checked_add(since_base)
            .map_or(latest, |i| i.min(latest))
    }
}

/// How far away "never" is for a timer: tokio's own far future.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now` plus `delay`, saturating: a huge delay means "never", not a time in the past.
pub fn later(now: Millis, delay: Duration) -> Millis {
    now.saturating_add(millis(delay))
}

/// A duration in whole milliseconds, saturating at `Millis::MAX`.
pub fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// RFC 3339 with milliseconds, UTC. Times past the year 9999 (a saturated "never") show as
/// that year's last millisecond.
pub fn rfc3339(at: Millis) -> String {
    const MAX: Millis = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at.min(MAX))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(Millis::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(later(5, Duration::from_millis(u64::MAX)), Millis::MAX);
        assert_eq!(later(5, Duration::MAX), Millis::MAX);
        assert_eq!(later(5, Duration::from_millis(7)), 12);
        assert_eq!(millis(Duration::MAX), Millis::MAX);
    }

    #[tokio::test]
    async fn a_saturated_time_is_a_far_instant_not_a_panic() {
        let clock = Clock::new();
        let far = clock.instant(Millis::MAX);
        assert!(far > Instant::now() + Duration::from_secs(86_400 * 365));
        assert!(clock.instant(0) <= Instant::now());
    }
}
