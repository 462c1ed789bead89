//! One node's stored state (its node window and its pods' container windows) and how a new batch turns the old
//! state into the next one, off-lock.
//!
//! Pure: takes the previous state by reference and the batch by value, returns a fresh state plus the pod-index
//! changes to apply. Never touches the shared maps, never reads a clock.

use foldhash::HashSet;
use std::sync::Arc;

use super::point::{CpuPoint, Point, usage};
use super::window::{Rules, Window};
use crate::api::{ContainerUsage, PodUsage};
use crate::scrape::decode::{ContainerSample, NodeBatch, NodeSample};
use crate::time::TimestampMs;

/// Everything stored for one node. Immutable once built; replaced whole (behind an `Arc`) on each scrape.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    /// The node's own series, once a usable node point was seen (kept across unusable samples and failures).
    pub(crate) node: Option<NodeSeries>,
    /// The node's pods, sorted by (namespace, name).
    pub(crate) pods: Vec<PodState>,
    /// All pods' containers, pod after pod (one allocation per node rather than one per pod); each [`PodState`]
    /// holds its range.
    pub(crate) containers: Vec<ContainerState>,
    /// The newest timestamp of a servable pod of this node, in ms since the epoch (readiness without a pod scan).
    pub(crate) newest_pod_timestamp_ms: Option<TimestampMs>,
}

/// A node's CPU window and its newest gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeSeries {
    /// The CPU window.
    pub(crate) window: Window,
    /// Newest memory working set, in bytes.
    pub(crate) memory_bytes: u64,
    /// Newest swap usage, in bytes, when reported.
    pub(crate) swap_bytes: Option<u64>,
}

/// One pod as reported by one node.
#[derive(Debug, Clone)]
pub(crate) struct PodState {
    /// Namespace (interned).
    pub(crate) namespace: Arc<str>,
    /// Pod name (shared with the pod index).
    pub(crate) name: Arc<str>,
    /// Start of this pod's containers (sorted by name) in [`NodeState::containers`].
    first_container: u32,
    /// End (exclusive) of this pod's containers in [`NodeState::containers`].
    end_container: u32,
    /// The pod's usage, precomputed when every container has a rate.
    pub(crate) usage: Option<Arc<PodUsage>>,
}

impl PodState {
    /// This pod's containers, sorted by name, out of its node's `containers`.
    pub(crate) fn containers<'a>(&self, all: &'a [ContainerState]) -> &'a [ContainerState] {
        all.get(self.first_container as usize..self.end_container as usize)
            .unwrap_or(&[])
    }
}

/// One container's retained CPU points (its gauges live only in the pod's precomputed usage).
#[derive(Debug, Clone)]
pub(crate) struct ContainerState {
    /// Container name (interned).
    pub(crate) name: Arc<str>,
    /// `container_start_time_seconds` of the newest point, in ms since the epoch.
    pub(crate) start_time_ms: Option<TimestampMs>,
    /// The retained points.
    pub(crate) window: Window,
}

/// A pod's identity in the pod index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodKey {
    /// Namespace.
    pub(crate) namespace: Arc<str>,
    /// Pod name.
    pub(crate) name: Arc<str>,
}

/// The result of applying one batch to a node: its next state (whose pods with usage are the ones it serves) and
/// the pods it no longer serves.
#[derive(Debug)]
pub(crate) struct Update {
    /// The node's next state.
    pub(crate) state: NodeState,
    /// Pods this node served before and no longer does (remove this node's candidate).
    pub(crate) withdrawn: Vec<PodKey>,
}

/// Interned namespace and container names: one `Arc<str>` per distinct name across all nodes.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared `Arc<str>` for `name`, created on first use.
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&shared));
        shared
    }

    /// Drops names nothing else refers to any more.
    pub(crate) fn prune(&mut self) {
        self.names.retain(|name| Arc::strong_count(name) > 1);
    }

    /// Number of interned names.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// A usable node point: CPU and memory present and non-zero, timestamp after the epoch.
fn node_point(node: &NodeSample) -> Option<Point> {
    let cpu = node.cpu?;
    let memory = node.memory?;
    let usable = cpu.cumulative_cpu_ns > 0 && memory.bytes > 0 && cpu.timestamp_ms > 0;
    usable.then(|| Point {
        cpu: CpuPoint {
            timestamp_ms: cpu.timestamp_ms,
            cumulative_cpu_ns: cpu.cumulative_cpu_ns,
        },
        memory_bytes: memory.bytes,
        swap_bytes: node.swap.map(|s| s.bytes),
    })
}

/// A usable container point (same rule as a node); `None` makes the whole pod unusable for this scrape.
fn container_point(c: &ContainerSample<'_>) -> Option<Point> {
    node_point(&NodeSample {
        cpu: c.cpu,
        memory: c.memory,
        swap: c.swap,
    })
}

fn sample_key<'a>(c: &'a ContainerSample<'_>) -> (&'a str, &'a str, &'a str) {
    (&c.namespace, &c.pod, &c.container)
}

/// Sorts containers by (namespace, pod, container) if the decoder did not, keeping the last of duplicates.
fn normalise(containers: &mut Vec<ContainerSample<'_>>) {
    if !containers.is_sorted_by(|a, b| sample_key(a) <= sample_key(b)) {
        containers.sort_by(|a, b| sample_key(a).cmp(&sample_key(b)));
    }
    containers.dedup_by(|later, earlier| {
        let duplicate = sample_key(later) == sample_key(earlier);
        if duplicate {
            std::mem::swap(later, earlier);
        }
        duplicate
    });
}

/// Applies one successful batch to a node's previous state (`None` for a node not seen before).
pub(crate) fn build(
    rules: &Rules,
    old: Option<&NodeState>,
    batch: NodeBatch<'_>,
    interner: &mut Interner,
) -> Update {
    let old_node = old.and_then(|o| o.node.as_ref());
    let node = match node_point(&batch.node) {
        Some(point) => Some(NodeSeries {
            window: rules.next_node(old_node.map(|n| &n.window), point.cpu),
            memory_bytes: point.memory_bytes,
            swap_bytes: point.swap_bytes,
        }),
        None => old_node.copied(),
    };

    let mut containers = batch.containers;
    normalise(&mut containers);
    let old_pods: &[PodState] = old.map_or(&[], |o| &o.pods);
    let old_containers: &[ContainerState] = old.map_or(&[], |o| &o.containers);
    let mut pods = Vec::with_capacity(old_pods.len().max(8));
    let mut next_containers = Vec::with_capacity(containers.len());
    let mut withdrawn = Vec::new();
    let mut withdraw = |pod: &PodState| {
        if pod.usage.is_some() {
            withdrawn.push(PodKey {
                namespace: Arc::clone(&pod.namespace),
                name: Arc::clone(&pod.name),
            });
        }
    };

    let mut next_old = 0;
    let mut start = 0;
    while let Some(first) = containers.get(start) {
        let (namespace, pod) = (&*first.namespace, &*first.pod);
        let len = containers[start..]
            .iter()
            .take_while(|c| c.namespace == namespace && c.pod == pod)
            .count();
        let group = &containers[start..start + len];
        start += len;

        while let Some(gone) = old_pods
            .get(next_old)
            .filter(|o| (&*o.namespace, &*o.name) < (namespace, pod))
        {
            withdraw(gone);
            next_old += 1;
        }
        let matched = old_pods
            .get(next_old)
            .filter(|o| &*o.namespace == namespace && &*o.name == pod);
        if matched.is_some() {
            next_old += 1;
        }
        let old = matched.map(|o| (o, o.containers(old_containers)));
        let next = build_pod(
            rules,
            old,
            namespace,
            pod,
            group,
            interner,
            &mut next_containers,
        );
        if next.as_ref().is_none_or(|p| p.usage.is_none())
            && let Some(before) = matched
        {
            withdraw(before);
        }
        pods.extend(next);
    }
    for gone in old_pods.iter().skip(next_old) {
        withdraw(gone);
    }

    let newest_pod_timestamp_ms = pods
        .iter()
        .filter_map(|p| Some(p.usage.as_ref()?.timestamp_ms))
        .max();
    Update {
        state: NodeState {
            node,
            pods,
            containers: next_containers,
            newest_pod_timestamp_ms,
        },
        withdrawn,
    }
}

/// The next state of one pod from its containers' samples (sorted by name, non-empty), appending its containers
/// to `out`. `old` is the pod's previous state with its containers.
///
/// If any container is unusable (missing or zero CPU or memory), the pod is dropped for this scrape: the previous
/// state is kept unchanged but not served, and a pod never seen before is not stored at all.
fn build_pod(
    rules: &Rules,
    old: Option<(&PodState, &[ContainerState])>,
    namespace: &str,
    pod: &str,
    group: &[ContainerSample<'_>],
    interner: &mut Interner,
    out: &mut Vec<ContainerState>,
) -> Option<PodState> {
    let old_containers = old.map_or(&[][..], |(_, containers)| containers);
    let start = out.len();
    let mut next_old = 0;
    let mut usage = PodUsageBuilder::with_capacity(group.len());
    for sample in group {
        let Some(point) = container_point(sample) else {
            out.truncate(start);
            let (before, containers) = old?;
            out.extend_from_slice(containers);
            return pod_state(
                Arc::clone(&before.namespace),
                Arc::clone(&before.name),
                start,
                out,
                None,
            );
        };
        while old_containers
            .get(next_old)
            .is_some_and(|o| *o.name < *sample.container)
        {
            next_old += 1;
        }
        let matched = old_containers
            .get(next_old)
            .filter(|o| *o.name == *sample.container);
        let name = match matched {
            Some(o) => Arc::clone(&o.name),
            None => interner.intern(&sample.container),
        };
        let old_window = matched.map(|o| (&o.window, o.start_time_ms));
        let window = rules.next_container(old_window, point.cpu, sample.start_time_ms);
        usage.add(&name, &window, &point);
        out.push(ContainerState {
            name,
            start_time_ms: sample.start_time_ms,
            window,
        });
    }
    let (namespace, name) = match old {
        Some((before, _)) => (Arc::clone(&before.namespace), Arc::clone(&before.name)),
        None => (interner.intern(namespace), Arc::from(pod)),
    };
    pod_state(namespace, name, start, out, usage.finish().map(Arc::new))
}

/// A pod whose containers are `out[start..]`; `None` (and the containers removed) if the range does not fit `u32`,
/// which would take over four billion containers on one node.
fn pod_state(
    namespace: Arc<str>,
    name: Arc<str>,
    start: usize,
    out: &mut Vec<ContainerState>,
    usage: Option<Arc<PodUsage>>,
) -> Option<PodState> {
    match (u32::try_from(start), u32::try_from(out.len())) {
        (Ok(first_container), Ok(end_container)) => Some(PodState {
            namespace,
            name,
            first_container,
            end_container,
            usage,
        }),
        _ => {
            out.truncate(start);
            None
        }
    }
}

/// Collects a pod's usage container by container; yields nothing if any container has no rate.
struct PodUsageBuilder {
    /// Containers so far (name order); `None` once a container had no rate.
    containers: Option<Vec<ContainerUsage>>,
    /// (timestamp, window) of the earliest container so far, in ms.
    earliest: Option<(TimestampMs, i64)>,
}

impl PodUsageBuilder {
    fn with_capacity(containers: usize) -> Self {
        PodUsageBuilder {
            containers: Some(Vec::with_capacity(containers)),
            earliest: None,
        }
    }

    /// Adds a container whose window is `window` and newest sample `point`.
    fn add(&mut self, name: &Arc<str>, window: &Window, point: &Point) {
        let Some(out) = &mut self.containers else {
            return;
        };
        let Some(rate) = window.rate() else {
            self.containers = None;
            return;
        };
        let timestamp_ms = window.timestamp_ms();
        let earlier = self.earliest.is_none_or(|(ts, window_ms)| {
            timestamp_ms < ts || (timestamp_ms == ts && rate.window_ms > window_ms)
        });
        if earlier {
            self.earliest = Some((timestamp_ms, rate.window_ms));
        }
        let usage = usage(rate, point.memory_bytes, point.swap_bytes);
        out.push(ContainerUsage {
            name: Arc::clone(name),
            usage,
        });
    }

    /// The pod's usage: containers in name order; timestamp and window of the container with the earliest
    /// timestamp (ties: the longest window).
    fn finish(self) -> Option<PodUsage> {
        let (timestamp_ms, window_ms) = self.earliest?;
        Some(PodUsage {
            timestamp_ms,
            window_ms,
            containers: self.containers?,
        })
    }
}
