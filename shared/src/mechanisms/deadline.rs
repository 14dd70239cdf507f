//! The invocation's deadline, in the two forms the layers need: an `Instant` for timeouts and
//! epoch milliseconds for idempotency claims (which other invocations read).
//!
//! Lambda gives the deadline as epoch milliseconds. `cargo lambda watch` (make dev) sends its
//! invoke timeout (600000) in that field instead, which would put every deadline in 1970 and make
//! every claim lapse at once; a value that is no epoch time of this century is read as a duration.

use std::time::{Duration, Instant};

use crate::clock::now_ms;

/// Lambda's longest timeout: no deadline is further away than this.
pub const MAX_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// 2001-09-09 in epoch milliseconds: a "deadline" below this is a duration (see
/// [`Deadline::from_epoch_ms`]).
const RELATIVE_BELOW_MS: u64 = 1_000_000_000_000;

/// The invocation's deadline in the two forms the layers need: an `Instant` for timeouts and
/// epoch milliseconds for the idempotency claim (which other invocations read).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// When the invocation must have answered, on this process's monotonic clock.
    pub at: Instant,
    /// The same moment in epoch milliseconds, which other invocations can compare.
    pub epoch_ms: i64,
}

impl Deadline {
    /// From the Lambda context's deadline (epoch milliseconds). `cargo lambda watch` sends its
    /// invoke timeout there instead (600000): a value that is no epoch time of this century is
    /// read as milliseconds from now.
    pub fn from_epoch_ms(deadline_ms: u64) -> Self {
        if deadline_ms < RELATIVE_BELOW_MS {
            return Self::after(Duration::from_millis(deadline_ms));
        }
        let now = now_ms();
        let latest = now.saturating_add(MAX_INVOCATION.as_millis() as i64);
        let epoch_ms = i64::try_from(deadline_ms).unwrap_or(i64::MAX).min(latest);
        let left = u64::try_from(epoch_ms.saturating_sub(now)).unwrap_or(0);
        Self { at: Instant::now() + Duration::from_millis(left), epoch_ms }
    }

    /// `d` from now (at most [`MAX_INVOCATION`]).
    pub fn after(d: Duration) -> Self {
        let d = d.min(MAX_INVOCATION);
        Self { at: Instant::now() + d, epoch_ms: now_ms().saturating_add(d.as_millis() as i64) }
    }

    /// Time left until the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_from_the_lambda_context() {
        let d = Deadline::from_epoch_ms((now_ms() + 5_000) as u64);
        let left = d.remaining();
        assert!(left > Duration::from_millis(4_800) && left <= Duration::from_secs(5), "{left:?}");
        let past = Deadline::from_epoch_ms((now_ms() - 1_000) as u64);
        assert_eq!(past.remaining(), Duration::ZERO);
        // cargo lambda watch's "deadline" is its timeout.
        let relative = Deadline::from_epoch_ms(600_000);
        assert!(relative.remaining() > Duration::from_secs(599), "{:?}", relative.remaining());
        assert!((relative.epoch_ms - now_ms() - 600_000).abs() < 100);
        // Nonsense far in the future is capped rather than overflowing.
        let capped = Deadline::from_epoch_ms(u64::MAX);
        assert!(capped.remaining() <= MAX_INVOCATION);
        assert!(capped.epoch_ms <= now_ms() + MAX_INVOCATION.as_millis() as i64);
        let after = Deadline::after(Duration::from_secs(2));
        assert!((after.epoch_ms - now_ms() - 2_000).abs() < 100);
    }
}
