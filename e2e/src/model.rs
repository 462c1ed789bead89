//! The cluster model shared by every fake: nodes and pods with known CPU rates, working sets and swap, changeable
//! at runtime through a cloneable [`Model`] handle, plus a change feed (resource versions, history, broadcast) that
//! the fake API server turns into watch events.
//!
//! CPU is virtual: each container, pod and node has a [`Counter`] of nanocore-seconds that grows by
//! `rate × elapsed wall-clock time`, so a scraper computing `Δcpu / Δt` between two bodies gets exactly the rate.
//! The model owns no sockets and no wire formats; the kubelet and control-plane modules render it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

/// Default kubelet port of real nodes.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How many past changes are kept so a watch can resume from a recent resource version (a LIST followed by a WATCH
/// must not lose changes made in between). Older resource versions get 410 Gone.
const HISTORY_LEN: usize = 10_000;

/// Capacity of the live change broadcast; a watcher lagging further behind has its stream closed and relists.
const BROADCAST_LEN: usize = 4_096;

/// Loopback address of fake node `index`, collision-free well past 100 000 nodes and never inside `127.0.0.0/16`
/// (kept for the server, the API front and clients): `127.{1 + i / 62500}.{(i / 250) % 250}.{i % 250 + 1}`.
pub fn node_address(index: u32) -> Ipv4Addr {
    let second = u8::try_from(1 + index / 62_500).unwrap_or(u8::MAX);
    let third = u8::try_from((index / 250) % 250).unwrap_or(0);
    let fourth = u8::try_from(index % 250 + 1).unwrap_or(1);
    Ipv4Addr::new(127, second, third, fourth)
}

/// Errors from model mutations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// No node with that name.
    #[error("node {0} not found")]
    NodeNotFound(String),
    /// No pod with that namespace/name.
    #[error("pod {0}/{1} not found")]
    PodNotFound(String, String),
    /// The pod has no container with that name.
    #[error("container {2} not found in pod {0}/{1}")]
    ContainerNotFound(String, String, String),
    /// An object with that name already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A watch asked for a resource version older than the kept history.
    #[error("resource version {0} is too old")]
    Gone(u64),
}

// ---------------------------------------------------------------------------------------------------------------
// Specs: what a test declares.

/// A whole cluster as declared by a test.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// Nodes, in index order (node `i` gets [`node_address`]`(address_base + i)` unless it names an address).
    pub nodes: Vec<NodeSpec>,
    /// Pods, each naming its node.
    pub pods: Vec<PodSpec>,
    /// Offset added to node indices when assigning loopback addresses, so concurrent clusters do not collide.
    pub address_base: u32,
}

/// A node as declared by a test. Built with [`node`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// InternalIP; `None` means "assigned from the node's index".
    pub address: Option<Ipv4Addr>,
    /// Kubelet port (`status.daemonEndpoints.kubeletEndpoint.Port`); 0 asks the fake kubelet for an ephemeral port.
    pub kubelet_port: u16,
    /// `status.capacity.cpu`, millicores.
    pub cpu_capacity_millicores: u64,
    /// `status.capacity.memory`, bytes.
    pub memory_capacity_bytes: u64,
    /// `status.allocatable.cpu`, millicores.
    pub cpu_allocatable_millicores: u64,
    /// `status.allocatable.memory`, bytes.
    pub memory_allocatable_bytes: u64,
    /// `status.nodeInfo.swap.capacity`, bytes; `Some` makes the kubelet emit swap families.
    pub swap_capacity_bytes: Option<u64>,
    /// CPU used outside pods (system daemons), millicores; added to the node counter.
    pub system_cpu_millicores: u64,
    /// Working set outside pods, bytes; added to the node working set.
    pub system_memory_bytes: u64,
    /// Swap used outside pods, bytes.
    pub system_swap_bytes: u64,
    /// The Ready condition.
    pub ready: bool,
}

/// A pod as declared by a test. Built with [`pod`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`.
    pub node: String,
    /// `status.phase`; only Running pods are reported by kubelets.
    pub phase: PodPhase,
    /// The Ready condition.
    pub ready: bool,
    /// How long before the model was built (or the pod added) the pod was created, seconds.
    pub age_seconds: u64,
    /// Containers in spec order.
    pub containers: Vec<ContainerSpec>,
}

/// A container with its known usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Constant CPU usage rate, millicores.
    pub cpu_millicores: u64,
    /// Working set, bytes.
    pub working_set_bytes: u64,
    /// Swap usage, bytes (reported only on nodes with swap).
    pub swap_bytes: u64,
    /// `resources.requests.cpu`, millicores.
    pub cpu_request_millicores: Option<u64>,
    /// `resources.requests.memory`, bytes.
    pub memory_request_bytes: Option<u64>,
}

/// Pod phase (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Scheduled, not running: kubelets do not report it.
    Pending,
    /// Running: kubelets report its containers.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
}

/// A node named `name` with 4 cores and 16 GiB, allocatable 3800m / 15 GiB, 100m and 512 MiB used by the system,
/// Ready, kubelet on port 10250, address from its index.
pub fn node(name: impl Into<String>) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        labels: BTreeMap::new(),
        address: None,
        kubelet_port: DEFAULT_KUBELET_PORT,
        cpu_capacity_millicores: 4_000,
        memory_capacity_bytes: 16 << 30,
        cpu_allocatable_millicores: 3_800,
        memory_allocatable_bytes: 15 << 30,
        swap_capacity_bytes: None,
        system_cpu_millicores: 100,
        system_memory_bytes: 512 << 20,
        system_swap_bytes: 0,
        ready: true,
    }
}

/// A Running, Ready pod `namespace/name` created 10 minutes ago, with no containers yet.
pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> PodSpec {
    PodSpec {
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::new(),
        node: String::new(),
        phase: PodPhase::Running,
        ready: true,
        age_seconds: 600,
        containers: Vec::new(),
    }
}

/// A container using 100m CPU and 64 MiB, no swap, no requests.
pub fn container(name: impl Into<String>) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        cpu_millicores: 100,
        working_set_bytes: 64 << 20,
        swap_bytes: 0,
        cpu_request_millicores: None,
        memory_request_bytes: None,
    }
}

impl ClusterSpec {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node.
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }

    /// Adds a pod.
    pub fn pod(mut self, pod: PodSpec) -> Self {
        self.pods.push(pod);
        self
    }

    /// A deterministic cluster of `nodes` nodes (`node-<i>`) with `pods_per_node` single-container pods each,
    /// spread over 5 namespaces and 10 `app` labels, CPU 10..=500m and working set 16..=527 MiB derived from the
    /// indices. Separate processes building the same spec agree on every value (the scale benchmark relies on it).
    pub fn uniform(nodes: u32, pods_per_node: u32) -> Self {
        Self::uniform_range(0..nodes, pods_per_node)
    }

    /// The nodes `range` of [`ClusterSpec::uniform`] and their pods, with the same names, values and addresses
    /// (node `i` keeps [`node_address`]`(i)`), so a process can serve a slice of a large cluster.
    pub fn uniform_range(range: std::ops::Range<u32>, pods_per_node: u32) -> Self {
        let mut spec = Self {
            address_base: range.start,
            ..Self::default()
        };
        for i in range {
            spec.nodes.push(node(node_name(i)).label(
                "e2e.resource-metrics/pool",
                if i % 2 == 0 { "a" } else { "b" },
            ));
            for j in 0..pods_per_node {
                let h = mix(u64::from(i) << 32 | u64::from(j));
                spec.pods.push(
                    pod(format!("ns-{}", j % 5), format!("pod-{i}-{j}"))
                        .on(node_name(i))
                        .label("app", format!("app-{}", j % 10))
                        .container(
                            container("app")
                                .cpu_millicores(10 + h % 491)
                                .memory_bytes((16 + (h >> 16) % 512) << 20)
                                .requests(250, 256 << 20),
                        ),
                );
            }
        }
        spec
    }
}

impl NodeSpec {
    /// Sets a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Uses this address instead of the index-derived one.
    pub fn address(mut self, address: Ipv4Addr) -> Self {
        self.address = Some(address);
        self
    }
    /// Sets the kubelet port (0 = ephemeral, chosen when the fake kubelet binds).
    pub fn kubelet_port(mut self, port: u16) -> Self {
        self.kubelet_port = port;
        self
    }
    /// Sets capacity; allocatable becomes capacity minus 5 %.
    pub fn capacity(mut self, cpu_millicores: u64, memory_bytes: u64) -> Self {
        self.cpu_capacity_millicores = cpu_millicores;
        self.memory_capacity_bytes = memory_bytes;
        self.cpu_allocatable_millicores = cpu_millicores - cpu_millicores / 20;
        self.memory_allocatable_bytes = memory_bytes - memory_bytes / 20;
        self
    }
    /// Sets allocatable explicitly.
    pub fn allocatable(mut self, cpu_millicores: u64, memory_bytes: u64) -> Self {
        self.cpu_allocatable_millicores = cpu_millicores;
        self.memory_allocatable_bytes = memory_bytes;
        self
    }
    /// Gives the node swap of this capacity (bytes); its kubelet then emits swap families.
    pub fn swap(mut self, capacity_bytes: u64) -> Self {
        self.swap_capacity_bytes = Some(capacity_bytes);
        self
    }
    /// Sets usage outside pods.
    pub fn system_usage(mut self, cpu_millicores: u64, memory_bytes: u64) -> Self {
        self.system_cpu_millicores = cpu_millicores;
        self.system_memory_bytes = memory_bytes;
        self
    }
    /// Marks the node NotReady.
    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }
}

impl PodSpec {
    /// Schedules the pod on `node`.
    pub fn on(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }
    /// Sets a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Sets the phase.
    pub fn phase(mut self, phase: PodPhase) -> Self {
        self.phase = phase;
        self
    }
    /// Marks the pod not Ready.
    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }
    /// Sets how long ago the pod was created, seconds.
    pub fn age_seconds(mut self, seconds: u64) -> Self {
        self.age_seconds = seconds;
        self
    }
    /// Adds a container.
    pub fn container(mut self, container: ContainerSpec) -> Self {
        self.containers.push(container);
        self
    }
}

impl ContainerSpec {
    /// Sets the CPU rate, millicores.
    pub fn cpu_millicores(mut self, millicores: u64) -> Self {
        self.cpu_millicores = millicores;
        self
    }
    /// Sets the working set, bytes.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.working_set_bytes = bytes;
        self
    }
    /// Sets swap usage, bytes.
    pub fn swap_bytes(mut self, bytes: u64) -> Self {
        self.swap_bytes = bytes;
        self
    }
    /// Sets resource requests (millicores, bytes).
    pub fn requests(mut self, cpu_millicores: u64, memory_bytes: u64) -> Self {
        self.cpu_request_millicores = Some(cpu_millicores);
        self.memory_request_bytes = Some(memory_bytes);
        self
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Objects: immutable snapshots handed to renderers and watchers.

/// A node object at one resource version.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The declared node, with `address` resolved.
    pub spec: NodeSpec,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`, ms since the epoch.
    pub created_ms: i64,
    /// `metadata.resourceVersion`.
    pub resource_version: u64,
}

/// A pod object at one resource version.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    /// The declared pod (current rates, labels, phase).
    pub spec: PodSpec,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`, ms since the epoch.
    pub created_ms: i64,
    /// `status.startTime`, ms since the epoch.
    pub started_ms: i64,
    /// Per container (spec order): restarts and current start time.
    pub container_statuses: Vec<ContainerStatus>,
    /// `metadata.resourceVersion`.
    pub resource_version: u64,
}

/// Status of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    /// `restartCount`.
    pub restart_count: u32,
    /// When the current instance started, ms since the epoch (`container_start_time_seconds`).
    pub started_ms: i64,
}

/// Either kind of object.
#[derive(Debug, Clone)]
pub enum Object {
    /// A node.
    Node(Arc<Node>),
    /// A pod.
    Pod(Arc<Pod>),
}

/// One change to the cluster, as a watch sees it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The cluster resource version after this change.
    pub resource_version: u64,
    /// The object before (None when added).
    pub old: Option<Object>,
    /// The object after (None when deleted).
    pub new: Option<Object>,
}

/// Usage the model predicts for a node or pod, what a correct metrics server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedUsage {
    /// CPU rate, millicores.
    pub cpu_millicores: u64,
    /// Working set, bytes.
    pub memory_bytes: u64,
    /// Swap, bytes (0 without swap).
    pub swap_bytes: u64,
}

/// Usage figures for one node at one instant, what a kubelet body carries.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// Stats time of the node samples, ms since the epoch.
    pub timestamp_ms: i64,
    /// Cumulative node CPU, nanocore-seconds.
    pub cpu_ncs: u128,
    /// Node working set, bytes.
    pub working_set_bytes: u64,
    /// Node swap usage, bytes; `Some` only on nodes with swap.
    pub swap_bytes: Option<u64>,
    /// Running pods on the node, sorted by namespace and name.
    pub pods: Vec<PodStats>,
}

/// Usage of one pod.
#[derive(Debug, Clone)]
pub struct PodStats {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Stats time of this pod's samples, ms since the epoch (each pod has its own, as in real kubelets).
    pub timestamp_ms: i64,
    /// Cumulative pod cgroup CPU, nanocore-seconds (never reset by container restarts).
    pub cpu_ncs: u128,
    /// Pod working set, bytes.
    pub working_set_bytes: u64,
    /// Pod swap, bytes.
    pub swap_bytes: u64,
    /// Containers in spec order.
    pub containers: Vec<ContainerStats>,
}

/// Usage of one container.
#[derive(Debug, Clone)]
pub struct ContainerStats {
    /// Container name.
    pub name: String,
    /// Cumulative CPU since the container started, nanocore-seconds.
    pub cpu_ncs: u128,
    /// Working set, bytes.
    pub working_set_bytes: u64,
    /// Swap, bytes.
    pub swap_bytes: u64,
    /// Start time, ms since the epoch.
    pub started_ms: i64,
}

// ---------------------------------------------------------------------------------------------------------------
// Runtime state.

/// A virtual cumulative CPU counter: `base + rate × (t − anchor)`.
#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Value at `anchor_ms`, nanocore-seconds.
    base_ncs: u128,
    /// When the current rate began, ms since the epoch.
    anchor_ms: i64,
    /// Current rate, millicores.
    rate_millicores: u64,
}

/// Key of a pod: namespace, name.
type PodKey = (String, String);

struct NodeEntry {
    object: Arc<Node>,
    cpu: Counter,
    pods: BTreeSet<PodKey>,
}

struct PodEntry {
    object: Arc<Pod>,
    cpu: Counter,
    containers: Vec<Counter>,
}

struct State {
    resource_version: u64,
    nodes: BTreeMap<String, NodeEntry>,
    pods: BTreeMap<PodKey, PodEntry>,
    history: VecDeque<Change>,
    next_uid: u64,
    /// Index offset for addresses of nodes without one (from the spec).
    address_base: u32,
}

struct Inner {
    state: RwLock<State>,
    changes: broadcast::Sender<Change>,
}

/// Shared handle to the cluster model; clones see and change the same cluster.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

/// Current wall-clock time, ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// === impl Counter ===

impl Counter {
    fn started(anchor_ms: i64, rate_millicores: u64) -> Self {
        Self {
            base_ncs: 0,
            anchor_ms,
            rate_millicores,
        }
    }

    /// Value at `t_ms`, nanocore-seconds; times before the anchor read as the base.
    fn at(&self, t_ms: i64) -> u128 {
        let elapsed_ms = u128::try_from(t_ms.saturating_sub(self.anchor_ms)).unwrap_or(0);
        // millicores × ms = 1e-6 core-seconds = 1 000 nanocore-seconds.
        self.base_ncs + u128::from(self.rate_millicores) * elapsed_ms * 1_000
    }

    fn set_rate(&mut self, t_ms: i64, rate_millicores: u64) {
        self.base_ncs = self.at(t_ms);
        self.anchor_ms = t_ms.max(self.anchor_ms);
        self.rate_millicores = rate_millicores;
    }
}

// === impl Model ===

impl Model {
    /// Builds the model from a spec at the current time.
    ///
    /// # Errors
    /// [`ModelError::AlreadyExists`] for duplicate names, [`ModelError::NodeNotFound`] for a pod on an unknown node.
    pub fn new(spec: ClusterSpec) -> Result<Self, ModelError> {
        Self::new_at(spec, now_ms())
    }

    /// [`Model::new`] with an explicit clock reading, ms since the epoch.
    ///
    /// # Errors
    /// As [`Model::new`].
    pub fn new_at(spec: ClusterSpec, now_ms: i64) -> Result<Self, ModelError> {
        let (changes, _) = broadcast::channel(BROADCAST_LEN);
        let state = State {
            resource_version: 1,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            history: VecDeque::new(),
            next_uid: 1,
            address_base: spec.address_base,
        };
        let model = Self {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                changes,
            }),
        };
        {
            let mut state = model.write();
            for (i, mut node) in spec.nodes.into_iter().enumerate() {
                let index = spec
                    .address_base
                    .saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
                node.address.get_or_insert_with(|| node_address(index));
                state.insert_node(node, now_ms)?;
            }
            for pod in spec.pods {
                state.insert_pod(pod, now_ms)?;
            }
        }
        Ok(model)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` under the write lock and publishes the resulting change, if any.
    fn mutate(
        &self,
        f: impl FnOnce(&mut State, i64) -> Result<Option<(Option<Object>, Option<Object>)>, ModelError>,
    ) -> Result<(), ModelError> {
        let mut state = self.write();
        let now = now_ms();
        if let Some((old, new)) = f(&mut state, now)? {
            let change = Change {
                resource_version: state.resource_version,
                old,
                new,
            };
            state.history.push_back(change.clone());
            if state.history.len() > HISTORY_LEN {
                state.history.pop_front();
            }
            // Sent under the lock so history and the live feed never interleave out of order; no receiver is fine.
            let _ = self.inner.changes.send(change);
        }
        Ok(())
    }

    /// The cluster resource version (of the latest change).
    pub fn resource_version(&self) -> u64 {
        self.read().resource_version
    }

    /// All nodes, sorted by name.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.read()
            .nodes
            .values()
            .map(|n| n.object.clone())
            .collect()
    }

    /// All pods, sorted by namespace and name.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.read()
            .pods
            .values()
            .map(|p| p.object.clone())
            .collect()
    }

    /// Nodes and pods together with the resource version they were read at.
    pub fn snapshot(&self) -> (u64, Vec<Arc<Node>>, Vec<Arc<Pod>>) {
        let state = self.read();
        (
            state.resource_version,
            state.nodes.values().map(|n| n.object.clone()).collect(),
            state.pods.values().map(|p| p.object.clone()).collect(),
        )
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.read().nodes.get(name).map(|n| n.object.clone())
    }

    /// One pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.read()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|p| p.object.clone())
    }

    /// Changes after `resource_version` from history, plus a receiver for every later change.
    ///
    /// # Errors
    /// [`ModelError::Gone`] when `resource_version` is older than the kept history.
    pub fn watch_from(
        &self,
        resource_version: u64,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>), ModelError> {
        let state = self.read();
        let receiver = self.inner.changes.subscribe();
        let oldest_known = state
            .history
            .front()
            .map_or(state.resource_version, |c| c.resource_version - 1);
        if resource_version < oldest_known && resource_version != 0 {
            return Err(ModelError::Gone(resource_version));
        }
        let past = state
            .history
            .iter()
            .filter(|c| c.resource_version > resource_version)
            .cloned()
            .collect();
        Ok((past, receiver))
    }

    /// Adds a node (without an address it gets the next index after the spec's nodes, offset by `address_base`).
    ///
    /// # Errors
    /// [`ModelError::AlreadyExists`].
    pub fn add_node(&self, mut node: NodeSpec) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let index = state
                .address_base
                .saturating_add(u32::try_from(state.nodes.len()).unwrap_or(u32::MAX));
            node.address.get_or_insert_with(|| node_address(index));
            let object = state.insert_node(node, now)?;
            Ok(Some((None, Some(Object::Node(object)))))
        })
    }

    /// Deletes a node and every pod on it (each pod deletion is its own change).
    ///
    /// # Errors
    /// [`ModelError::NodeNotFound`].
    pub fn delete_node(&self, name: &str) -> Result<(), ModelError> {
        let pods: Vec<PodKey> = {
            let state = self.read();
            let entry = state
                .nodes
                .get(name)
                .ok_or_else(|| ModelError::NodeNotFound(name.to_owned()))?;
            entry.pods.iter().cloned().collect()
        };
        for (ns, pod) in pods {
            self.delete_pod(&ns, &pod)?;
        }
        self.mutate(|state, _| {
            let entry = state
                .nodes
                .remove(name)
                .ok_or_else(|| ModelError::NodeNotFound(name.to_owned()))?;
            state.resource_version += 1;
            Ok(Some((Some(Object::Node(entry.object)), None)))
        })
    }

    /// Adds a pod.
    ///
    /// # Errors
    /// [`ModelError::AlreadyExists`], [`ModelError::NodeNotFound`].
    pub fn add_pod(&self, pod: PodSpec) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let object = state.insert_pod(pod, now)?;
            Ok(Some((None, Some(Object::Pod(object)))))
        })
    }

    /// Deletes a pod.
    ///
    /// # Errors
    /// [`ModelError::PodNotFound`].
    pub fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let key = (namespace.to_owned(), name.to_owned());
            let entry = state
                .pods
                .remove(&key)
                .ok_or_else(|| pod_not_found(namespace, name))?;
            if let Some(node) = state.nodes.get_mut(&entry.object.spec.node) {
                node.pods.remove(&key);
            }
            state.refresh_node_rate(&entry.object.spec.node, now);
            state.resource_version += 1;
            Ok(Some((Some(Object::Pod(entry.object)), None)))
        })
    }

    /// Changes a pod through `f` (labels, phase, readiness); bumps its resource version.
    ///
    /// # Errors
    /// [`ModelError::PodNotFound`].
    pub fn update_pod(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut PodSpec),
    ) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let (old, new) =
                state.update_pod_object(namespace, name, now, |pod, _| f(&mut pod.spec))?;
            Ok(Some((Some(Object::Pod(old)), Some(Object::Pod(new)))))
        })
    }

    /// Changes a node through `f` (labels, readiness, capacity); bumps its resource version.
    ///
    /// # Errors
    /// [`ModelError::NodeNotFound`].
    pub fn update_node(&self, name: &str, f: impl FnOnce(&mut NodeSpec)) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let rv = state.resource_version + 1;
            let entry = state
                .nodes
                .get_mut(name)
                .ok_or_else(|| ModelError::NodeNotFound(name.to_owned()))?;
            let old = entry.object.clone();
            let mut object = (*old).clone();
            f(&mut object.spec);
            object.resource_version = rv;
            entry.object = Arc::new(object);
            let new = entry.object.clone();
            state.resource_version = rv;
            state.refresh_node_rate(name, now);
            Ok(Some((Some(Object::Node(old)), Some(Object::Node(new)))))
        })
    }

    /// Restarts a container: its CPU counter starts again from zero, its start time moves to now and its restart
    /// count goes up (a pod change, visible to watches).
    ///
    /// # Errors
    /// [`ModelError::PodNotFound`], [`ModelError::ContainerNotFound`].
    pub fn restart_container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<(), ModelError> {
        self.mutate(|state, now| {
            let index = state.container_index(namespace, name, container)?;
            let (old, new) = state.update_pod_object(namespace, name, now, |pod, entry| {
                pod.container_statuses[index].restart_count += 1;
                pod.container_statuses[index].started_ms = now;
                entry.containers[index] =
                    Counter::started(now, pod.spec.containers[index].cpu_millicores);
            })?;
            Ok(Some((Some(Object::Pod(old)), Some(Object::Pod(new)))))
        })
    }

    /// Sets a container's CPU rate (millicores) from now on. Usage is not part of the pod object: no watch event.
    ///
    /// # Errors
    /// [`ModelError::PodNotFound`], [`ModelError::ContainerNotFound`].
    pub fn set_container_cpu(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        millicores: u64,
    ) -> Result<(), ModelError> {
        self.set_container_usage(namespace, name, container, |c| {
            c.cpu_millicores = millicores
        })
    }

    /// Sets a container's working set (bytes) from now on.
    ///
    /// # Errors
    /// [`ModelError::PodNotFound`], [`ModelError::ContainerNotFound`].
    pub fn set_container_memory(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        bytes: u64,
    ) -> Result<(), ModelError> {
        self.set_container_usage(namespace, name, container, |c| c.working_set_bytes = bytes)
    }

    fn set_container_usage(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        f: impl FnOnce(&mut ContainerSpec),
    ) -> Result<(), ModelError> {
        let mut state = self.write();
        let now = now_ms();
        let index = state.container_index(namespace, name, container)?;
        let key = (namespace.to_owned(), name.to_owned());
        let entry = state
            .pods
            .get_mut(&key)
            .ok_or_else(|| pod_not_found(namespace, name))?;
        let mut object = (*entry.object).clone();
        f(&mut object.spec.containers[index]);
        let rate = object.spec.containers[index].cpu_millicores;
        entry.containers[index].set_rate(now, rate);
        let pod_rate = object
            .spec
            .containers
            .iter()
            .map(|c| c.cpu_millicores)
            .sum();
        entry.cpu.set_rate(now, pod_rate);
        let node = object.spec.node.clone();
        entry.object = Arc::new(object);
        state.refresh_node_rate(&node, now);
        Ok(())
    }

    /// Sets the kubelet port recorded in a node's status (after a fake kubelet bound an ephemeral port).
    ///
    /// # Errors
    /// [`ModelError::NodeNotFound`].
    pub fn set_kubelet_port(&self, name: &str, port: u16) -> Result<(), ModelError> {
        self.update_node(name, |n| n.kubelet_port = port)
    }

    /// What a correct metrics server reports for a node: system plus Running pods.
    pub fn expected_node_usage(&self, name: &str) -> Option<ExpectedUsage> {
        let state = self.read();
        let entry = state.nodes.get(name)?;
        let spec = &entry.object.spec;
        let mut usage = ExpectedUsage {
            cpu_millicores: spec.system_cpu_millicores,
            memory_bytes: spec.system_memory_bytes,
            swap_bytes: spec.system_swap_bytes,
        };
        for key in &entry.pods {
            if let Some(pod) = state
                .pods
                .get(key)
                .filter(|p| p.object.spec.phase == PodPhase::Running)
            {
                let p = pod_usage(&pod.object.spec);
                usage.cpu_millicores += p.cpu_millicores;
                usage.memory_bytes += p.memory_bytes;
                usage.swap_bytes += p.swap_bytes;
            }
        }
        Some(usage)
    }

    /// What a correct metrics server reports for a pod (sum of its containers).
    pub fn expected_pod_usage(&self, namespace: &str, name: &str) -> Option<ExpectedUsage> {
        self.pod(namespace, name).map(|p| pod_usage(&p.spec))
    }

    /// Usage of a node and its Running pods at `now_ms`, what its kubelet reports. Each pod's stats time lags
    /// `now_ms` by a fixed per-pod amount under `max_lag_ms`, like a runtime's housekeeping interval.
    pub fn node_stats(&self, name: &str, now_ms: i64, max_lag_ms: i64) -> Option<NodeStats> {
        let state = self.read();
        let entry = state.nodes.get(name)?;
        let spec = &entry.object.spec;
        let mut stats = NodeStats {
            timestamp_ms: now_ms,
            cpu_ncs: entry.cpu.at(now_ms),
            working_set_bytes: spec.system_memory_bytes,
            swap_bytes: spec.swap_capacity_bytes.map(|_| spec.system_swap_bytes),
            pods: Vec::with_capacity(entry.pods.len()),
        };
        for key in &entry.pods {
            let Some(pod) = state
                .pods
                .get(key)
                .filter(|p| p.object.spec.phase == PodPhase::Running)
            else {
                continue;
            };
            let lag = if max_lag_ms > 0 {
                i64::try_from(mix_str(&key.0, &key.1) % max_lag_ms.unsigned_abs()).unwrap_or(0)
            } else {
                0
            };
            let ts = now_ms - lag;
            let containers: Vec<ContainerStats> = pod
                .object
                .spec
                .containers
                .iter()
                .zip(&pod.containers)
                .zip(&pod.object.container_statuses)
                .map(|((c, counter), status)| ContainerStats {
                    name: c.name.clone(),
                    cpu_ncs: counter.at(ts),
                    working_set_bytes: c.working_set_bytes,
                    swap_bytes: c.swap_bytes,
                    started_ms: status.started_ms,
                })
                .collect();
            let ws: u64 = containers.iter().map(|c| c.working_set_bytes).sum();
            let swap: u64 = containers.iter().map(|c| c.swap_bytes).sum();
            stats.working_set_bytes += ws;
            if let Some(s) = stats.swap_bytes.as_mut() {
                *s += swap;
            }
            stats.pods.push(PodStats {
                namespace: key.0.clone(),
                name: key.1.clone(),
                timestamp_ms: ts,
                cpu_ncs: pod.cpu.at(ts),
                working_set_bytes: ws,
                swap_bytes: swap,
                containers,
            });
        }
        Some(stats)
    }
}

fn pod_usage(spec: &PodSpec) -> ExpectedUsage {
    ExpectedUsage {
        cpu_millicores: spec.containers.iter().map(|c| c.cpu_millicores).sum(),
        memory_bytes: spec.containers.iter().map(|c| c.working_set_bytes).sum(),
        swap_bytes: spec.containers.iter().map(|c| c.swap_bytes).sum(),
    }
}

fn pod_not_found(namespace: &str, name: &str) -> ModelError {
    ModelError::PodNotFound(namespace.to_owned(), name.to_owned())
}

// === impl State ===

impl State {
    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    fn insert_node(&mut self, spec: NodeSpec, now: i64) -> Result<Arc<Node>, ModelError> {
        if self.nodes.contains_key(&spec.name) {
            return Err(ModelError::AlreadyExists(format!("node {}", spec.name)));
        }
        self.resource_version += 1;
        // Nodes booted an hour ago: counters hold plausible large values.
        let created_ms = now - 3_600_000;
        let uid = self.uid();
        let object = Arc::new(Node {
            uid,
            created_ms,
            resource_version: self.resource_version,
            spec,
        });
        let cpu = Counter::started(created_ms, object.spec.system_cpu_millicores);
        self.nodes.insert(
            object.spec.name.clone(),
            NodeEntry {
                object: object.clone(),
                cpu,
                pods: BTreeSet::new(),
            },
        );
        Ok(object)
    }

    fn insert_pod(&mut self, spec: PodSpec, now: i64) -> Result<Arc<Pod>, ModelError> {
        let key = (spec.namespace.clone(), spec.name.clone());
        if self.pods.contains_key(&key) {
            return Err(ModelError::AlreadyExists(format!(
                "pod {}/{}",
                key.0, key.1
            )));
        }
        if !self.nodes.contains_key(&spec.node) {
            return Err(ModelError::NodeNotFound(spec.node.clone()));
        }
        self.resource_version += 1;
        let created_ms = now - i64::try_from(spec.age_seconds).unwrap_or(0) * 1_000;
        // Containers start one second after the pod is created.
        let started_ms = created_ms + 1_000;
        let containers: Vec<Counter> = spec
            .containers
            .iter()
            .map(|c| Counter::started(started_ms, c.cpu_millicores))
            .collect();
        let cpu = Counter::started(
            started_ms,
            spec.containers.iter().map(|c| c.cpu_millicores).sum(),
        );
        let container_statuses = spec
            .containers
            .iter()
            .map(|_| ContainerStatus {
                restart_count: 0,
                started_ms,
            })
            .collect();
        let node = spec.node.clone();
        let uid = self.uid();
        let object = Arc::new(Pod {
            uid,
            created_ms,
            started_ms,
            container_statuses,
            resource_version: self.resource_version,
            spec,
        });
        self.pods.insert(
            key.clone(),
            PodEntry {
                object: object.clone(),
                cpu,
                containers,
            },
        );
        if let Some(entry) = self.nodes.get_mut(&node) {
            entry.pods.insert(key);
        }
        self.refresh_node_rate(&node, now);
        Ok(object)
    }

    fn container_index(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<usize, ModelError> {
        let entry = self
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| pod_not_found(namespace, name))?;
        entry
            .object
            .spec
            .containers
            .iter()
            .position(|c| c.name == container)
            .ok_or_else(|| {
                ModelError::ContainerNotFound(
                    namespace.to_owned(),
                    name.to_owned(),
                    container.to_owned(),
                )
            })
    }

    fn update_pod_object(
        &mut self,
        namespace: &str,
        name: &str,
        now: i64,
        f: impl FnOnce(&mut Pod, &mut PodEntry),
    ) -> Result<(Arc<Pod>, Arc<Pod>), ModelError> {
        let rv = self.resource_version + 1;
        let entry = self
            .pods
            .get_mut(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| pod_not_found(namespace, name))?;
        let old = entry.object.clone();
        let mut object = (*old).clone();
        f(&mut object, entry);
        object.resource_version = rv;
        entry.object = Arc::new(object);
        let new = entry.object.clone();
        self.resource_version = rv;
        let node = new.spec.node.clone();
        self.refresh_node_rate(&node, now);
        Ok((old, new))
    }

    /// Re-derives a node's CPU rate (system + Running pods) after any change that may affect it.
    fn refresh_node_rate(&mut self, node: &str, now: i64) {
        let Some(entry) = self.nodes.get(node) else {
            return;
        };
        let mut rate = entry.object.spec.system_cpu_millicores;
        for key in &entry.pods {
            if let Some(p) = self
                .pods
                .get(key)
                .filter(|p| p.object.spec.phase == PodPhase::Running)
            {
                rate += p
                    .object
                    .spec
                    .containers
                    .iter()
                    .map(|c| c.cpu_millicores)
                    .sum::<u64>();
            }
        }
        if let Some(entry) = self.nodes.get_mut(node)
            && entry.cpu.rate_millicores != rate
        {
            entry.cpu.set_rate(now, rate);
        }
    }
}

/// A 64-bit mixer (splitmix64 finaliser) for deterministic pseudo-random values.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix_str(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// Node indices map to names the way [`ClusterSpec::uniform`] names them.
pub fn node_name(index: u32) -> String {
    format!("node-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_pod_cluster() -> ClusterSpec {
        ClusterSpec::new()
            .node(node("n1"))
            .pod(
                pod("default", "web")
                    .on("n1")
                    .container(container("app").cpu_millicores(250))
                    .container(container("side").cpu_millicores(50)),
            )
            .pod(
                pod("default", "idle")
                    .on("n1")
                    .phase(PodPhase::Pending)
                    .container(container("app").cpu_millicores(999)),
            )
    }

    #[test]
    fn node_addresses_follow_the_documented_mapping() {
        struct Case {
            name: &'static str,
            index: u32,
            want: Ipv4Addr,
        }
        let cases = [
            Case {
                name: "first node",
                index: 0,
                want: Ipv4Addr::new(127, 1, 0, 1),
            },
            Case {
                name: "last of the first block of 250",
                index: 249,
                want: Ipv4Addr::new(127, 1, 0, 250),
            },
            Case {
                name: "first of the second block",
                index: 250,
                want: Ipv4Addr::new(127, 1, 1, 1),
            },
            Case {
                name: "second /16",
                index: 62_500,
                want: Ipv4Addr::new(127, 2, 0, 1),
            },
        ];
        for case in cases {
            assert_eq!(node_address(case.index), case.want, "{}", case.name);
        }
    }

    #[test]
    fn cpu_delta_over_time_equals_the_declared_rate() {
        let t0 = 1_700_000_000_000;
        let model = Model::new_at(two_pod_cluster(), t0).unwrap();
        let a = model.node_stats("n1", t0 + 10_000, 0).unwrap();
        let b = model.node_stats("n1", t0 + 25_000, 0).unwrap();
        let web =
            |s: &NodeStats| s.pods.iter().find(|p| p.name == "web").unwrap().containers[0].cpu_ncs;
        // 250m over 15 s = 3.75 core-seconds.
        assert_eq!(web(&b) - web(&a), 3_750_000_000);
        // Node: system 100m + 300m of running containers (the Pending pod does not count).
        assert_eq!(b.cpu_ncs - a.cpu_ncs, 400 * 15_000 * 1_000);
        assert_eq!(a.pods.len(), 1, "pending pods are not reported");
    }

    #[test]
    fn restarting_a_container_resets_its_counter_and_bumps_the_restart_count() {
        let model = Model::new(two_pod_cluster()).unwrap();
        let before = model.pod("default", "web").unwrap();
        model.restart_container("default", "web", "app").unwrap();
        let after = model.pod("default", "web").unwrap();
        assert_eq!(after.container_statuses[0].restart_count, 1);
        assert!(after.container_statuses[0].started_ms > before.container_statuses[0].started_ms);
        assert!(after.resource_version > before.resource_version);
        let stats = model.node_stats("n1", now_ms(), 0).unwrap();
        let app = &stats.pods[0].containers[0];
        assert!(
            app.cpu_ncs < 250 * 5_000 * 1_000,
            "counter restarted near zero, got {}",
            app.cpu_ncs
        );
    }

    #[test]
    fn watch_from_an_old_version_replays_later_changes_in_order() {
        let model = Model::new(two_pod_cluster()).unwrap();
        let rv = model.resource_version();
        model
            .add_pod(pod("default", "new").on("n1").container(container("c")))
            .unwrap();
        model.delete_pod("default", "idle").unwrap();
        let (past, _rx) = model.watch_from(rv).unwrap();
        assert_eq!(past.len(), 2);
        assert!(past[0].old.is_none() && past[1].new.is_none());
        assert!(past[0].resource_version < past[1].resource_version);
    }

    #[test]
    fn changing_a_rate_changes_only_later_increments() {
        let model = Model::new(two_pod_cluster()).unwrap();
        model
            .set_container_cpu("default", "web", "app", 1_000)
            .unwrap();
        assert_eq!(
            model
                .expected_pod_usage("default", "web")
                .unwrap()
                .cpu_millicores,
            1_050
        );
        assert_eq!(
            model.expected_node_usage("n1").unwrap().cpu_millicores,
            1_150
        );
        assert_eq!(
            model.set_container_cpu("default", "web", "nope", 1),
            Err(ModelError::ContainerNotFound(
                "default".into(),
                "web".into(),
                "nope".into()
            ))
        );
    }

    #[test]
    fn uniform_clusters_are_identical_across_builds() {
        let a = ClusterSpec::uniform(3, 4);
        let b = ClusterSpec::uniform(3, 4);
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.pods.len(), 12);
    }
}
