//! Every "now" of the crate, in the three shapes the stores use: epoch milliseconds (claims and
//! deadlines), epoch seconds (TTL attributes, token claims, presign windows) and fixed-width
//! RFC 3339 text (item timestamps, where text order must be time order).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock reads before it).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock reads before it).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Fixed-width RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.123Z`), so text order is
/// time order.
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_shapes_agree() {
        let (ms, secs, text) = (now_ms(), now_secs(), timestamp_now());
        assert!((ms / 1000 - secs as i64).abs() <= 1);
        assert_eq!(text.len(), "2026-01-02T03:04:05.123Z".len(), "{text}");
        let year: i64 = text[..4].parse().unwrap();
        assert_eq!(year, 1970 + secs as i64 / 31_556_952, "{text}");
    }
}
