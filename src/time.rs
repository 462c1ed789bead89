//! Time as data: millisecond Unix timestamps and the one place the wall clock is read.
//!
//! Storage and rate maths take timestamps and `now` as arguments and never read a clock; the API handler and the
//! scraper call [`now_ms`] once per request / per scrape and pass the value down.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). Kubelet sample timestamps use this unit.
pub type TimestampMs = i64;

/// Reads the wall clock once, in milliseconds since the Unix epoch.
///
/// A clock before 1970 is reported as 0 rather than a negative value; no kubelet sample can be that old.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
