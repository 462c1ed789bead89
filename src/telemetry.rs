//! Telemetry: the tracing subscriber (text or JSON, `-v` levels) and the server's own Prometheus metrics.
//!
//! [`SelfMetrics`] is the one place the metrics engine is named; other modules record through its methods and never
//! see an engine type. It keeps metrics-server's six `metrics_server_*` families (same names, labels and buckets) so
//! dashboards carry over, plus our own `resource_metrics_server_*` families.

use std::time::Duration;

/// The server's self-metrics (to be implemented by the serving work; signatures are the contract).
#[derive(Debug, Default)]
pub struct SelfMetrics {}

impl SelfMetrics {
    /// A fresh set of metrics with every family registered.
    pub fn new() -> Self {
        SelfMetrics {}
    }
    /// One kubelet request finished: `metrics_server_kubelet_request_duration_seconds{node}`,
    /// `metrics_server_kubelet_request_total{success}`, `metrics_server_kubelet_last_request_time_seconds{node}`
    /// (`at_unix_seconds` = when the request was sent).
    pub fn kubelet_request(
        &self,
        node: &str,
        duration: Duration,
        success: bool,
        at_unix_seconds: f64,
    ) {
        let _ = (node, duration, success, at_unix_seconds);
    }
    /// A failed scrape, by cause (`timeout`, `connect`, `tls`, `http_status`, `decode`, `body_too_large`,
    /// `kubelet_error`, `no_address`): `resource_metrics_server_scrape_failures_total{reason}`.
    pub fn scrape_failure(&self, reason: &'static str) {
        let _ = reason;
    }
    /// A node left: remove its per-node series.
    pub fn forget_node(&self, node: &str) {
        let _ = node;
    }
    /// One full scrape round (every node's phase once): `metrics_server_manager_tick_duration_seconds`.
    pub fn tick(&self, duration: Duration) {
        let _ = duration;
    }
    /// Servable points: `metrics_server_storage_points{type="node"|"container"}`.
    pub fn storage_points(&self, nodes: u64, containers: u64) {
        let _ = (nodes, containers);
    }
    /// Age of one returned object's metric (now − timestamp): `metrics_server_api_metric_freshness_seconds`.
    pub fn freshness(&self, age_seconds: f64) {
        let _ = age_seconds;
    }
    /// Prometheus text exposition (format 0.0.4) of every family.
    pub fn render(&self) -> Vec<u8> {
        Vec::new()
    }
}
