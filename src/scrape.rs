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
