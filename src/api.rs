//! The `metrics.k8s.io` API: routing, discovery, NodeMetrics/PodMetrics handlers, selectors, quantities, `Status`
//! and `Table` bodies.
//!
//! The API is transport-free: [`Api::handle`] takes an [`ApiRequest`] and a `now` and returns an [`ApiResponse`]
//! (status, content type, body bytes). The `server` module converts HTTP to and from these. It reads usage through
//! the [`MetricsSource`] trait (implemented by `storage`) and objects through [`crate::cluster::ClusterView`], and
//! never knows how points are stored.

use std::sync::Arc;

use crate::time::TimestampMs;

/// CPU, memory and swap usage of a node or container over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU usage rate, in nanocores (10⁻⁹ CPU seconds per second).
    pub cpu_nanocores: u64,
    /// Memory working set, in bytes (latest sample, not averaged).
    pub memory_bytes: u64,
    /// Swap usage, in bytes, when the kubelet reports it.
    pub swap_bytes: Option<u64>,
}

/// A node's servable usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// End of the window: the newer CPU sample's timestamp.
    pub timestamp_ms: TimestampMs,
    /// Length of the window between the two CPU samples used, in milliseconds (> 0).
    pub window_ms: i64,
    /// The usage over that window.
    pub usage: Usage,
}

/// One container's usage inside a [`PodUsage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: Arc<str>,
    /// The usage over the pod's window.
    pub usage: Usage,
}

/// A pod's servable usage: every container produced a rate (a partial pod is never served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// Timestamp of the container with the earliest timestamp (what the HPA's start-up check expects).
    pub timestamp_ms: TimestampMs,
    /// Window of that same container, in milliseconds (> 0).
    pub window_ms: i64,
    /// Containers sorted by name.
    pub containers: Vec<ContainerUsage>,
}

/// Usage lookups, implemented by `storage`. Reads never wait for a scrape.
pub trait MetricsSource: Send + Sync + 'static {
    /// The node's usage, if it has a window that is not older than the staleness bound at `now_ms`.
    fn node_usage(&self, node: &str, now_ms: TimestampMs) -> Option<NodeUsage>;
    /// The pod's usage, if every container has a window and it is not stale at `now_ms`.
    fn pod_usage(&self, namespace: &str, pod: &str, now_ms: TimestampMs) -> Option<Arc<PodUsage>>;
    /// At least one node point and one container point can be served at `now_ms` (metrics-server's
    /// `metric-storage-ready`).
    fn is_ready(&self, now_ms: TimestampMs) -> bool;
}

/// One request as the API sees it: no transport types.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// HTTP method, upper case (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Path, percent-encoded as received, without the query (`/apis/metrics.k8s.io/v1beta1/nodes`).
    pub path: &'a str,
    /// Raw query string without the `?` (form-urlencoded; `+` means space), empty when absent.
    pub query: &'a str,
    /// The `Accept` header, empty when absent.
    pub accept: &'a str,
}

/// A complete response: the `server` module writes it out unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: String,
    /// Extra headers (`Vary`, `ETag`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The metrics.k8s.io API over a cluster view and a metrics source.
pub struct Api {
    cluster: Arc<dyn crate::cluster::ClusterView>,
    metrics: Arc<dyn MetricsSource>,
}

impl Api {
    /// An API reading objects from `cluster` and usage from `metrics`.
    pub fn new(cluster: Arc<dyn crate::cluster::ClusterView>, metrics: Arc<dyn MetricsSource>) -> Self {
        Api { cluster, metrics }
    }

    /// Answers one request; `now_ms` is read once by the caller and used for staleness and `creationTimestamp`.
    pub fn handle(&self, request: ApiRequest<'_>, now_ms: TimestampMs) -> ApiResponse {
        let _ = (&self.cluster, &self.metrics, request, now_ms);
        ApiResponse { status: 501, content_type: "text/plain".into(), headers: Vec::new(), body: b"not yet".to_vec() }
    }

    /// The authorization attributes of a request (resource attributes for metrics paths, non-resource otherwise).
    pub fn attributes(request: ApiRequest<'_>) -> crate::auth::Attributes {
        crate::auth::Attributes::NonResource { verb: request.method.to_ascii_lowercase(), path: request.path.to_owned() }
    }
}
