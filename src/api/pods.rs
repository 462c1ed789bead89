//! PodMetrics list and get: which Running pods are returned, in which order, and why a get fails.
//!
//! List: `ClusterView::pods_matching` the label selector in the path's namespace (or the namespace a
//! `metadata.namespace=` field selector fixes) → field selector → usage; pods without servable usage are omitted.
//! The view applies the label selector so that an index can answer it without visiting every pod. Get:
//! `ClusterView::pod` → usage. This module must not render bodies.

use super::selector::{FieldSelector, LabelSelector};
use super::status::{Error, MetricsKind};
use super::types::PodItem;
use crate::api::MetricsSource;
use crate::cluster::ClusterView;
use crate::time::TimestampMs;

/// Running pods in `namespace` (all when `None`) matching both selectors that have servable usage at `now_ms`,
/// sorted by (namespace, name).
pub(crate) fn list(
    cluster: &dyn ClusterView,
    metrics: &dyn MetricsSource,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
    now_ms: TimestampMs,
) -> Vec<PodItem> {
    // A field selector naming one namespace narrows an all-namespaces list to a cheap namespaced lookup.
    let scope = namespace.or_else(|| fields.required_namespace());
    let mut items: Vec<PodItem> = cluster
        .pods_matching(scope, labels)
        .into_iter()
        .filter(|pod| fields.matches(&pod.name, &pod.namespace))
        .filter_map(|info| {
            metrics
                .pod_usage(&info.namespace, &info.name, now_ms)
                .map(|usage| PodItem { info, usage })
        })
        .collect();
    if !items.is_sorted_by(|a, b| key(a) <= key(b)) {
        items.sort_by(|a, b| key(a).cmp(&key(b)));
    }
    items
}

/// The (namespace, name) sort key of an item.
fn key(item: &PodItem) -> (&str, &str) {
    (&item.info.namespace, &item.info.name)
}

/// One pod's metrics.
///
/// # Errors
/// [`Error::PodNotFound`] when the pod is unknown or not Running; [`Error::MetricsNotFound`] (name `ns/pod`)
/// when it has no servable usage.
pub(crate) fn get(
    cluster: &dyn ClusterView,
    metrics: &dyn MetricsSource,
    namespace: &str,
    name: &str,
    now_ms: TimestampMs,
) -> Result<PodItem, Error> {
    let info = cluster
        .pod(namespace, name)
        .ok_or_else(|| Error::PodNotFound(name.to_owned()))?;
    let usage =
        metrics
            .pod_usage(namespace, name, now_ms)
            .ok_or_else(|| Error::MetricsNotFound {
                kind: MetricsKind::Pod,
                name: format!("{namespace}/{name}"),
            })?;
    Ok(PodItem { info, usage })
}
