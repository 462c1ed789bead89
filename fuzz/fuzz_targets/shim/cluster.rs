//! Stand-in for `src/cluster.rs` in fuzz builds: the seam types `api` and `selector` import, without the kube
//! watches (`cluster::{index, nodes, pods}`) that would pull kube and k8s-openapi into the instrumented build.
//! `Labels` and the label selector are the real `src/cluster/{labels,selector}.rs`, compiled in place.
//!
//! These are shared contracts whose shape must not change (see the project brief); if one does change, the fuzz
//! build fails to compile against `src/api`, which is the signal to update this copy. Must not hold logic.

use std::sync::Arc;

/// The real `src/cluster/{labels,selector}.rs`, declared inside an inline module pointing at `src/cluster` so that
/// their own `mod tests;` resolve beside them (for rustfmt; tests are not compiled here).
#[path = "../../../src/cluster"]
mod real {
    pub mod labels;
    pub mod selector;

    /// `selector.rs` imports `super::Labels`, as in `src/cluster.rs`.
    pub use labels::Labels;
}

pub use real::Labels;
pub use real::selector::{self, LabelSelector};

/// Same shape as `crate::cluster::ScrapeTarget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub node: Arc<str>,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub ready: bool,
}

/// Same shape as `crate::cluster::NodeInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: Arc<str>,
    pub labels: Arc<Labels>,
    pub target: Option<ScrapeTarget>,
}

/// Same shape as `crate::cluster::PodInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub labels: Arc<Labels>,
}

/// Same as `crate::cluster::ClusterView`.
pub trait ClusterView: Send + Sync + 'static {
    fn is_synced(&self) -> bool;
    fn nodes(&self) -> Vec<Arc<NodeInfo>>;
    fn node(&self, name: &str) -> Option<Arc<NodeInfo>>;
    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>>;
    /// Same default as the real trait (a seam contract, not logic of the shim's own).
    fn pods_matching(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Arc<PodInfo>> {
        let mut pods = self.pods(namespace);
        pods.retain(|pod| selector.matches(&pod.labels));
        pods
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>>;
}
