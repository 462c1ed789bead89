//! One node's stored state (its node window, its pods, and each container's window and newest gauges) and how a
//! new batch turns the old state into the next one, off-lock.
//!
//! A pod's served usage lives inline: the pod keeps the (timestamp, window) it is served with, each container the
//! rate and gauges it is served with. [`PodState::usage`] hands a reader a [`PodUsage`] whose containers are a range
//! of the node's state (a [`ContainerTable`]), so neither a scrape nor a read copies a pod's containers. Building
//! the next state allocates per node (the pod and container vectors), not per pod.
//!
//! Pure: takes the previous state by reference and the batch by value, returns a fresh state plus what the pod
//! index must learn (pods the node started or stopped serving, and served pods whose position in the node's sorted
//! pods moved). Never touches the shared maps, never reads a clock.

use foldhash::HashSet;
use std::sync::Arc;

use super::PodNames;
use super::point::{CpuPoint, Point, Rate};
use super::window::{Rules, Window};
use crate::api::{ContainerTable, ContainerView, Containers, PodUsage, Usage};
use crate::scrape::decode::{ContainerSample, NodeBatch, NodeSample};
use crate::time::TimestampMs;

/// Everything stored for one node. Immutable once built; replaced whole (behind an `Arc`) on each scrape.
#[derive(Debug)]
pub(crate) struct NodeState {
    /// The node's name (the pod index's tie-break between nodes reporting the same pod).
    pub(crate) name: Arc<str>,
    /// The node's own series, once a usable node point was seen (kept across unusable samples and failures).
    pub(crate) node: Option<NodeSeries>,
    /// The node's pods, sorted by (namespace, name); their names are `names.pods`, position for position.
    pub(crate) pods: Vec<PodState>,
    /// All pods' containers, pod after pod (one allocation per node rather than one per pod); each [`PodState`]
    /// holds its range. Their names are `names.containers`, position for position.
    pub(crate) containers: Vec<ContainerState>,
    /// The names of `pods` and `containers`, shared with the node's previous state while they are the same.
    pub(crate) names: Arc<Names>,
    /// The newest timestamp of a servable pod of this node, in ms since the epoch (readiness without a pod scan).
    pub(crate) newest_pod_timestamp_ms: Option<TimestampMs>,
}

impl ContainerTable for NodeState {
    fn container(&self, index: usize) -> Option<ContainerView<'_>> {
        let c = self.containers.get(index)?;
        Some(ContainerView {
            name: self.names.containers.get(index)?,
            usage: c.usage(),
        })
    }
}

impl NodeState {
    /// The pod `namespace/name`, by binary search of the sorted pods.
    pub(crate) fn pod(&self, namespace: &str, name: &str) -> Option<&PodState> {
        let at = self
            .names
            .pods
            .binary_search_by(|p| (&*p.namespace, &*p.name).cmp(&(namespace, name)))
            .ok()?;
        self.pods.get(at)
    }

    /// The names of the pod at position `at` of `pods`.
    pub(crate) fn pod_key(&self, at: usize) -> Option<&PodKey> {
        self.names.pods.get(at)
    }

    /// Each pod with its names.
    pub(crate) fn named_pods(&self) -> impl Iterator<Item = (&PodKey, &PodState)> {
        self.names.pods.iter().zip(&self.pods)
    }
}

/// The names of one node's pods and containers, parallel to [`NodeState::pods`] and [`NodeState::containers`].
///
/// Kept apart from the values that change every scrape, and shared (one `Arc`) by successive states of a node while
/// its pods and containers stay the same, which is every scrape in a steady state: building the next state then
/// clones and drops no name. Held inline, each pod's two names and each container's name were cloned into the new
/// state and dropped with the old one, two atomic read-modify-writes per name and scrape, on cache lines that are
/// cold (a pod's name) or shared by every node (an interned container name).
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Each pod's namespace (interned) and name (shared with the pod index).
    pub(crate) pods: Vec<PodKey>,
    /// Each container's name (interned).
    pub(crate) containers: Vec<Arc<str>>,
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

/// The `timestamp_ms` of a [`PodState`] that is not servable. Served timestamps are after the epoch (an unusable
/// point is one at or before it), so this value is never a real one; inline rather than an `Option`, which would
/// cost 8 more bytes per pod.
const NOT_SERVED: TimestampMs = TimestampMs::MIN;

/// One pod as reported by one node (24 bytes; its names are in the node's [`Names`]).
#[derive(Debug, Clone)]
pub(crate) struct PodState {
    /// Start of this pod's containers (sorted by name) in [`NodeState::containers`].
    first_container: u32,
    /// End (exclusive) of this pod's containers in [`NodeState::containers`].
    end_container: u32,
    /// Timestamp of the served usage, in ms since the epoch: that of the earliest container; [`NOT_SERVED`]
    /// unless every container has a rate.
    timestamp_ms: TimestampMs,
    /// Window of the served usage, in ms: that of the same container (> 0 when served).
    window_ms: i64,
}

/// When and over which window a servable pod's usage was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Served {
    /// End of the window, in ms since the epoch (the earliest container's newest sample).
    pub(crate) timestamp_ms: TimestampMs,
    /// Length of the window, in ms (> 0).
    pub(crate) window_ms: i64,
}

impl Served {
    /// Whether `self` is the earlier of the two, for a pod's timestamp: earlier timestamp, then longer window.
    fn is_earlier_than(&self, other: &Served) -> bool {
        self.timestamp_ms < other.timestamp_ms
            || (self.timestamp_ms == other.timestamp_ms && self.window_ms > other.window_ms)
    }
}

impl PodState {
    /// This pod's containers, sorted by name, out of its node's `containers`.
    pub(crate) fn containers<'a>(&self, all: &'a [ContainerState]) -> &'a [ContainerState] {
        all.get(self.range()).unwrap_or(&[])
    }

    /// The positions of this pod's containers in its node's `containers`.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.first_container as usize..self.end_container as usize
    }

    /// The timestamp and window the pod is served with, when every container has a rate.
    pub(crate) fn served(&self) -> Option<Served> {
        (self.timestamp_ms != NOT_SERVED).then_some(Served {
            timestamp_ms: self.timestamp_ms,
            window_ms: self.window_ms,
        })
    }

    /// The pod's usage, its containers read from `node` (this pod's node); `None` when not servable.
    pub(crate) fn usage(&self, node: &Arc<NodeState>) -> Option<PodUsage> {
        let served = self.served()?;
        Some(PodUsage {
            timestamp_ms: served.timestamp_ms,
            window_ms: served.window_ms,
            containers: Containers::new(Arc::clone(node) as Arc<dyn ContainerTable>, self.range()),
        })
    }
}

/// The start time of a [`ContainerState`] whose kubelet reported none. Decode rejects negative start times, so no
/// real one is this far before the epoch.
const NO_START_TIME: TimestampMs = TimestampMs::MIN;

/// The swap of a [`ContainerState`] whose kubelet reported none. Decode rejects values above `i64::MAX`, so no real
/// reading is this large (a batch built by hand with exactly `u64::MAX` bytes of swap would read back as none).
const NO_SWAP: u64 = u64::MAX;

/// One container's retained CPU points and what it is served with (64 bytes; its name is in the node's [`Names`];
/// optional fields use sentinels, as an `Option<i64>` would cost 16 bytes).
#[derive(Debug, Clone)]
pub(crate) struct ContainerState {
    /// The retained points.
    window: Window,
    /// `container_start_time_seconds` of the newest point, in ms since the epoch; [`NO_START_TIME`] when absent.
    start_time_ms: TimestampMs,
    /// CPU rate over `window`, in nanocores; 0 when the window has no rate (its pod is then not served).
    cpu_nanocores: u64,
    /// Memory working set of the newest point, in bytes.
    memory_bytes: u64,
    /// Swap usage of the newest point, in bytes; [`NO_SWAP`] when not reported.
    swap_bytes: u64,
}

impl ContainerState {
    /// A container whose retained points are `window`, newest sample `point`, and rate over the window `rate`.
    fn new(
        window: Window,
        start_time_ms: Option<TimestampMs>,
        rate: Option<Rate>,
        point: &Point,
    ) -> ContainerState {
        ContainerState {
            window,
            start_time_ms: start_time_ms.unwrap_or(NO_START_TIME),
            cpu_nanocores: rate.map_or(0, |r| r.cpu_nanocores),
            memory_bytes: point.memory_bytes,
            swap_bytes: point.swap_bytes.unwrap_or(NO_SWAP),
        }
    }

    /// `container_start_time_seconds` of the newest point, in ms since the epoch, when reported.
    fn start_time_ms(&self) -> Option<TimestampMs> {
        (self.start_time_ms != NO_START_TIME).then_some(self.start_time_ms)
    }

    /// The usage served for this container (meaningful while its pod is served).
    fn usage(&self) -> Usage {
        Usage {
            cpu_nanocores: self.cpu_nanocores,
            memory_bytes: self.memory_bytes,
            swap_bytes: (self.swap_bytes != NO_SWAP).then_some(self.swap_bytes),
        }
    }
}

/// A pod's identity in the pod index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodKey {
    /// Namespace.
    pub(crate) namespace: Arc<str>,
    /// Pod name.
    pub(crate) name: Arc<str>,
}

/// The next state's [`Names`], built alongside its pods and containers: the previous state's names while every pod
/// and container so far is the previous state's at the same position, a copy of its own from the first difference.
struct NamesBuilder<'a> {
    old: &'a Names,
    /// Pods and containers so far, while they are the first ones of `old`.
    same: (usize, usize),
    /// The names so far, once they differ from `old`'s.
    own: Option<Names>,
}

impl<'a> NamesBuilder<'a> {
    fn new(old: &'a Names) -> Self {
        Self {
            old,
            same: (0, 0),
            own: None,
        }
    }

    /// The names so far, copied out of `old` on the first difference.
    fn own(&mut self) -> &mut Names {
        let (old, (pods, containers)) = (self.old, self.same);
        self.own.get_or_insert_with(|| Names {
            pods: old.pods.get(..pods).unwrap_or_default().to_vec(),
            containers: old
                .containers
                .get(..containers)
                .unwrap_or_default()
                .to_vec(),
        })
    }

    /// The next pod is the previous state's pod at `at`.
    fn old_pod(&mut self, at: usize) {
        if self.own.is_none() && at == self.same.0 {
            self.same.0 += 1;
        } else if let Some(key) = self.old.pods.get(at) {
            self.own().pods.push(key.clone());
        }
    }

    /// The next pod is not in the previous state.
    fn new_pod(&mut self, key: PodKey) {
        self.own().pods.push(key);
    }

    /// The next container is the previous state's container at `at`.
    fn old_container(&mut self, at: usize) {
        if self.own.is_none() && at == self.same.1 {
            self.same.1 += 1;
        } else if let Some(name) = self.old.containers.get(at) {
            self.own().containers.push(Arc::clone(name));
        }
    }

    /// The next container is not in the previous state.
    fn new_container(&mut self, name: Arc<str>) {
        self.own().containers.push(name);
    }

    /// Containers from position `len` on were taken back.
    fn truncate_containers(&mut self, len: usize) {
        match &mut self.own {
            Some(own) => own.containers.truncate(len),
            None => self.same.1 = self.same.1.min(len),
        }
    }

    /// The names of the last pod added.
    fn last_pod(&self) -> Option<&PodKey> {
        match &self.own {
            Some(own) => own.pods.last(),
            None => self.old.pods.get(self.same.0.checked_sub(1)?),
        }
    }

    /// The names of the next state, whose previous state's names were `old` (the same as `self.old`).
    fn finish(mut self, old: Option<&Arc<Names>>) -> Arc<Names> {
        match old {
            Some(old)
                if self.own.is_none() && self.same == (old.pods.len(), old.containers.len()) =>
            {
                Arc::clone(old)
            }
            _ => {
                self.own();
                let mut names = self.own.unwrap_or_default();
                // Kept for many scrapes: no spare capacity from the pushes.
                names.pods.shrink_to_fit();
                names.containers.shrink_to_fit();
                Arc::new(names)
            }
        }
    }
}

/// The result of applying one batch to a node: its next state and what the pod index must learn about the pods it
/// serves. Both lists are empty in a steady state (same pods, all servable), which leaves the index untouched.
#[derive(Debug)]
pub(crate) struct Update {
    /// Pods this node serves now, with their position in `state.pods`, that it did not serve before or served at
    /// another position (pods were added or removed before them).
    pub(crate) served: Vec<(PodKey, u32)>,
    /// Pods this node served before and no longer does (remove this node's candidate).
    pub(crate) withdrawn: Vec<PodKey>,
    /// The node's next state.
    pub(crate) state: NodeState,
}

/// Interned namespace and container names: one `Arc<str>` per distinct name across all nodes. Pod names are not
/// interned here (each is distinct); they come from the [`PodNames`] source when it knows the pod.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: HashSet<Arc<str>>,
    pods: Option<Arc<dyn PodNames>>,
}

impl Interner {
    /// Names pods with `source`'s `Arc`s where it has them.
    pub(crate) fn with_pod_names(source: Arc<dyn PodNames>) -> Self {
        Self {
            names: HashSet::default(),
            pods: Some(source),
        }
    }

    /// The name of a pod this node did not report before: the source's `Arc` when it knows the pod, else a new
    /// one.
    pub(crate) fn pod_name(&self, namespace: &str, pod: &str) -> Arc<str> {
        self.pods
            .as_ref()
            .and_then(|source| source.pod_name(namespace, pod))
            .filter(|shared| **shared == *pod)
            .unwrap_or_else(|| Arc::from(pod))
    }

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
    // The decoder's order (strictly increasing: sorted, one entry per container) needs nothing else.
    if containers.is_sorted_by(|a, b| sample_key(a) < sample_key(b)) {
        return;
    }
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

/// Applies one successful batch to node `name`'s previous state (`None` for a node not seen before).
pub(crate) fn build(
    rules: &Rules,
    name: &Arc<str>,
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
    let no_names = Names::default();
    let old_names: &Names = old.map_or(&no_names, |o| &o.names);
    let old_pods: &[PodState] = old.map_or(&[], |o| &o.pods);
    let old_containers: &[ContainerState] = old.map_or(&[], |o| &o.containers);
    let mut names = NamesBuilder::new(old_names);
    let mut pods = Vec::with_capacity(old_pods.len().max(8));
    let mut next_containers = Vec::with_capacity(containers.len());
    let mut served = Vec::new();
    let mut withdrawn = Vec::new();
    let mut withdraw = |at: usize| {
        if let (Some(pod), Some(key)) = (old_pods.get(at), old_names.pods.get(at))
            && pod.served().is_some()
        {
            withdrawn.push(key.clone());
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

        // Usually the next old pod is this one: one equality test, and the ordering only when it is not.
        let is_this = |at: usize| {
            old_names
                .pods
                .get(at)
                .is_some_and(|o| &*o.name == pod && &*o.namespace == namespace)
        };
        let mut matched = is_this(next_old);
        if !matched {
            while old_names
                .pods
                .get(next_old)
                .is_some_and(|o| (&*o.namespace, &*o.name) < (namespace, pod))
            {
                withdraw(next_old);
                next_old += 1;
            }
            matched = is_this(next_old);
        }
        let old_at = next_old;
        let old = old_pods.get(old_at).filter(|_| matched);
        if old.is_some() {
            next_old += 1;
        }
        let was_served = old.is_some_and(|o| o.served().is_some());
        let Some(next) = build_pod(
            rules,
            old,
            (old_containers, &old_names.containers),
            group,
            interner,
            &mut next_containers,
            &mut names,
        ) else {
            if was_served {
                withdraw(old_at);
            }
            continue;
        };
        match old {
            Some(_) => names.old_pod(old_at),
            None => names.new_pod(PodKey {
                namespace: interner.intern(namespace),
                name: interner.pod_name(namespace, pod),
            }),
        }
        let at = pods.len();
        if next.served().is_some() {
            if (!was_served || old_at != at)
                && let Some(key) = names.last_pod()
            {
                // Positions fit `u32` (each pod has a container, and container positions do); a saturated one
                // would only be a wrong hint, which readers detect.
                served.push((key.clone(), u32::try_from(at).unwrap_or(u32::MAX)));
            }
        } else if was_served {
            withdraw(old_at);
        }
        pods.push(next);
    }
    for gone in next_old..old_pods.len() {
        withdraw(gone);
    }
    // Capacity follows the previous state's sizes, so this only reallocates after the node's pod count changed.
    pods.shrink_to_fit();
    next_containers.shrink_to_fit();

    let newest_pod_timestamp_ms = pods
        .iter()
        .filter_map(|p| Some(p.served()?.timestamp_ms))
        .max();
    Update {
        state: NodeState {
            name: Arc::clone(name),
            node,
            pods,
            containers: next_containers,
            names: names.finish(old.map(|o| &o.names)),
            newest_pod_timestamp_ms,
        },
        served,
        withdrawn,
    }
}

/// The next state of one pod from its containers' samples (sorted by name, non-empty), appending its containers
/// to `out` and their names to `names`. `old` is the pod in the previous state, whose containers and their names
/// are `old_containers`.
///
/// If any container is unusable (missing or zero CPU or memory), the pod is dropped for this scrape: the previous
/// state is kept unchanged but not served, and a pod never seen before is not stored at all.
fn build_pod(
    rules: &Rules,
    old: Option<&PodState>,
    old_containers: (&[ContainerState], &[Arc<str>]),
    group: &[ContainerSample<'_>],
    interner: &mut Interner,
    out: &mut Vec<ContainerState>,
    names: &mut NamesBuilder<'_>,
) -> Option<PodState> {
    let range = old.map_or(0..0, PodState::range);
    let first_old = range.start;
    let (old_states, old_names) = (
        old_containers.0.get(range.clone()).unwrap_or_default(),
        old_containers.1.get(range.clone()).unwrap_or_default(),
    );
    let start = out.len();
    let mut next_old = 0;
    let mut every_container_rated = true;
    let mut earliest: Option<Served> = None;
    for sample in group {
        let Some(point) = container_point(sample) else {
            out.truncate(start);
            names.truncate_containers(start);
            old?;
            out.extend_from_slice(old_states);
            for at in range {
                names.old_container(at);
            }
            return pod_state(start, out, names, None);
        };
        let is_this = |at: usize| old_names.get(at).is_some_and(|o| **o == *sample.container);
        let mut matched = is_this(next_old);
        if !matched {
            while old_names
                .get(next_old)
                .is_some_and(|o| **o < *sample.container)
            {
                next_old += 1;
            }
            matched = is_this(next_old);
        }
        // Samples are strictly increasing by name (see `normalise`): a matched old container is used once.
        let old_window = match (matched, old_states.get(next_old)) {
            (true, Some(o)) => {
                names.old_container(first_old + next_old);
                next_old += 1;
                Some((&o.window, o.start_time_ms()))
            }
            _ => {
                names.new_container(interner.intern(&sample.container));
                None
            }
        };
        let window = rules.next_container(old_window, point.cpu, sample.start_time_ms);
        let rate = window.rate();
        match rate {
            Some(rate) => {
                let this = Served {
                    timestamp_ms: window.timestamp_ms(),
                    window_ms: rate.window_ms,
                };
                if earliest.is_none_or(|e| this.is_earlier_than(&e)) {
                    earliest = Some(this);
                }
            }
            None => every_container_rated = false,
        }
        out.push(ContainerState::new(
            window,
            sample.start_time_ms,
            rate,
            &point,
        ));
    }
    let served = earliest.filter(|_| every_container_rated);
    pod_state(start, out, names, served)
}

/// A pod whose containers are `out[start..]`, served with `served`; `None` (and the containers and their names
/// removed) if the range does not fit `u32`, which would take over four billion containers on one node.
fn pod_state(
    start: usize,
    out: &mut Vec<ContainerState>,
    names: &mut NamesBuilder<'_>,
    served: Option<Served>,
) -> Option<PodState> {
    match (u32::try_from(start), u32::try_from(out.len())) {
        (Ok(first_container), Ok(end_container)) => Some(PodState {
            first_container,
            end_container,
            timestamp_ms: served.map_or(NOT_SERVED, |s| s.timestamp_ms),
            window_ms: served.map_or(0, |s| s.window_ms),
        }),
        _ => {
            out.truncate(start);
            names.truncate_containers(start);
            None
        }
    }
}
