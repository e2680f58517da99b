//! Wall-clock milliseconds derived from tokio's clock, so tests with paused time move the
//! coordinator's notion of "now" too. The engine never reads it; the runtime passes it in.

use std::time::{SystemTime, UNIX_EPOCH};

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
        self.base_ms + self.base.elapsed().as_millis() as Millis
    }

    /// The tokio instant at which `at` falls (now, if it has passed).
    pub fn instant(&self, at: Millis) -> Instant {
        self.base + std::time::Duration::from_millis(at.saturating_sub(self.base_ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(at)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
