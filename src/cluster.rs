//! What the cluster holds that we care about: the nodes to scrape and the metadata of Running pods.
//!
//! The kube-backed watches in [`nodes`] and [`pods`] trim every object to a domain type ([`NodeInfo`],
//! [`PodInfo`]) and feed an [`Index`]. Everything downstream (`scrape`, `api`) reads through the [`ClusterView`]
//! trait and never sees a `kube` type. Tests fill an [`Index`] directly.
//!
//! The domain types the view hands out live here too: [`Labels`] (a compact label set) and [`LabelSelector`]
//! (apimachinery's label-selector grammar), which the index uses to answer selector lists and `--node-selector`,
//! and which `api` uses for `labelSelector=`.
//!
//! This module must not scrape, store usage or know about HTTP serving.

pub mod index;
pub mod labels;
pub mod nodes;
pub mod pods;
pub mod selector;

use std::sync::Arc;

pub use index::Index;
pub use labels::Labels;
pub use selector::LabelSelector;

/// Where and how to reach one node's kubelet resource-metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Node name (interned, shared with storage and the API).
    pub node: Arc<str>,
    /// Host part of the URL: the first address of the first preferred address type (IP or DNS name).
    pub host: String,
    /// Kubelet port: `--kubelet-port`, or the node status port when `--kubelet-use-node-status-port` is set.
    pub port: u16,
    /// Request path: `/metrics/resource` or the node's `metrics.k8s.io/resource-metrics-path` annotation.
    pub path: String,
    /// The node's `Ready` condition is `True`. Failures of NotReady nodes are logged at debug only.
    pub ready: bool,
}

/// A node as the server needs it: name, labels and (when an address matched) its scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: Arc<str>,
    /// Node labels (copied into `NodeMetrics.metadata.labels`).
    pub labels: Arc<Labels>,
    /// `None` when no address of the preferred types exists (logged; the node is not scraped).
    pub target: Option<ScrapeTarget>,
}

/// A Running pod's metadata: all the API needs to list it and match selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace (interned).
    pub namespace: Arc<str>,
    /// Pod name.
    pub name: Arc<str>,
    /// Pod labels (copied into `PodMetrics.metadata.labels`).
    pub labels: Arc<Labels>,
}

/// Read access to the cluster's nodes and Running pods, as seen by the watches.
///
/// Implementations answer from memory and never block on the network.
pub trait ClusterView: Send + Sync + 'static {
    /// Both the node and the pod watch have completed their initial list.
    fn is_synced(&self) -> bool;
    /// Nodes matching `--node-selector`, sorted by name. These are scraped and listed.
    fn nodes(&self) -> Vec<Arc<NodeInfo>>;
    /// One node by name, whether or not it matches `--node-selector` (metrics-server's get ignores it).
    fn node(&self, name: &str) -> Option<Arc<NodeInfo>>;
    /// Running pods, in one namespace or all (`None`), sorted by (namespace, name).
    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>>;
    /// Running pods matching `selector`, in one namespace or all (`None`), sorted by (namespace, name).
    ///
    /// The default filters [`ClusterView::pods`]; the [`Index`] answers from its label index instead, without
    /// visiting (or cloning) every pod of the namespace.
    fn pods_matching(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Arc<PodInfo>> {
        let mut pods = self.pods(namespace);
        pods.retain(|pod| selector.matches(&pod.labels));
        pods
    }
    /// One Running pod.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>>;
}
