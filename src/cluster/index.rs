//! In-memory index of nodes and Running pods fed by the watches (or by tests); implements [`ClusterView`].
//!
//! Nodes are kept by name in a `BTreeMap`, so `nodes()` comes out sorted; the `--node-selector` is applied there
//! and not in `node()` (metrics-server's get ignores the selector). Pods are kept by namespace, then name, so a
//! namespaced list is one map lookup plus an in-order walk. Namespace names are interned: every pod of a namespace
//! shares one `Arc<str>`.
//!
//! Each namespace also indexes its pods by label pair (key → value → pods sorted by name), so that an HPA-style
//! list (`hpa=h-123`: 10 pods of a 3,000-pod namespace) visits only the pods carrying the pair instead of matching
//! the selector against every pod. The index holds the same `Arc<PodInfo>`s as the name map (8 bytes per pod and
//! label, plus one boxed key and value per distinct pair), and is maintained on every apply, delete and relist.
//!
//! Writers (the watches) take a short std `RwLock` write section per event; readers copy `Arc`s out under the read
//! lock and never hold it across an `.await`. This module must not talk to the API server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::{ClusterView, LabelSelector, Labels, NodeInfo, PodInfo};

/// The cluster index: nodes, Running pods and whether both watches have completed their first list.
#[derive(Debug, Default)]
pub struct Index {
    selector: NodeSelector,
    state: RwLock<State>,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<Arc<str>, Arc<NodeInfo>>,
    /// namespace → its pods. Empty namespaces are removed so that interned names do not pile up.
    namespaces: BTreeMap<Arc<str>, Namespace>,
    /// Distinct pod label sets. Pods of one ReplicaSet or DaemonSet revision carry identical labels, so at 5,000
    /// nodes most of 150,000 pods share a handful of sets instead of holding one each.
    labels: HashSet<Arc<Labels>>,
}

/// The Running pods of one namespace, by name and by label pair.
#[derive(Debug, Default)]
struct Namespace {
    /// pod name → pod.
    pods: BTreeMap<Arc<str>, Arc<PodInfo>>,
    /// label key → label value → the pods carrying that pair. Emptied entries are removed.
    by_label: HashMap<Box<str>, HashMap<Box<str>, PodsByName>>,
}

/// Pods sorted by name (the pods of one namespace carrying one label pair).
type PodsByName = Vec<Arc<PodInfo>>;

/// A parsed `--node-selector`: a [`LabelSelector`] (apimachinery's `labels.Parse` grammar, as metrics-server
/// parses the flag) applied to node labels. The empty selector matches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelector {
    selector: LabelSelector,
}

/// A `--node-selector` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it (apimachinery's message).
    pub reason: String,
}

// === impl Index ===

impl Index {
    /// An empty, unsynced index that lists only nodes matching `selector`.
    pub fn new(selector: NodeSelector) -> Self {
        Index {
            selector,
            ..Index::default()
        }
    }

    /// Adds or replaces one node.
    pub fn apply_node(&self, node: NodeInfo) {
        let mut state = self.write();
        state.nodes.insert(node.name.clone(), Arc::new(node));
    }

    /// Removes one node (no-op when absent).
    pub fn delete_node(&self, name: &str) {
        self.write().nodes.remove(name);
    }

    /// Replaces the whole node set (after a watch (re)list) and marks nodes as synced.
    pub fn replace_nodes(&self, nodes: Vec<NodeInfo>) {
        let map = nodes
            .into_iter()
            .map(|n| (n.name.clone(), Arc::new(n)))
            .collect();
        self.write().nodes = map;
        self.nodes_synced.store(true, Ordering::Release);
    }

    /// Adds or replaces one Running pod; the namespace name is interned.
    pub fn apply_pod(&self, namespace: &str, name: &str, labels: Labels) {
        let mut state = self.write();
        let known = state.pod_name(namespace, name);
        let pod = state.make_pod(namespace, name, labels, known);
        state.insert_pod(pod);
    }

    /// The index's own `Arc` of pod `namespace/name`'s name, if the pod is indexed (for sharing it).
    pub fn pod_name(&self, namespace: &str, name: &str) -> Option<Arc<str>> {
        self.read().pod_name(namespace, name)
    }

    /// Removes one pod (no-op when absent).
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut state = self.write();
        let (removed, emptied) = match state.namespaces.get_mut(namespace) {
            Some(ns) => (ns.remove(name), ns.pods.is_empty()),
            None => (None, false),
        };
        if emptied {
            state.namespaces.remove(namespace);
        }
        if let Some(pod) = removed {
            state.release_labels(&pod);
        }
    }

    /// Replaces every pod (after a watch (re)list) and marks pods as synced. Items are `(namespace, name, labels)`.
    pub fn replace_pods(&self, pods: impl IntoIterator<Item = (String, String, Labels)>) {
        // Build the new map off-lock; namespaces are interned within the new map, and pods that were already
        // indexed keep their name's `Arc` (which storage may share, see `pod_name`). Each lookup takes the read
        // lock on its own: held across the whole build, it would make a node update wait, and with it every
        // reader queued behind that writer.
        let mut fresh = State::default();
        for (namespace, name, labels) in pods {
            let known = self.pod_name(&namespace, &name);
            let pod = fresh.make_pod(&namespace, &name, labels, known);
            fresh.insert_pod(pod);
        }
        for namespace in fresh.namespaces.values_mut() {
            namespace.shrink_label_index();
        }
        let mut state = self.write();
        let old = (
            std::mem::replace(&mut state.namespaces, fresh.namespaces),
            std::mem::replace(&mut state.labels, fresh.labels),
        );
        drop(state);
        // Freeing 150,000 pods takes milliseconds: do it after readers are let back in.
        drop(old);
        self.pods_synced.store(true, Ordering::Release);
    }

    /// Number of known nodes (selected or not) and Running pods.
    pub fn len(&self) -> (usize, usize) {
        let state = self.read();
        (
            state.nodes.len(),
            state.namespaces.values().map(|ns| ns.pods.len()).sum(),
        )
    }

    /// The index holds no node and no pod.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written map: every write is a single insert/remove
        // or a whole-map swap, so the data behind a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClusterView for Index {
    fn is_synced(&self) -> bool {
        self.nodes_synced.load(Ordering::Acquire) && self.pods_synced.load(Ordering::Acquire)
    }

    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        let state = self.read();
        state
            .nodes
            .values()
            .filter(|n| self.selector.matches(&n.labels))
            .cloned()
            .collect()
    }

    fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.read().nodes.get(name).cloned()
    }

    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        let state = self.read();
        match namespace {
            Some(ns) => state
                .namespaces
                .get(ns)
                .map(|ns| ns.pods.values().cloned().collect())
                .unwrap_or_default(),
            None => state
                .namespaces
                .values()
                .flat_map(|ns| ns.pods.values().cloned())
                .collect(),
        }
    }

    /// Selects under the read lock and clones only the matches; see the module docs for the label index.
    fn pods_matching(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Arc<PodInfo>> {
        let state = self.read();
        let mut out = Vec::new();
        match namespace {
            Some(ns) => {
                if let Some(ns) = state.namespaces.get(ns) {
                    ns.select(selector, &mut out);
                }
            }
            None => {
                for ns in state.namespaces.values() {
                    ns.select(selector, &mut out);
                }
            }
        }
        out
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.read()
            .namespaces
            .get(namespace)?
            .pods
            .get(name)
            .cloned()
    }
}

// === impl State ===

impl State {
    /// The `Arc` of an indexed pod's name.
    fn pod_name(&self, namespace: &str, name: &str) -> Option<Arc<str>> {
        let (name, _) = self.namespaces.get(namespace)?.pods.get_key_value(name)?;
        Some(Arc::clone(name))
    }

    /// A pod to insert, with interned namespace and labels; its name is `known` (the `Arc` of the pod it
    /// replaces, so an update or a relist does not change a pod's name `Arc`) or a new one.
    fn make_pod(
        &mut self,
        namespace: &str,
        name: &str,
        labels: Labels,
        known: Option<Arc<str>>,
    ) -> PodInfo {
        let namespace = match self.namespaces.get_key_value(namespace) {
            Some((interned, _)) => interned.clone(),
            None => Arc::from(namespace),
        };
        let labels = match self.labels.get(&labels) {
            Some(shared) => shared.clone(),
            None => {
                let labels = Arc::new(labels);
                self.labels.insert(labels.clone());
                labels
            }
        };
        PodInfo {
            namespace,
            name: known.unwrap_or_else(|| Arc::from(name)),
            labels,
        }
    }

    /// Drops `pod`'s label set from the interner when no other pod uses it. (A label map still referenced from
    /// elsewhere, e.g. a response being built, stays interned until the next relist; that is bounded and harmless.)
    fn release_labels(&mut self, pod: &PodInfo) {
        // One reference from the interner, one from this pod: nobody else shares it.
        if Arc::strong_count(&pod.labels) <= 2 {
            self.labels.remove(&*pod.labels);
        }
    }

    fn insert_pod(&mut self, pod: PodInfo) {
        let namespace = pod.namespace.clone();
        let replaced = self
            .namespaces
            .entry(namespace)
            .or_default()
            .insert(Arc::new(pod));
        if let Some(old) = replaced {
            self.release_labels(&old);
        }
    }
}

// === impl Namespace ===

impl Namespace {
    /// Adds or replaces a pod (by name); returns the replaced one.
    fn insert(&mut self, pod: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let replaced = self.pods.insert(pod.name.clone(), pod.clone());
        if let Some(old) = &replaced {
            self.unindex(old);
        }
        self.index(pod);
        replaced
    }

    /// Removes a pod by name; returns it.
    fn remove(&mut self, name: &str) -> Option<Arc<PodInfo>> {
        let removed = self.pods.remove(name)?;
        self.unindex(&removed);
        Some(removed)
    }

    /// Gives back the label index's spare capacity (the vectors grew by doubling while a relist filled them:
    /// about 1.6 MiB at 150,000 pods with two labels each).
    fn shrink_label_index(&mut self) {
        for pods in self.by_label.values_mut().flat_map(HashMap::values_mut) {
            pods.shrink_to_fit();
        }
    }

    fn index(&mut self, pod: Arc<PodInfo>) {
        for (key, value) in pod.labels.iter() {
            // Look up before inserting: the boxed key and value are allocated only for a new pair.
            let values = match self.by_label.get_mut(key) {
                Some(values) => values,
                None => self.by_label.entry(Box::from(key)).or_default(),
            };
            let pods = match values.get_mut(value) {
                Some(pods) => pods,
                None => values.entry(Box::from(value)).or_default(),
            };
            // Relists arrive in (namespace, name) order, so this is nearly always an append.
            match pods.binary_search_by(|p| p.name.cmp(&pod.name)) {
                Ok(at) => pods[at] = pod.clone(),
                Err(at) => pods.insert(at, pod.clone()),
            }
        }
    }

    fn unindex(&mut self, pod: &PodInfo) {
        for (key, value) in pod.labels.iter() {
            let Some(values) = self.by_label.get_mut(key) else {
                continue;
            };
            if let Some(pods) = values.get_mut(value) {
                if let Ok(at) = pods.binary_search_by(|p| p.name.cmp(&pod.name)) {
                    pods.remove(at);
                }
                if pods.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(key);
            }
        }
    }

    /// The pods carrying `key=value`, sorted by name (empty when none does).
    fn with_label(&self, key: &str, value: &str) -> &[Arc<PodInfo>] {
        self.by_label
            .get(key)
            .and_then(|values| values.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// The pods every match of `selector` is among, sorted by name: those carrying one of the values of the
    /// `=`, `==` or `in` requirement that the fewest pods satisfy. `None` when the selector has no such
    /// requirement.
    fn candidates(&self, selector: &LabelSelector) -> Option<Vec<&Arc<PodInfo>>> {
        let count = |key: &str, values: &[String]| -> usize {
            values.iter().map(|v| self.with_label(key, v).len()).sum()
        };
        let (key, values) = selector
            .required_values()
            .min_by_key(|(key, values)| count(key, values))?;
        let mut pods: Vec<&Arc<PodInfo>> = values
            .iter()
            .flat_map(|v| self.with_label(key, v))
            .collect();
        if values.len() > 1 {
            // A pod has one value per key, so the lists are disjoint: merging them is a sort.
            pods.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
        Some(pods)
    }

    /// Appends the pods matching `selector`, in name order, visiting only the [`Namespace::candidates`] when the
    /// selector names required values, and every pod otherwise.
    fn select(&self, selector: &LabelSelector, out: &mut Vec<Arc<PodInfo>>) {
        if selector.is_empty() {
            out.extend(self.pods.values().cloned());
            return;
        }
        match self.candidates(selector) {
            Some(pods) => out.extend(
                pods.into_iter()
                    .filter(|p| selector.matches(&p.labels))
                    .cloned(),
            ),
            None => out.extend(
                self.pods
                    .values()
                    .filter(|p| selector.matches(&p.labels))
                    .cloned(),
            ),
        }
    }
}

// === impl NodeSelector ===

impl NodeSelector {
    /// Parses metrics-server's `--node-selector` (see the type's docs for the grammar).
    ///
    /// # Errors
    /// [`SelectorError`] naming the selector and apimachinery's message for the first problem found.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        match LabelSelector::parse(input) {
            Ok(selector) => Ok(NodeSelector { selector }),
            Err(error) => Err(SelectorError {
                selector: input.to_owned(),
                reason: error.0,
            }),
        }
    }

    /// Every requirement holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector.matches(labels)
    }

    /// The selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.selector.is_empty()
    }
}

#[cfg(test)]
mod tests;
