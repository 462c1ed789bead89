//! Kubelet `/metrics/resource` body (Prometheus text 0.0.4) → [`NodeBatch`]. Pure, allocation-light, fuzzed and
//! benchmarked; knows nothing of sockets or storage.

use crate::time::TimestampMs;

/// A cumulative CPU counter sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Cumulative CPU time, in nanocore-seconds (nanoseconds of CPU time) since the node/container started.
    pub cumulative_cpu_ns: u64,
    /// Sample time in ms since the epoch (the line's own timestamp, or the request time when it has none).
    pub timestamp_ms: TimestampMs,
}

/// An instantaneous byte gauge sample (working set, swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeSample {
    /// Value in bytes.
    pub bytes: u64,
    /// Sample time in ms since the epoch (the line's own timestamp, or the request time when it has none).
    pub timestamp_ms: TimestampMs,
}

/// The node-level series of one body. Absent or rejected series are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeSample {
    /// `node_cpu_usage_seconds_total`.
    pub cpu: Option<CpuSample>,
    /// `node_memory_working_set_bytes`.
    pub memory: Option<GaugeSample>,
    /// `node_swap_usage_bytes`.
    pub swap: Option<GaugeSample>,
}

/// One container's series from one body. Absent or rejected series are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSample {
    /// `namespace` label.
    pub namespace: String,
    /// `pod` label.
    pub pod: String,
    /// `container` label.
    pub container: String,
    /// `container_cpu_usage_seconds_total`.
    pub cpu: Option<CpuSample>,
    /// `container_memory_working_set_bytes`.
    pub memory: Option<GaugeSample>,
    /// `container_swap_usage_bytes`.
    pub swap: Option<GaugeSample>,
    /// `container_start_time_seconds`, converted to ms since the epoch (the value, never the line's timestamp).
    pub start_time_ms: Option<TimestampMs>,
}

/// Everything one kubelet body says that the server uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeBatch {
    /// Node series.
    pub node: NodeSample,
    /// Containers sorted by (namespace, pod, container), one entry per container (duplicate lines: last wins).
    pub containers: Vec<ContainerSample>,
    /// The kubelet reported `resource_scrape_error 1` (or the deprecated `scrape_error 1`): it failed to collect.
    pub kubelet_error: bool,
    /// Series of a used family rejected individually (NaN, ±Inf, negative, > i64::MAX, missing labels).
    pub rejected_series: u32,
}
