//! The two reader-visible maps: the node table (node name → id → current [`NodeState`]) and the pod index
//! ((namespace, pod) → where the nodes serving the pod keep it).
//!
//! The pod index holds no usage, only where to find it: a pod's usage lives in its node's state, and the index
//! records the node and the pod's position in that node's sorted pods. It changes only when a node's set of served
//! pods changes (a pod appears, disappears, or becomes or stops being servable; positions shift only then too), so
//! a steady-state scrape replaces the node's state in the table and leaves the index alone. Choosing among nodes
//! that report the same pod happens on read, from their current states (see `storage`). Pure data structures: no
//! locks, no clock.

use foldhash::HashMap;
use std::sync::Arc;

use super::state::NodeState;

/// A node's slot in the [`NodeTable`]; stable while the node is stored, reused after it is forgotten (by then the
/// pod index no longer refers to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeId(u32);

/// Where one node keeps a pod it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The node.
    pub(crate) node: NodeId,
    /// The pod's position in the node's pods (sorted by (namespace, name)). Readers check that it names the pod
    /// before using it.
    pub(crate) pod: u32,
}

/// Every stored node's current state, by name and by [`NodeId`] (an index into a vector: the pod index refers to
/// a node with 4 bytes and a reader reaches a candidate node without hashing its name).
#[derive(Debug, Default)]
pub(crate) struct NodeTable {
    ids: HashMap<Arc<str>, NodeId>,
    /// `None` for a free slot (listed in `free`).
    slots: Vec<Option<Arc<NodeState>>>,
    free: Vec<NodeId>,
}

/// The node table already holds `u32::MAX` nodes (ids are 4 bytes to keep the pod index small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node table is full ({} nodes)", u32::MAX)]
pub(crate) struct TableFull;

// === impl NodeTable ===

impl NodeTable {
    /// Number of stored nodes.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The current state of node `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<NodeState>> {
        self.state(*self.ids.get(name)?)
    }

    /// The current state of node `id`.
    pub(crate) fn state(&self, id: NodeId) -> Option<&Arc<NodeState>> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// Every stored node's state.
    pub(crate) fn states(&self) -> impl Iterator<Item = &Arc<NodeState>> {
        self.slots.iter().flatten()
    }

    /// Stores `state` as node `name`'s current state; returns the node's id and the state it replaced.
    ///
    /// # Errors
    /// [`TableFull`] for a new node when `u32::MAX` nodes are stored.
    pub(crate) fn insert(
        &mut self,
        name: &Arc<str>,
        state: Arc<NodeState>,
    ) -> Result<(NodeId, Option<Arc<NodeState>>), TableFull> {
        if let Some(&id) = self.ids.get(&**name)
            && let Some(slot) = self.slots.get_mut(id.0 as usize)
        {
            return Ok((id, slot.replace(state)));
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = NodeId(u32::try_from(self.slots.len()).map_err(|_| TableFull)?);
                self.slots.push(None);
                id
            }
        };
        if let Some(slot) = self.slots.get_mut(id.0 as usize) {
            *slot = Some(state);
        }
        self.ids.insert(Arc::clone(name), id);
        Ok((id, None))
    }

    /// Removes node `name`; returns its former id and state. The caller withdraws its pods from the index.
    pub(crate) fn remove(&mut self, name: &str) -> Option<(NodeId, Arc<NodeState>)> {
        let id = self.ids.remove(name)?;
        let state = self.slots.get_mut(id.0 as usize)?.take()?;
        self.free.push(id);
        Some((id, state))
    }
}

/// Where the nodes serving one pod keep it: the first inline (the usual single-node case costs no extra
/// allocation), others in no particular order (16 bytes per pod in all).
#[derive(Debug)]
pub(crate) struct PodEntry {
    /// The first node's location.
    pub(crate) first: Location,
    /// Other nodes' locations; never `Some` of an empty vector.
    // Boxed on purpose: 8 bytes for the usual entry without other nodes, where a `Vec` would take 24 and a boxed
    // slice 16, making each index bucket (key and entry) 48 or 40 bytes instead of 32.
    #[allow(clippy::box_collection)]
    others: Option<Box<Vec<Location>>>,
}

// === impl PodEntry ===

impl PodEntry {
    /// The locations of every node serving the pod.
    pub(crate) fn locations(&self) -> impl Iterator<Item = Location> + '_ {
        std::iter::once(self.first).chain(self.others.iter().flat_map(|o| o.iter().copied()))
    }

    /// Whether more than one node serves the pod.
    pub(crate) fn is_shared(&self) -> bool {
        self.others.is_some()
    }

    /// Sets the location of `at.node`, adding it if absent; returns whether the pod became shared.
    fn set(&mut self, at: Location) -> bool {
        if self.first.node == at.node {
            self.first = at;
            return false;
        }
        let others = self.others.get_or_insert_default();
        match others.iter_mut().find(|l| l.node == at.node) {
            Some(l) => {
                *l = at;
                false
            }
            None => {
                others.push(at);
                others.len() == 1
            }
        }
    }

    /// Removes `node`'s location; returns whether it was the last one (the entry is then to be removed) and
    /// whether the pod stopped being shared.
    fn remove(&mut self, node: NodeId) -> (bool, bool) {
        let Some(others) = &mut self.others else {
            return (self.first.node == node, false);
        };
        if self.first.node == node {
            if let Some(next) = others.pop() {
                self.first = next;
            }
        } else if let Some(at) = others.iter().position(|l| l.node == node) {
            others.swap_remove(at);
        }
        let unshared = others.is_empty();
        if unshared {
            self.others = None;
        }
        (false, unshared)
    }
}

/// A pod found in the index: its names as the index holds them (shared with the node states, so most comparisons
/// against a node's pod are pointer comparisons) and its entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'a> {
    /// Namespace.
    pub(crate) namespace: &'a Arc<str>,
    /// Pod name.
    pub(crate) name: &'a Arc<str>,
    /// Where the nodes serving it keep it.
    pub(crate) entry: &'a PodEntry,
}

/// Where each servable pod is kept, by namespace then name.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    by_namespace: HashMap<Arc<str>, HashMap<Arc<str>, PodEntry>>,
    /// Number of entries with more than one node.
    shared: usize,
}

// === impl PodIndex ===

impl PodIndex {
    /// The entry of `namespace/pod`.
    pub(crate) fn get(&self, namespace: &str, pod: &str) -> Option<Found<'_>> {
        let (namespace, pods) = self.by_namespace.get_key_value(namespace)?;
        let (name, entry) = pods.get_key_value(pod)?;
        Some(Found {
            namespace,
            name,
            entry,
        })
    }

    /// Number of locations recorded (one per node and pod it serves).
    #[cfg(test)]
    pub(crate) fn locations(&self) -> usize {
        self.by_namespace
            .values()
            .flat_map(|pods| pods.values())
            .map(|entry| entry.locations().count())
            .sum()
    }

    /// Every pod served by more than one node; nothing to visit in the usual case.
    pub(crate) fn shared(&self) -> impl Iterator<Item = Found<'_>> {
        let any = self.shared > 0;
        self.by_namespace
            .iter()
            .filter(move |_| any)
            .flat_map(|(namespace, pods)| {
                pods.iter()
                    .filter(|(_, entry)| entry.is_shared())
                    .map(move |(name, entry)| Found {
                        namespace,
                        name,
                        entry,
                    })
            })
    }

    /// Records that `at.node` serves `namespace/pod` at position `at.pod`.
    pub(crate) fn serve(&mut self, at: Location, namespace: &Arc<str>, pod: &Arc<str>) {
        let pods = match self.by_namespace.get_mut(&**namespace) {
            Some(pods) => pods,
            None => self.by_namespace.entry(Arc::clone(namespace)).or_default(),
        };
        match pods.get_mut(&**pod) {
            Some(entry) => {
                if entry.set(at) {
                    self.shared += 1;
                }
            }
            None => {
                let entry = PodEntry {
                    first: at,
                    others: None,
                };
                pods.insert(Arc::clone(pod), entry);
            }
        }
    }

    /// Records that `node` no longer serves `namespace/pod`.
    pub(crate) fn withdraw(&mut self, node: NodeId, namespace: &str, pod: &str) {
        let Some(pods) = self.by_namespace.get_mut(namespace) else {
            return;
        };
        let Some(entry) = pods.get_mut(pod) else {
            return;
        };
        let (last, unshared) = entry.remove(node);
        if unshared {
            self.shared = self.shared.saturating_sub(1);
        }
        if last {
            pods.remove(pod);
            if pods.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
    }
}
