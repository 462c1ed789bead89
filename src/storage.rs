//! Storage: per-node and per-container windows of points, rates, staleness and readiness.
//!
//! Writers ([`crate::scrape::BatchSink`]) hand in one node's decoded batch at a time; the node's windows and its
//! pods' computed usage are rebuilt off-lock and swapped in. Readers ([`crate::api::MetricsSource`]) clone `Arc`s
//! and never wait for a scrape. Time is an input: sample timestamps come from the kubelet and `now` from the
//! caller; this module never reads a clock. It knows nothing of HTTP.
//!
//! # Layout
//! - `point`: a point (CPU reading + memory/swap gauges) and the exact integer rate maths.
//! - `window`: rotation of a series' retained points; restart, fresh-container and retention rules.
//! - `state`: one node's immutable state (node window, pods sorted by name, containers sorted by name) and how a
//!   batch turns the previous state into the next one.
//! - `index`: (namespace, pod) → precomputed [`PodUsage`], choosing among nodes that report the same pod.
//!
//! # Concurrency
//! Writers are serialised by one mutex that also owns the name interner; a writer reads the node's previous
//! `Arc<NodeState>`, builds the next state and every pod's `Arc<PodUsage>` without holding any reader-visible
//! lock, then takes the two `RwLock`s (pod index, node map) only to insert a few dozen `Arc`s. Replaced values are
//! dropped after the locks are released. Readers take a read lock for one hash lookup and an `Arc` clone. No lock
//! is held across anything but map operations, and there is no `await` in this module. Building one node's
//! state costs microseconds, so serialising writers is cheap; a per-node writer gate would replace the single
//! mutex if that ever showed up in profiles.
//!
//! # Rules (details on the functions)
//! - Node: usable with CPU and memory present and non-zero; rate over the CPU samples' own timestamps; a counter
//!   decrease starts fresh; `kubelet_error` is a failed scrape (nothing changes).
//! - Containers: a pod with any unusable container is dropped for that scrape (old state kept, not served); fresh
//!   and restarted containers pair with a zero point at their start time; a pod is served only when every container
//!   has a rate, with the timestamp and window of its earliest container.
//! - No gap after a failed scrape: a window is served while `now − timestamp ≤ staleness`, and the retained point
//!   pairs with the next successful scrape (unless it is more than `staleness` older than the new sample).
//!
//! # Room for history
//! A series' CPU is a `window::Window`: the newest reading plus the older end of the current rate; gauges are kept
//! where they are served (node state, precomputed pod usage). History (15 minutes or more at resolution, see
//! `DESIGN.md`) adds points beside this, not instead of it: each `ContainerState` and `NodeSeries` gains an `Arc`
//! to a chain of append-only, compressed blocks (delta-of-delta timestamps, delta CPU counters, memory/swap
//! gauges), and `state::build` appends each new usable point to the open block while `Rules::next_*` keeps deciding
//! the served pair. A node's state is rebuilt per scrape, so sealed blocks are shared by `Arc` between successive
//! states and only the small open block is copied. Serving and readiness read only the window and the precomputed
//! usage, so they are unaffected; history readers walk the blocks of the state `Arc` they cloned, and a per-namespace
//! aggregate can be computed in the same pass that builds the pod usages.

mod index;
mod point;
mod state;
mod window;

#[cfg(test)]
mod tests;

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::api::{MetricsSource, NodeUsage, PodUsage};
use crate::scrape::BatchSink;
use crate::scrape::decode::NodeBatch;
use crate::time::TimestampMs;

use index::PodIndex;
use state::{Interner, NodeState};
use window::Rules;

/// Storage parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageConfig {
    /// Scrape resolution (`--metric-resolution`). A container younger than this at its sample time is "fresh" and
    /// is served after its first scrape, paired with a zero point at its start time.
    pub resolution: Duration,
    /// How long a window stays served after its timestamp: served while `now − timestamp ≤ staleness`. The caller
    /// computes the default, 2 × resolution + kubelet request timeout, so one failed scrape leaves no gap. A
    /// retained point more than this older than a new sample is not paired with it.
    pub staleness: Duration,
}

/// Stored points of every node and container, with precomputed usage for the API.
#[derive(Debug)]
pub struct Storage {
    rules: Rules,
    writer: Mutex<Writer>,
    nodes: RwLock<HashMap<Arc<str>, Arc<NodeState>>>,
    pods: RwLock<PodIndex>,
}

/// State only writers touch, behind the writer mutex.
#[derive(Debug, Default)]
struct Writer {
    interner: Interner,
    accepts_since_prune: usize,
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Storage {
    /// Empty storage with the given parameters.
    pub fn new(config: StorageConfig) -> Storage {
        Storage {
            rules: Rules {
                resolution_ms: duration_ms(config.resolution),
                staleness_ms: duration_ms(config.staleness),
            },
            writer: Mutex::new(Writer::default()),
            nodes: RwLock::new(HashMap::default()),
            pods: RwLock::new(PodIndex::default()),
        }
    }

    /// Points that can be served at `now_ms`: (nodes, containers), for `metrics_server_storage_points`.
    ///
    /// A pod reported by two nodes counts once (the served candidate).
    pub fn point_counts(&self, now_ms: TimestampMs) -> (u64, u64) {
        let nodes = read(&self.nodes)
            .values()
            .filter(|state| self.node_usage_of(state, now_ms).is_some())
            .count();
        let containers: usize = read(&self.pods)
            .winners()
            .filter(|c| self.is_fresh(c.usage.timestamp_ms, now_ms))
            .map(|c| c.usage.containers.len())
            .sum();
        (
            u64::try_from(nodes).unwrap_or(u64::MAX),
            u64::try_from(containers).unwrap_or(u64::MAX),
        )
    }

    fn is_fresh(&self, timestamp_ms: TimestampMs, now_ms: TimestampMs) -> bool {
        now_ms.saturating_sub(timestamp_ms) <= self.rules.staleness_ms
    }

    fn node_usage_of(&self, state: &NodeState, now_ms: TimestampMs) -> Option<NodeUsage> {
        let node = state.node.as_ref()?;
        let rate = node.window.rate()?;
        let timestamp_ms = node.window.timestamp_ms();
        self.is_fresh(timestamp_ms, now_ms).then(|| NodeUsage {
            timestamp_ms,
            window_ms: rate.window_ms,
            usage: point::usage(rate, node.memory_bytes, node.swap_bytes),
        })
    }

    /// Builds `node`'s next state from `batch` off-lock (under the writer mutex only) and swaps it in.
    fn update(&self, node: &Arc<str>, batch: NodeBatch<'_>) {
        let mut writer = lock(&self.writer);
        let old = read(&self.nodes).get(&**node).cloned();
        let update = state::build(&self.rules, old.as_deref(), batch, &mut writer.interner);

        let mut garbage = Vec::with_capacity(update.state.pods.len() + update.withdrawn.len());
        {
            let mut pods = write(&self.pods);
            for key in &update.withdrawn {
                pods.withdraw(node, &key.namespace, &key.name, &mut garbage);
            }
            for pod in &update.state.pods {
                if let Some(usage) = &pod.usage {
                    pods.serve(node, &pod.namespace, &pod.name, usage, &mut garbage);
                }
            }
        }
        let (replaced, node_count) = {
            let mut nodes = write(&self.nodes);
            (
                nodes.insert(Arc::clone(node), Arc::new(update.state)),
                nodes.len(),
            )
        };
        drop((garbage, replaced, old));
        writer.maybe_prune(node_count);
    }
}

impl Writer {
    /// Drops unused interned names about once per round over all nodes.
    fn maybe_prune(&mut self, node_count: usize) {
        self.accepts_since_prune += 1;
        if self.accepts_since_prune >= node_count.max(64) {
            self.accepts_since_prune = 0;
            self.interner.prune();
        }
    }
}

impl BatchSink for Storage {
    /// Stores one node's batch. A batch with `kubelet_error` is a failed scrape: everything stays as it was.
    fn accept(&self, node: &Arc<str>, batch: NodeBatch<'_>) {
        if batch.kubelet_error {
            tracing::debug!(node = %node, "kubelet reported a scrape error; keeping the node's previous points");
            return;
        }
        self.update(node, batch);
    }

    /// Forgets the node and withdraws its pods (another node's candidate for the same pod takes over).
    fn forget(&self, node: &str) {
        let _writer = lock(&self.writer);
        let Some(removed) = write(&self.nodes).remove(node) else {
            return;
        };
        let mut garbage = Vec::with_capacity(removed.pods.len());
        {
            let mut pods = write(&self.pods);
            for pod in removed.pods.iter().filter(|p| p.usage.is_some()) {
                pods.withdraw(node, &pod.namespace, &pod.name, &mut garbage);
            }
        }
        drop((garbage, removed));
    }
}

impl MetricsSource for Storage {
    fn node_usage(&self, node: &str, now_ms: TimestampMs) -> Option<NodeUsage> {
        let state = read(&self.nodes).get(node).cloned()?;
        self.node_usage_of(&state, now_ms)
    }

    fn pod_usage(&self, namespace: &str, pod: &str, now_ms: TimestampMs) -> Option<Arc<PodUsage>> {
        let pods = read(&self.pods);
        let candidate = pods.get(namespace, pod)?;
        self.is_fresh(candidate.usage.timestamp_ms, now_ms)
            .then(|| Arc::clone(&candidate.usage))
    }

    fn is_ready(&self, now_ms: TimestampMs) -> bool {
        let nodes = read(&self.nodes);
        let node_ready = nodes
            .values()
            .any(|state| self.node_usage_of(state, now_ms).is_some());
        let pod_ready = nodes.values().any(|state| {
            state
                .newest_pod_timestamp_ms
                .is_some_and(|ts| self.is_fresh(ts, now_ms))
        });
        node_ready && pod_ready
    }
}
