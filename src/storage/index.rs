//! The pod index: (namespace, pod) → the precomputed usage to serve, chosen among the nodes that report the pod.
//!
//! A pod reported by two nodes (e.g. a name reused on another node while the old one still reports it) is served
//! from the point with the newer timestamp; on a tie, from the lexically smaller node name. The choice depends only
//! on the stored candidates, never on arrival order. Pure data structure: no locks, no clock.

use foldhash::HashMap;
use std::sync::Arc;

use crate::api::PodUsage;

/// One node's servable usage for a pod.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// The node reporting the pod.
    pub(crate) node: Arc<str>,
    /// Its precomputed usage.
    pub(crate) usage: Arc<PodUsage>,
}

impl Candidate {
    /// Newer timestamp wins; on a tie, the smaller node name.
    fn beats(&self, other: &Candidate) -> bool {
        let (mine, theirs) = (self.usage.timestamp_ms, other.usage.timestamp_ms);
        mine > theirs || (mine == theirs && self.node < other.node)
    }
}

/// Node names are shared `Arc`s, so the pointer comparison settles nearly every check without comparing bytes.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The candidates for one pod: the winner inline (the usual single-node case costs no extra allocation).
#[derive(Debug)]
pub(crate) struct PodEntry {
    /// The candidate served.
    pub(crate) winner: Candidate,
    /// Other nodes' candidates, in no particular order: a boxed slice, 16 bytes and no allocation for the usual pod
    /// that has none (changes rebuild it, which is rare).
    others: Box<[Candidate]>,
}

impl PodEntry {
    /// Moves the best candidate into `winner`.
    fn elect(&mut self) {
        for other in &mut self.others {
            if other.beats(&self.winner) {
                std::mem::swap(other, &mut self.winner);
            }
        }
    }

    /// Applies `f` to the other candidates as a `Vec`.
    fn edit_others<T>(&mut self, f: impl FnOnce(&mut Vec<Candidate>) -> T) -> T {
        let mut others = std::mem::take(&mut self.others).into_vec();
        let out = f(&mut others);
        self.others = others.into_boxed_slice();
        out
    }
}

/// All servable pods, by namespace then name.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    by_namespace: HashMap<Arc<str>, HashMap<Arc<str>, PodEntry>>,
}

impl PodIndex {
    /// The candidate served for a pod.
    pub(crate) fn get(&self, namespace: &str, pod: &str) -> Option<&Candidate> {
        self.by_namespace
            .get(namespace)?
            .get(pod)
            .map(|entry| &entry.winner)
    }

    /// Every pod's served candidate.
    pub(crate) fn winners(&self) -> impl Iterator<Item = &Candidate> {
        self.by_namespace
            .values()
            .flat_map(|pods| pods.values().map(|entry| &entry.winner))
    }

    /// Sets `node`'s candidate for `namespace/pod`; a replaced usage is pushed to `garbage` (to be dropped
    /// off-lock).
    pub(crate) fn serve(
        &mut self,
        node: &Arc<str>,
        namespace: &Arc<str>,
        pod: &Arc<str>,
        usage: &Arc<PodUsage>,
        garbage: &mut Vec<Arc<PodUsage>>,
    ) {
        let usage = Arc::clone(usage);
        let pods = match self.by_namespace.get_mut(&**namespace) {
            Some(pods) => pods,
            None => self.by_namespace.entry(Arc::clone(namespace)).or_default(),
        };
        let Some(entry) = pods.get_mut(&**pod) else {
            let winner = Candidate {
                node: Arc::clone(node),
                usage,
            };
            pods.insert(
                Arc::clone(pod),
                PodEntry {
                    winner,
                    others: Box::default(),
                },
            );
            return;
        };
        let slot = if same(&entry.winner.node, node) {
            Some(&mut entry.winner)
        } else {
            entry.others.iter_mut().find(|c| same(&c.node, node))
        };
        match slot {
            Some(slot) => garbage.push(std::mem::replace(&mut slot.usage, usage)),
            None => entry.edit_others(|others| {
                others.push(Candidate {
                    node: Arc::clone(node),
                    usage,
                })
            }),
        }
        entry.elect();
    }

    /// Removes `node`'s candidate for `namespace/pod`; the removed usage is pushed to `garbage`.
    pub(crate) fn withdraw(
        &mut self,
        node: &str,
        namespace: &str,
        pod: &str,
        garbage: &mut Vec<Arc<PodUsage>>,
    ) {
        let Some(pods) = self.by_namespace.get_mut(namespace) else {
            return;
        };
        let Some(entry) = pods.get_mut(pod) else {
            return;
        };
        if *entry.winner.node == *node {
            match entry.edit_others(Vec::pop) {
                Some(next) => {
                    garbage.push(std::mem::replace(&mut entry.winner, next).usage);
                    entry.elect();
                }
                None => {
                    if let Some(removed) = pods.remove(pod) {
                        garbage.push(removed.winner.usage);
                    }
                    if pods.is_empty() {
                        self.by_namespace.remove(namespace);
                    }
                }
            }
        } else if let Some(at) = entry.others.iter().position(|c| *c.node == *node) {
            garbage.push(entry.edit_others(|others| others.swap_remove(at)).usage);
        }
    }
}
