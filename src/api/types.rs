//! The two served kinds, `NodeMetrics` and `PodMetrics` (and their lists), written as JSON in apimachinery's
//! field order straight into a `Vec<u8>`.
//!
//! Items pair the cluster's object ([`NodeInfo`]/[`PodInfo`]) with its usage; [`MetricsObject`] is what lists,
//! gets and Tables need from either. This module must not decide which objects are returned.

use std::sync::Arc;

use super::quantity::{self, RFC3339_SECONDS_LEN};
use super::render::{write_metadata, write_str, write_usage};
use super::route::GroupVersion;
use crate::api::{NodeUsage, PodUsage, Usage};
use crate::cluster::{Labels, NodeInfo, PodInfo};
use crate::time::TimestampMs;

/// What every response of one request shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderContext {
    /// Version of the request path (the objects' `apiVersion`).
    pub(crate) version: GroupVersion,
    /// `creationTimestamp` of every object: the request's `now`, RFC 3339 whole seconds.
    pub(crate) created: [u8; RFC3339_SECONDS_LEN],
}

/// A node with servable usage.
#[derive(Debug, Clone)]
pub(crate) struct NodeItem {
    /// The node.
    pub(crate) info: Arc<NodeInfo>,
    /// Its usage.
    pub(crate) usage: NodeUsage,
}

/// A Running pod with servable usage.
#[derive(Debug, Clone)]
pub(crate) struct PodItem {
    /// The pod.
    pub(crate) info: Arc<PodInfo>,
    /// Its usage.
    pub(crate) usage: PodUsage,
}

/// What lists, gets and Tables need from a metrics object.
pub(crate) trait MetricsObject {
    /// `NodeMetrics` or `PodMetrics`.
    const KIND: &'static str;
    /// `NodeMetricsList` or `PodMetricsList`.
    const LIST_KIND: &'static str;
    /// Typical JSON size of one list item in bytes, to size a list body once (a realloc of a 50 MB body costs
    /// a copy): metadata with two labels plus the usage of one node or of a two-container pod.
    const SIZE_HINT: usize;
    /// Object name.
    fn name(&self) -> &str;
    /// Namespace of a namespaced object.
    fn namespace(&self) -> Option<&str>;
    /// Labels copied from the node or pod.
    fn labels(&self) -> &Labels;
    /// End of the usage window.
    fn timestamp_ms(&self) -> TimestampMs;
    /// Window length in milliseconds.
    fn window_ms(&self) -> i64;
    /// Usage of the whole object (a pod sums its containers; swap only when some container has it).
    fn total_usage(&self) -> Usage;
    /// Appends the kind's usage field: `"usage":{…}` or `"containers":[…]`.
    fn write_usage_field(&self, buf: &mut Vec<u8>);
}

// === impl NodeItem ===

impl MetricsObject for NodeItem {
    const KIND: &'static str = "NodeMetrics";
    const LIST_KIND: &'static str = "NodeMetricsList";
    const SIZE_HINT: usize = 256;

    fn name(&self) -> &str {
        &self.info.name
    }
    fn namespace(&self) -> Option<&str> {
        None
    }
    fn labels(&self) -> &Labels {
        &self.info.labels
    }
    fn timestamp_ms(&self) -> TimestampMs {
        self.usage.timestamp_ms
    }
    fn window_ms(&self) -> i64 {
        self.usage.window_ms
    }
    fn total_usage(&self) -> Usage {
        self.usage.usage
    }
    fn write_usage_field(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"\"usage\":");
        write_usage(buf, &self.usage.usage);
    }
}

// === impl PodItem ===

impl MetricsObject for PodItem {
    const KIND: &'static str = "PodMetrics";
    const LIST_KIND: &'static str = "PodMetricsList";
    const SIZE_HINT: usize = 400;

    fn name(&self) -> &str {
        &self.info.name
    }
    fn namespace(&self) -> Option<&str> {
        Some(&self.info.namespace)
    }
    fn labels(&self) -> &Labels {
        &self.info.labels
    }
    fn timestamp_ms(&self) -> TimestampMs {
        self.usage.timestamp_ms
    }
    fn window_ms(&self) -> i64 {
        self.usage.window_ms
    }
    fn total_usage(&self) -> Usage {
        self.usage
            .containers
            .iter()
            .fold(Usage::default(), |total, c| Usage {
                cpu_nanocores: total.cpu_nanocores.saturating_add(c.usage.cpu_nanocores),
                memory_bytes: total.memory_bytes.saturating_add(c.usage.memory_bytes),
                swap_bytes: match (total.swap_bytes, c.usage.swap_bytes) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
                },
            })
    }
    fn write_usage_field(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"\"containers\":[");
        for (i, container) in self.usage.containers.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"{\"name\":");
            write_str(buf, container.name);
            buf.extend_from_slice(b",\"usage\":");
            write_usage(buf, &container.usage);
            buf.push(b'}');
        }
        buf.push(b']');
    }
}

// === writing ===

/// Appends `"kind":"…","apiVersion":"…",` for a top-level object.
pub(crate) fn write_type_meta(buf: &mut Vec<u8>, kind: &str, api_version: &str) {
    buf.extend_from_slice(b"\"kind\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"apiVersion\":\"");
    buf.extend_from_slice(api_version.as_bytes());
    buf.extend_from_slice(b"\",");
}

/// Appends `"metadata":{…}` of an object.
pub(crate) fn write_object_metadata<T: MetricsObject>(
    buf: &mut Vec<u8>,
    ctx: &RenderContext,
    item: &T,
) {
    buf.extend_from_slice(b"\"metadata\":");
    write_metadata(
        buf,
        item.name(),
        item.namespace(),
        &ctx.created,
        item.labels(),
    );
}

/// Appends one object; `with_type_meta` for a top-level get (list items carry no kind, as in metrics-server).
pub(crate) fn write_object<T: MetricsObject>(
    buf: &mut Vec<u8>,
    ctx: &RenderContext,
    item: &T,
    with_type_meta: bool,
) {
    buf.push(b'{');
    if with_type_meta {
        write_type_meta(buf, T::KIND, ctx.version.api_version());
    }
    write_object_metadata(buf, ctx, item);
    buf.extend_from_slice(b",\"timestamp\":\"");
    buf.extend_from_slice(&quantity::rfc3339_seconds(item.timestamp_ms()));
    buf.extend_from_slice(b"\",\"window\":\"");
    quantity::write_duration_ms(buf, item.window_ms());
    buf.extend_from_slice(b"\",");
    item.write_usage_field(buf);
    buf.push(b'}');
}

/// Renders a `NodeMetricsList` / `PodMetricsList` (`"metadata":{}`, no continue token).
pub(crate) fn render_list<T: MetricsObject>(ctx: &RenderContext, items: &[T]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + items.len() * T::SIZE_HINT);
    buf.push(b'{');
    write_type_meta(&mut buf, T::LIST_KIND, ctx.version.api_version());
    buf.extend_from_slice(b"\"metadata\":{},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_object(&mut buf, ctx, item, false);
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// Renders one object with its kind and apiVersion.
pub(crate) fn render_object<T: MetricsObject>(ctx: &RenderContext, item: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(T::SIZE_HINT * 2);
    write_object(&mut buf, ctx, item, true);
    buf
}
