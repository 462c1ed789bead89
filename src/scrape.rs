//! Scraping: which kubelet to ask when, the HTTPS request, and decoding the answer into a [`decode::NodeBatch`].
//!
//! Each node is scraped at its own stable phase within the resolution over a kept-alive connection, with bounded
//! concurrency and a per-request deadline, so load is flat rather than one burst per tick. A failing node costs
//! only itself: its failure is counted and logged, never an abort of the loop. Results go to a [`BatchSink`]
//! (implemented by `storage`); this module knows nothing of how they are stored.

pub mod decode;

use std::sync::Arc;

/// Receives the outcome of each node scrape. Implemented by `storage`; called from scrape workers, so it must
/// not block for long.
pub trait BatchSink: Send + Sync + 'static {
    /// A node was scraped and decoded successfully (the batch may still hold no usable node point).
    fn accept(&self, node: &Arc<str>, batch: decode::NodeBatch);
    /// A node left the cluster (or the node selector): forget everything about it.
    fn forget(&self, node: &str);
}

/// The scrape loop's heartbeat, read by `/livez` (`metric-collection-timely`).
///
/// The scraper calls [`Heartbeat::beat`] each time a full round over all nodes' phases has started.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Unix ms of the last round start; 0 before the first.
    last_round_start_ms: std::sync::atomic::AtomicI64,
}

impl Heartbeat {
    /// Records that a round started at `now_ms`.
    pub fn beat(&self, now_ms: crate::time::TimestampMs) {
        self.last_round_start_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// metrics-server's rule: timely before the first round, and while `now − last start ≤ 1.5 × resolution`.
    pub fn is_timely(
        &self,
        now_ms: crate::time::TimestampMs,
        resolution: std::time::Duration,
    ) -> bool {
        let last = self
            .last_round_start_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let limit_ms = i64::try_from(resolution.as_millis() * 3 / 2).unwrap_or(i64::MAX);
        last == 0 || now_ms.saturating_sub(last) <= limit_ms
    }
}
