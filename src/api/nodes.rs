//! NodeMetrics list and get: which nodes are returned, in which order, and why a get fails.
//!
//! List: `ClusterView::nodes` (already `--node-selector`-filtered, sorted by name) → label selector → field
//! selector → usage; nodes without servable usage are omitted. Get: `ClusterView::node` (ignores
//! `--node-selector`) → usage. This module must not render bodies.

use super::selector::{FieldSelector, LabelSelector};
use super::status::{Error, MetricsKind};
use super::types::NodeItem;
use crate::api::MetricsSource;
use crate::cluster::ClusterView;
use crate::time::TimestampMs;

/// Nodes matching both selectors that have servable usage at `now_ms`, sorted by name.
pub(crate) fn list(
    cluster: &dyn ClusterView,
    metrics: &dyn MetricsSource,
    labels: &LabelSelector,
    fields: &FieldSelector,
    now_ms: TimestampMs,
) -> Vec<NodeItem> {
    let mut items: Vec<NodeItem> = cluster
        .nodes()
        .into_iter()
        .filter(|node| labels.matches(&node.labels) && fields.matches(&node.name, ""))
        .filter_map(|info| {
            metrics
                .node_usage(&info.name, now_ms)
                .map(|usage| NodeItem { info, usage })
        })
        .collect();
    // The view promises name order; sorting an already sorted vector is cheap and keeps the contract local.
    if !items.is_sorted_by(|a, b| a.info.name.as_ref() <= b.info.name.as_ref()) {
        items.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    }
    items
}

/// One node's metrics.
///
/// # Errors
/// [`Error::NodeNotFound`] when the node cache does not know it; [`Error::MetricsNotFound`] when it has no
/// servable usage.
pub(crate) fn get(
    cluster: &dyn ClusterView,
    metrics: &dyn MetricsSource,
    name: &str,
    now_ms: TimestampMs,
) -> Result<NodeItem, Error> {
    let info = cluster
        .node(name)
        .ok_or_else(|| Error::NodeNotFound(name.to_owned()))?;
    let usage = metrics
        .node_usage(name, now_ms)
        .ok_or_else(|| Error::MetricsNotFound {
            kind: MetricsKind::Node,
            name: name.to_owned(),
        })?;
    Ok(NodeItem { info, usage })
}
