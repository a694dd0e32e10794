//! Wall-clock helpers. Only drivers call these; sans-IO cores are handed the time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the TURN REST API counts expiry.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
