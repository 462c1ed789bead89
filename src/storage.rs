//! Storage: per-node and per-container windows of points, rates, staleness and readiness.
//!
//! Writers ([`crate::scrape::BatchSink`]) hand in one node's decoded batch at a time; the node's next state (its
//! windows and, inline, what each pod and container is served with) is built off-lock and swapped in. Readers
//! ([`crate::api::MetricsSource`]) find where a pod is kept through the pod index and read it from that node's
//! state; they never wait for a scrape. Time is an input: sample timestamps come from the kubelet and `now` from
//! the caller; this module never reads a clock. It knows nothing of HTTP.
//!
//! # Layout
//! - `point`: a point (CPU reading + memory/swap gauges) and the exact integer rate maths.
//! - `window`: rotation of a series' retained points; restart, fresh-container and retention rules.
//! - `state`: one node's immutable state (node window, pods sorted by (namespace, name), containers sorted by name,
//!   each with what it is served with; their names in a table that successive states share while they stay the
//!   same) and how a batch turns the previous state into the next one.
//! - `index`: the node table (name → id → current state) and the pod index ((namespace, pod) → the nodes serving
//!   it and the pod's position in each), which holds no usage.
//!
//! # Concurrency
//! Writers are serialised by one mutex that also owns the name interner; a writer reads the node's previous
//! `Arc<NodeState>`, builds the next state without holding any reader-visible lock, then takes the write lock of
//! the shared maps once: to swap the node's `Arc` and, only when the node's set of served pods changed (or pods
//! were added or removed before served ones, moving them), to add, move or withdraw its entries in the pod index.
//! A steady-state scrape (same pods, all servable) does one hash lookup and one `Arc` swap under the lock and
//! allocates nothing per pod. The node table and the pod index sit behind the same `RwLock`, so a reader always
//! sees an index that matches the node states. The replaced state is dropped after the lock is released. Readers
//! take the read lock for a few lookups (pod index, candidate nodes' states, the pod at its recorded position) and
//! return a [`PodUsage`] whose containers are a range of the node's state, kept alive by one `Arc` clone (an
//! old state lives on until such readers drop it). No lock is held across anything but these lookups, and there
//! is no `await` in this module. Building one node's state costs microseconds, so serialising writers is cheap; a
//! per-node writer gate would replace the single mutex if that ever showed up in profiles.
//!
//! # Rules (details on the functions)
//! - Node: usable with CPU and memory present and non-zero; rate over the CPU samples' own timestamps; a counter
//!   decrease starts fresh; `kubelet_error` is a failed scrape (nothing changes).
//! - Containers: a pod with any unusable container is dropped for that scrape (old state kept, not served); fresh
//!   and restarted containers pair with a zero point at their start time; a pod is served only when every container
//!   has a rate, with the timestamp and window of its earliest container.
//! - A pod reported by several nodes is served from the node whose servable pod has the newer timestamp; on a tie,
//!   from the lexically smaller node name. The choice depends only on the stored states, never on arrival order.
//! - No gap after a failed scrape: a window is served while `now − timestamp ≤ staleness`, and the retained point
//!   pairs with the next successful scrape (unless it is more than `staleness` older than the new sample).
//!
//! # Room for history
//! A series' CPU is a `window::Window`: the newest reading plus the older end of the current rate; gauges and the
//! current rate are kept beside it in the node's state, where they are served from. History (15 minutes or more at
//! resolution, see `DESIGN.md`) adds points beside this, not instead of it: each `ContainerState` and `NodeSeries`
//! gains an `Arc` to a chain of append-only, compressed blocks (delta-of-delta timestamps, delta CPU counters,
//! memory/swap gauges), and `state::build` appends each new usable point to the open block while `Rules::next_*`
//! keeps deciding the served pair. A node's state is rebuilt per scrape, so sealed blocks are shared by `Arc`
//! between successive states and only the small open block is copied. Serving and readiness read only the window
//! and the served fields, so they are unaffected; history readers walk the blocks of the state `Arc` they cloned,
//! and a per-namespace aggregate can be computed in the same pass that builds the node's pods.

mod index;
mod point;
mod state;
mod window;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::api::{MetricsSource, NodeUsage, PodUsage};
use crate::scrape::BatchSink;
use crate::scrape::decode::NodeBatch;
use crate::time::TimestampMs;

use index::{Found, Location, NodeTable, PodIndex};
use state::{Interner, NodeState, PodState, Served};
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

/// Where storage can get a pod's name as an `Arc` someone already holds (the cluster index), so the name of each
/// of the many pods is kept once in the process rather than once per holder (≈ 5–8 MiB at 150,000 pods).
///
/// Asked only when a node reports a pod it did not report before, under storage's writer mutex: an implementation
/// must answer from memory, without blocking on anything that may wait for storage.
pub trait PodNames: Send + Sync + std::fmt::Debug {
    /// The shared name of pod `namespace/pod`, if known.
    fn pod_name(&self, namespace: &str, pod: &str) -> Option<Arc<str>>;
}

/// Stored points of every node and container, with what is served for each.
#[derive(Debug)]
pub struct Storage {
    rules: Rules,
    writer: Mutex<Writer>,
    shared: RwLock<Shared>,
}

/// State only writers touch, behind the writer mutex.
#[derive(Debug, Default)]
struct Writer {
    interner: Interner,
    accepts_since_prune: usize,
}

/// What readers see, behind one lock so that the pod index always matches the node states it points into.
#[derive(Debug, Default)]
struct Shared {
    nodes: NodeTable,
    pods: PodIndex,
}

/// One node's servable copy of a pod.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    node: &'a Arc<NodeState>,
    pod: &'a PodState,
    served: Served,
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

/// Names are shared `Arc`s, so the pointer comparison settles nearly every check without comparing bytes.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

// === impl Storage ===

impl Storage {
    /// Empty storage with the given parameters.
    pub fn new(config: StorageConfig) -> Storage {
        Storage::with_interner(config, Interner::default())
    }

    /// Empty storage that names new pods with `source`'s `Arc`s where it knows them (see [`PodNames`]).
    pub fn with_pod_names(config: StorageConfig, source: Arc<dyn PodNames>) -> Storage {
        Storage::with_interner(config, Interner::with_pod_names(source))
    }

    fn with_interner(config: StorageConfig, interner: Interner) -> Storage {
        Storage {
            rules: Rules {
                resolution_ms: duration_ms(config.resolution),
                staleness_ms: duration_ms(config.staleness),
            },
            writer: Mutex::new(Writer {
                interner,
                accepts_since_prune: 0,
            }),
            shared: RwLock::new(Shared::default()),
        }
    }

    /// Points that can be served at `now_ms`: (nodes, containers), for `metrics_server_storage_points`.
    ///
    /// A pod reported by two nodes counts once (the served candidate).
    pub fn point_counts(&self, now_ms: TimestampMs) -> (u64, u64) {
        let shared = read(&self.shared);
        let fresh_containers = |c: &Candidate<'_>| {
            if self.is_fresh(c.served.timestamp_ms, now_ms) {
                c.pod.containers(&c.node.containers).len()
            } else {
                0
            }
        };
        let nodes = shared
            .nodes
            .states()
            .filter(|state| self.node_usage_of(state, now_ms).is_some())
            .count();
        let mut containers: usize = shared
            .nodes
            .states()
            .flat_map(|node| node.pods.iter().filter_map(|pod| Candidate::of(node, pod)))
            .map(|c| fresh_containers(&c))
            .sum();
        // Each node counted its own copy of a pod served by several; keep only the served one.
        for found in shared.pods.shared() {
            let candidates = || shared.candidates(found);
            let all: usize = candidates().map(|c| fresh_containers(&c)).sum();
            let served = candidates()
                .reduce(Candidate::best)
                .map_or(0, |c| fresh_containers(&c));
            containers = containers.saturating_sub(all.saturating_sub(served));
        }
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

    /// Builds `node`'s next state from `batch` off-lock (under the writer mutex only) and swaps it in, touching
    /// the pod index only for pods the node started or stopped serving, or that moved in its pod list.
    fn update(&self, node: &Arc<str>, batch: NodeBatch<'_>) {
        let mut writer = lock(&self.writer);
        let old = read(&self.shared).nodes.get(node).cloned();
        let update = state::build(
            &self.rules,
            node,
            old.as_deref(),
            batch,
            &mut writer.interner,
        );
        let state = Arc::new(update.state);
        let (replaced, node_count) = {
            let mut shared = write(&self.shared);
            let Shared { nodes, pods } = &mut *shared;
            let (id, replaced) = match nodes.insert(node, state) {
                Ok(stored) => stored,
                Err(full) => {
                    drop(shared);
                    tracing::warn!(node = %node, error = %full, "not storing the node's points");
                    return;
                }
            };
            for key in &update.withdrawn {
                pods.withdraw(id, &key.namespace, &key.name);
            }
            for (key, at) in &update.served {
                let at = Location { node: id, pod: *at };
                pods.serve(at, &key.namespace, &key.name);
            }
            (replaced, nodes.len())
        };
        drop((replaced, old));
        writer.maybe_prune(node_count);
    }
}

// === impl Shared ===

impl Shared {
    /// The servable copy of the pod `found` kept at `at`.
    ///
    /// Positions in the index are exact (they change under the same lock as the states), so the binary search
    /// is a safeguard that does not run.
    fn candidate_at<'a>(&'a self, found: Found<'a>, at: Location) -> Option<Candidate<'a>> {
        let node = self.nodes.state(at.node)?;
        let at = at.pod as usize;
        let pod = match (node.pod_key(at), node.pods.get(at)) {
            (Some(k), Some(p))
                if same(&k.name, found.name) && same(&k.namespace, found.namespace) =>
            {
                p
            }
            _ => node.pod(found.namespace, found.name)?,
        };
        Candidate::of(node, pod)
    }

    /// The servable copies of the pod `found` on the nodes serving it.
    fn candidates<'a>(&'a self, found: Found<'a>) -> impl Iterator<Item = Candidate<'a>> + 'a {
        found
            .entry
            .locations()
            .filter_map(move |at| self.candidate_at(found, at))
    }

    /// The copy of `namespace/pod` to serve, whatever its age.
    fn served(&self, namespace: &str, pod: &str) -> Option<Candidate<'_>> {
        let found = self.pods.get(namespace, pod)?;
        if !found.entry.is_shared() {
            return self.candidate_at(found, found.entry.first);
        }
        self.candidates(found).reduce(Candidate::best)
    }
}

// === impl Candidate ===

impl<'a> Candidate<'a> {
    /// `pod` on `node`, if servable.
    fn of(node: &'a Arc<NodeState>, pod: &'a PodState) -> Option<Candidate<'a>> {
        Some(Candidate {
            node,
            pod,
            served: pod.served()?,
        })
    }

    /// The one of two copies to serve: the newer timestamp; on a tie, the smaller node name. Depends only on the
    /// two copies, so the choice among several does not depend on the order they are visited in.
    fn best(self, other: Candidate<'a>) -> Candidate<'a> {
        let (mine, theirs) = (self.served.timestamp_ms, other.served.timestamp_ms);
        if theirs > mine || (theirs == mine && other.node.name < self.node.name) {
            other
        } else {
            self
        }
    }
}

// === impl Writer ===

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
        let removed = {
            let mut shared = write(&self.shared);
            let Shared { nodes, pods } = &mut *shared;
            let Some((id, removed)) = nodes.remove(node) else {
                return;
            };
            for (key, _) in removed.named_pods().filter(|(_, p)| p.served().is_some()) {
                pods.withdraw(id, &key.namespace, &key.name);
            }
            removed
        };
        drop(removed);
    }
}

impl MetricsSource for Storage {
    fn node_usage(&self, node: &str, now_ms: TimestampMs) -> Option<NodeUsage> {
        let shared = read(&self.shared);
        self.node_usage_of(shared.nodes.get(node)?, now_ms)
    }

    fn pod_usage(&self, namespace: &str, pod: &str, now_ms: TimestampMs) -> Option<PodUsage> {
        let shared = read(&self.shared);
        let served = shared.served(namespace, pod)?;
        if !self.is_fresh(served.served.timestamp_ms, now_ms) {
            return None;
        }
        served.pod.usage(served.node)
    }

    fn is_ready(&self, now_ms: TimestampMs) -> bool {
        let shared = read(&self.shared);
        let node_ready = shared
            .nodes
            .states()
            .any(|state| self.node_usage_of(state, now_ms).is_some());
        let pod_ready = shared.nodes.states().any(|state| {
            state
                .newest_pod_timestamp_ms
                .is_some_and(|ts| self.is_fresh(ts, now_ms))
        });
        node_ready && pod_ready
    }
}
