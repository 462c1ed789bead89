//! The Node watch: every Node is trimmed to a [`NodeInfo`] (labels, `Ready`, [`ScrapeTarget`]) and fed into the
//! [`Index`]; nothing else of the Node object is kept.
//!
//! Address choice follows metrics-server: the first address of the first type in `--kubelet-preferred-address-types`
//! that the node has. The port is `--kubelet-port`, or the node's `status.daemonEndpoints.kubeletEndpoint.port` when
//! `--kubelet-use-node-status-port` is set and that port is non-zero. The path is `/metrics/resource` unless the node
//! carries the `metrics.k8s.io/resource-metrics-path` annotation (kwok fake nodes). This module must not scrape.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};

use super::{Index, Labels, NodeInfo, ScrapeTarget};
use crate::shutdown;

/// The kubelet path used when a node has no path annotation.
pub const DEFAULT_METRICS_PATH: &str = "/metrics/resource";

/// Node annotation that overrides [`DEFAULT_METRICS_PATH`] for that node (metrics-server's name).
pub const METRICS_PATH_ANNOTATION: &str = "metrics.k8s.io/resource-metrics-path";

/// How Nodes become scrape targets (from `--kubelet-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOptions {
    /// `--kubelet-preferred-address-types`, in priority order (`InternalIP`, `Hostname`, ...).
    pub preferred_address_types: Vec<String>,
    /// `--kubelet-port`.
    pub kubelet_port: u16,
    /// `--kubelet-use-node-status-port`.
    pub use_node_status_port: bool,
}

// === impl TargetOptions ===

impl TargetOptions {
    /// The options implied by the validated kubelet configuration.
    pub fn from_config(kubelet: &crate::config::KubeletConfig) -> Self {
        TargetOptions {
            preferred_address_types: kubelet
                .preferred_address_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            kubelet_port: kubelet.port,
            use_node_status_port: kubelet.use_node_status_port,
        }
    }
}

/// Trims a Node to what the server needs. Pure: no I/O, no logging.
///
/// A node without a name is given an empty one (the API server never sends such a node).
pub fn trim_node(node: &Node, options: &TargetOptions) -> NodeInfo {
    let name: Arc<str> = Arc::from(node.metadata.name.as_deref().unwrap_or_default());
    let labels = node
        .metadata
        .labels
        .as_ref()
        .map(Labels::from)
        .unwrap_or_default();
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conds| conds.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let host = status
        .and_then(|s| s.addresses.as_deref())
        .and_then(|addresses| {
            options.preferred_address_types.iter().find_map(|wanted| {
                addresses
                    .iter()
                    .find(|a| a.type_ == *wanted && !a.address.is_empty())
                    .map(|a| a.address.clone())
            })
        });
    let status_port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .and_then(|e| u16::try_from(e.port).ok())
        .filter(|port| *port != 0);
    let port = match status_port {
        Some(port) if options.use_node_status_port => port,
        _ => options.kubelet_port,
    };
    let path = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(METRICS_PATH_ANNOTATION))
        .filter(|p| !p.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_METRICS_PATH.to_owned());
    let target = host.map(|host| ScrapeTarget {
        node: name.clone(),
        host,
        port,
        path,
        ready,
    });
    NodeInfo {
        name,
        labels: Arc::new(labels),
        target,
    }
}

/// Watches Nodes until `shutdown`, keeping `index` up to date and marking nodes synced after each full list.
///
/// Watch errors are logged and retried with kube's default backoff; they never end the watch.
pub async fn watch(
    client: kube::Client,
    index: Arc<Index>,
    options: TargetOptions,
    shutdown: shutdown::Signal,
) {
    let api = kube::Api::<Node>::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut relist: Vec<NodeInfo> = Vec::new();
    let mut unaddressed = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        match event {
            None => return,
            Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => relist.clear(),
            Some(Ok(watcher::Event::InitApply(node))) => {
                relist.push(note_address(
                    trim_node(&node, &options),
                    &options,
                    &mut unaddressed,
                ));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                tracing::debug!(nodes = relist.len(), "node list complete");
                index.replace_nodes(std::mem::take(&mut relist));
            }
            Some(Ok(watcher::Event::Apply(node))) => {
                index.apply_node(note_address(
                    trim_node(&node, &options),
                    &options,
                    &mut unaddressed,
                ));
            }
            Some(Ok(watcher::Event::Delete(node))) => {
                let name = node.metadata.name.as_deref().unwrap_or_default();
                unaddressed.remove(name);
                index.delete_node(name);
            }
        }
    }
}

/// Logs once per node when it has no address of the preferred types (again if it regains and then loses one).
fn note_address(
    info: NodeInfo,
    options: &TargetOptions,
    unaddressed: &mut HashSet<Arc<str>>,
) -> NodeInfo {
    if info.target.is_some() {
        unaddressed.remove(&info.name);
    } else if unaddressed.insert(info.name.clone()) {
        tracing::error!(
            node = %info.name,
            types = ?options.preferred_address_types,
            "node has no address of the preferred types; it will not be scraped"
        );
    }
    info
}

#[cfg(test)]
mod tests;
