//! [`SelfMetrics`]: the server's own Prometheus metrics, in a registry owned by the value.
//!
//! Names, labels and buckets of the six `metrics_server_*` families follow metrics-server so that dashboards and
//! alerts carry over. This file is the only one naming the `prometheus` crate; it must not read clocks or serve HTTP.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder,
};

/// metrics-server's binary default resolution, used by [`SelfMetrics::new`] for the tick buckets.
const DEFAULT_RESOLUTION: Duration = Duration::from_secs(60);

/// The server's self-metrics.
#[derive(Debug)]
pub struct SelfMetrics {
    registry: Registry,
    freshness: Histogram,
    kubelet_nodes: KubeletNodes,
    kubelet_total: IntCounterVec,
    tick_duration: Histogram,
    storage_points: GaugeVec,
    scrape_failures: IntCounterVec,
}

/// Content type of [`SelfMetrics::render`]'s output: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

// === impl SelfMetrics ===

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfMetrics {
    /// A fresh set of metrics with every family registered, tick buckets sized for a 60 s resolution.
    pub fn new() -> Self {
        Self::with_resolution(DEFAULT_RESOLUTION)
    }

    /// A fresh set of metrics whose tick-duration buckets are placed around `resolution` (see [`tick_buckets`]).
    // Every `expect` here states a construction invariant of static options (names, labels, buckets).
    #[allow(clippy::expect_used)]
    pub fn with_resolution(resolution: Duration) -> Self {
        let registry = Registry::new();
        let freshness = Histogram::with_opts(
            HistogramOpts::new(
                "metrics_server_api_metric_freshness_seconds",
                "Freshness of metrics exported",
            )
            .buckets(freshness_buckets()),
        )
        .expect("static histogram options are valid");
        let kubelet_nodes = KubeletNodes::new();
        let kubelet_total = IntCounterVec::new(
            Opts::new(
                "metrics_server_kubelet_request_total",
                "Number of requests sent to Kubelet API",
            ),
            &["success"],
        )
        .expect("static counter options are valid");
        let tick_duration = Histogram::with_opts(
            HistogramOpts::new(
                "metrics_server_manager_tick_duration_seconds",
                "The total time spent collecting and storing metrics in seconds",
            )
            .buckets(tick_buckets(resolution)),
        )
        .expect("tick buckets are sorted, finite and positive");
        let storage_points = GaugeVec::new(
            Opts::new(
                "metrics_server_storage_points",
                "Number of metrics points stored.",
            ),
            &["type"],
        )
        .expect("static gauge options are valid");
        let scrape_failures = IntCounterVec::new(
            Opts::new(
                "resource_metrics_server_scrape_failures_total",
                "Failed kubelet scrapes, by cause.",
            ),
            &["reason"],
        )
        .expect("static counter options are valid");
        let metrics = SelfMetrics {
            registry,
            freshness,
            kubelet_nodes,
            kubelet_total,
            tick_duration,
            storage_points,
            scrape_failures,
        };
        metrics.register_all();
        metrics
    }

    // Every `expect` here states a construction invariant of static options (names, labels, buckets).
    #[allow(clippy::expect_used)]
    fn register_all(&self) {
        let collectors: [Box<dyn Collector>; 6] = [
            Box::new(self.freshness.clone()),
            Box::new(self.kubelet_nodes.clone()),
            Box::new(self.kubelet_total.clone()),
            Box::new(self.tick_duration.clone()),
            Box::new(self.storage_points.clone()),
            Box::new(self.scrape_failures.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("family names are distinct in a fresh registry");
        }
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
        self.kubelet_nodes
            .request(node, duration.as_secs_f64(), at_unix_seconds);
        self.kubelet_total
            .with_label_values(&[if success { "true" } else { "false" }])
            .inc();
    }

    /// A failed scrape, by cause (`timeout`, `connect`, `tls`, `http_status`, `decode`, `body_too_large`,
    /// `kubelet_error`, `no_address`): `resource_metrics_server_scrape_failures_total{reason}`.
    pub fn scrape_failure(&self, reason: &'static str) {
        self.scrape_failures.with_label_values(&[reason]).inc();
    }

    /// A node left: remove its per-node series (metrics-server keeps them forever).
    pub fn forget_node(&self, node: &str) {
        // Absent series are not an error: the node may never have been scraped.
        self.kubelet_nodes.forget(node);
    }

    /// One full scrape round (every node's phase once): `metrics_server_manager_tick_duration_seconds`.
    pub fn tick(&self, duration: Duration) {
        self.tick_duration.observe(duration.as_secs_f64());
    }

    /// Servable points: `metrics_server_storage_points{type="node"|"container"}`.
    pub fn storage_points(&self, nodes: u64, containers: u64) {
        // Gauges are f64; point counts stay far below 2^53, where the conversion is exact.
        self.storage_points
            .with_label_values(&["node"])
            .set(nodes as f64);
        self.storage_points
            .with_label_values(&["container"])
            .set(containers as f64);
    }

    /// Age of one returned object's metric (now − timestamp): `metrics_server_api_metric_freshness_seconds`.
    pub fn freshness(&self, age_seconds: f64) {
        self.freshness.observe(age_seconds);
    }

    /// Prometheus text exposition (format 0.0.4, see [`CONTENT_TYPE`]) of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            // Only possible with invalid names or a failing writer; a Vec never fails and names are static.
            tracing::error!(%error, "cannot encode self-metrics");
        }
        out
    }
}

/// The two per-node families, `metrics_server_kubelet_request_duration_seconds{node}` (Prometheus default
/// buckets) and `metrics_server_kubelet_last_request_time_seconds{node}`, kept as one plain record per node.
///
/// A `HistogramVec` child plus a `GaugeVec` child cost about 1.2 KiB per node (two shards of atomic buckets, label
/// pairs, boxed cores, two hash entries): ≈ 6 MiB at 5,000 nodes. A [`NodeRequests`] is 120 bytes plus the name,
/// and the collector renders the same families, byte for byte (a test compares the two).
#[derive(Debug, Clone)]
struct KubeletNodes {
    duration: Desc,
    last_request: Desc,
    /// Shared with the clone handed to the registry.
    nodes: std::sync::Arc<Mutex<HashMap<Box<str>, NodeRequests>>>,
}

/// Number of upper bounds of `metrics_server_kubelet_request_duration_seconds` (the Prometheus defaults).
const DURATION_BUCKETS: usize = prometheus::DEFAULT_BUCKETS.len();

/// One node's kubelet request series.
#[derive(Debug, Clone, Copy, Default)]
struct NodeRequests {
    /// Observations per bucket (not cumulative): `buckets[i]` counts durations in (bound i−1, bound i]; a duration
    /// above the last bound is only in `count`.
    buckets: [u64; DURATION_BUCKETS],
    count: u64,
    sum_seconds: f64,
    last_request_unix_seconds: f64,
}

impl KubeletNodes {
    // Every `expect` here states a construction invariant of static options (names, labels).
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let desc = |name: &str, help: &str| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                vec!["node".to_owned()],
                HashMap::new(),
            )
            .expect("static descriptor options are valid")
        };
        Self {
            duration: desc(
                "metrics_server_kubelet_request_duration_seconds",
                "Duration of requests to Kubelet API in seconds",
            ),
            last_request: desc(
                "metrics_server_kubelet_last_request_time_seconds",
                "Time of last request performed to Kubelet since unix epoch in seconds",
            ),
            nodes: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, NodeRequests>> {
        // Every update leaves a record whole, so a panic elsewhere cannot leave one half-written.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request(&self, node: &str, seconds: f64, at_unix_seconds: f64) {
        // Prometheus's rule: the first bucket whose upper bound is ≥ the value.
        let bucket = prometheus::DEFAULT_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound);
        let mut nodes = self.lock();
        let record = match nodes.get_mut(node) {
            Some(record) => record,
            None => nodes.entry(node.into()).or_default(),
        };
        if let Some(count) = bucket.and_then(|i| record.buckets.get_mut(i)) {
            *count += 1;
        }
        record.count += 1;
        record.sum_seconds += seconds;
        record.last_request_unix_seconds = at_unix_seconds;
    }

    fn forget(&self, node: &str) {
        self.lock().remove(node);
    }
}

impl Collector for KubeletNodes {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.duration, &self.last_request]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let nodes = self.lock();
        let mut durations = Vec::with_capacity(nodes.len());
        let mut last_requests = Vec::with_capacity(nodes.len());
        for (node, record) in nodes.iter() {
            let labels = || {
                let mut pair = LabelPair::default();
                pair.set_name("node".to_owned());
                pair.set_value(node.to_string());
                vec![pair]
            };
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(record.count);
            histogram.set_sample_sum(record.sum_seconds);
            let mut cumulative = 0;
            histogram.set_bucket(
                prometheus::DEFAULT_BUCKETS
                    .iter()
                    .zip(record.buckets)
                    .map(|(&bound, count)| {
                        cumulative += count;
                        let mut bucket = proto::Bucket::default();
                        bucket.set_cumulative_count(cumulative);
                        bucket.set_upper_bound(bound);
                        bucket
                    })
                    .collect(),
            );
            let mut metric = Metric::from_label(labels());
            metric.set_histogram(histogram);
            durations.push(metric);
            let mut gauge = proto::Gauge::default();
            gauge.set_value(record.last_request_unix_seconds);
            let mut metric = Metric::from_label(labels());
            metric.set_gauge(gauge);
            last_requests.push(metric);
        }
        let family = |desc: &Desc, kind: MetricType, metrics: Vec<Metric>| {
            let mut family = MetricFamily::default();
            family.set_name(desc.fq_name.clone());
            family.set_help(desc.help.clone());
            family.set_field_type(kind);
            family.set_metric(metrics);
            family
        };
        vec![
            family(&self.duration, MetricType::HISTOGRAM, durations),
            family(&self.last_request, MetricType::GAUGE, last_requests),
        ]
    }
}

/// metrics-server's freshness buckets: `1 × 1.364^i` seconds for i in 0..20 (1 s … about 365 s).
// Every `expect` here states a construction invariant of static options (names, labels, buckets).
#[allow(clippy::expect_used)]
fn freshness_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1.0, 1.364, 20)
        .expect("start 1, factor 1.364 and count 20 are valid")
}

/// Buckets for the tick (scrape round) duration, placed around the resolution.
///
/// metrics-server derives its buckets from the resolution (`BucketsForScrapeDuration`). Our scrape round spreads
/// nodes over the whole resolution, so a healthy round lasts a little less than one resolution and a slow one
/// overruns it: the buckets are 0.5, 0.75, 0.9, 1, 1.1, 1.25, 1.5 and 2 × resolution, below which the Prometheus
/// default buckets (5 ms … 10 s) cover rounds over a handful of nodes that finish early.
pub fn tick_buckets(resolution: Duration) -> Vec<f64> {
    let r = resolution.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut buckets: Vec<f64> = prometheus::DEFAULT_BUCKETS
        .iter()
        .copied()
        .filter(|&b| b < 0.5 * r)
        .collect();
    buckets.extend([0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0].map(|m| m * r));
    buckets
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;

    fn parse(metrics: &SelfMetrics) -> prometheus_parse::Scrape {
        let text = String::from_utf8(metrics.render()).expect("exposition is UTF-8");
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("exposition parses")
    }

    fn value(
        scrape: &prometheus_parse::Scrape,
        name: &str,
        label: Option<(&str, &str)>,
    ) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(f64::NAN, |b| b.count),
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
    }

    #[test]
    fn recorded_values_render_and_parse_back() {
        let metrics = SelfMetrics::with_resolution(Duration::from_secs(15));
        metrics.kubelet_request("node-a", Duration::from_millis(30), true, 1_700_000_000.5);
        metrics.kubelet_request("node-b", Duration::from_millis(40), false, 1_700_000_001.0);
        metrics.kubelet_request("node-b", Duration::from_millis(40), false, 1_700_000_002.0);
        metrics.scrape_failure("timeout");
        metrics.tick(Duration::from_secs(14));
        metrics.storage_points(3, 120);
        metrics.freshness(2.5);
        let scrape = parse(&metrics);
        struct Case {
            name: &'static str,
            metric: &'static str,
            label: Option<(&'static str, &'static str)>,
            want: f64,
        }
        let cases = [
            Case {
                name: "successful requests",
                metric: "metrics_server_kubelet_request_total",
                label: Some(("success", "true")),
                want: 1.0,
            },
            Case {
                name: "failed requests",
                metric: "metrics_server_kubelet_request_total",
                label: Some(("success", "false")),
                want: 2.0,
            },
            Case {
                name: "last request time",
                metric: "metrics_server_kubelet_last_request_time_seconds",
                label: Some(("node", "node-b")),
                want: 1_700_000_002.0,
            },
            Case {
                name: "node points",
                metric: "metrics_server_storage_points",
                label: Some(("type", "node")),
                want: 3.0,
            },
            Case {
                name: "container points",
                metric: "metrics_server_storage_points",
                label: Some(("type", "container")),
                want: 120.0,
            },
            Case {
                name: "failures by reason",
                metric: "resource_metrics_server_scrape_failures_total",
                label: Some(("reason", "timeout")),
                want: 1.0,
            },
            Case {
                name: "freshness count",
                metric: "metrics_server_api_metric_freshness_seconds_count",
                label: None,
                want: 1.0,
            },
            Case {
                name: "tick count",
                metric: "metrics_server_manager_tick_duration_seconds_count",
                label: None,
                want: 1.0,
            },
            Case {
                name: "kubelet duration count",
                metric: "metrics_server_kubelet_request_duration_seconds_count",
                label: Some(("node", "node-b")),
                want: 2.0,
            },
        ];
        for case in cases {
            assert_eq!(
                value(&scrape, case.metric, case.label),
                Some(case.want),
                "{}",
                case.name
            );
        }
    }

    /// The per-node families render exactly as the `prometheus` crate's `HistogramVec` and `GaugeVec` would.
    #[test]
    fn per_node_families_render_like_the_prometheus_vectors() {
        let reference = Registry::new();
        let duration = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "metrics_server_kubelet_request_duration_seconds",
                "Duration of requests to Kubelet API in seconds",
            ),
            &["node"],
        )
        .unwrap();
        let last = GaugeVec::new(
            Opts::new(
                "metrics_server_kubelet_last_request_time_seconds",
                "Time of last request performed to Kubelet since unix epoch in seconds",
            ),
            &["node"],
        )
        .unwrap();
        reference.register(Box::new(duration.clone())).unwrap();
        reference.register(Box::new(last.clone())).unwrap();
        let metrics = SelfMetrics::new();
        // On a bound, between bounds, below the first and above the last; nodes out of order; one forgotten.
        let requests = [
            ("node-b", 0.005, 10.0),
            ("node-a", 0.001, 11.0),
            ("node-a", 0.25, 12.5),
            ("node-c", 0.3, 13.0),
            ("node-b", 42.0, 14.0),
            ("node-a", 10.0, 15.25),
            ("gone", 1.0, 16.0),
        ];
        for (node, seconds, at) in requests {
            metrics.kubelet_request(node, Duration::from_secs_f64(seconds), true, at);
            duration
                .with_label_values(&[node])
                .observe(Duration::from_secs_f64(seconds).as_secs_f64());
            last.with_label_values(&[node]).set(at);
        }
        metrics.forget_node("gone");
        duration.remove_label_values(&["gone"]).unwrap();
        last.remove_label_values(&["gone"]).unwrap();
        let per_node = |text: &[u8]| -> Vec<String> {
            String::from_utf8(text.to_vec())
                .unwrap()
                .lines()
                .filter(|l| l.contains("metrics_server_kubelet_re") || l.contains("last_request"))
                .filter(|l| !l.contains("request_total"))
                .map(str::to_owned)
                .collect()
        };
        let mut want = Vec::new();
        TextEncoder::new()
            .encode(&reference.gather(), &mut want)
            .unwrap();
        let (got, want) = (per_node(&metrics.render()), per_node(&want));
        assert_eq!(got.len(), 2 * 2 + 3 + 3 * 14, "{got:#?}");
        assert_eq!(got, want);
    }

    #[test]
    fn forgetting_a_node_removes_only_its_series() {
        let metrics = SelfMetrics::new();
        metrics.kubelet_request("gone", Duration::from_millis(5), true, 1.0);
        metrics.kubelet_request("kept", Duration::from_millis(5), true, 2.0);
        metrics.forget_node("gone");
        metrics.forget_node("never-seen");
        let text = String::from_utf8(metrics.render()).expect("UTF-8");
        assert!(!text.contains("node=\"gone\""), "{text}");
        assert!(
            text.contains("metrics_server_kubelet_last_request_time_seconds{node=\"kept\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("metrics_server_kubelet_request_total{success=\"true\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn buckets_match_metrics_server() {
        let metrics = SelfMetrics::new();
        metrics.freshness(0.5);
        metrics.kubelet_request("n", Duration::from_millis(1), true, 0.0);
        let text = String::from_utf8(metrics.render()).expect("UTF-8");
        let freshness_le = text
            .lines()
            .filter(|l| l.starts_with("metrics_server_api_metric_freshness_seconds_bucket"))
            .count();
        assert_eq!(freshness_le, 21, "20 buckets plus +Inf");
        assert!(
            text.contains("metrics_server_api_metric_freshness_seconds_bucket{le=\"1.364\"}"),
            "{text}"
        );
        let kubelet_le = text
            .lines()
            .filter(|l| l.starts_with("metrics_server_kubelet_request_duration_seconds_bucket"))
            .count();
        assert_eq!(kubelet_le, 12, "the 11 default buckets plus +Inf");
    }

    #[test]
    fn tick_buckets_surround_the_resolution() {
        let cases = [
            ("15s resolution", Duration::from_secs(15), 7.5, 30.0),
            ("60s resolution", Duration::from_secs(60), 30.0, 120.0),
        ];
        for (name, resolution, half, double) in cases {
            let buckets = tick_buckets(resolution);
            assert!(
                buckets.windows(2).all(|w| w[0] < w[1]),
                "{name}: sorted {buckets:?}"
            );
            assert!(
                buckets.contains(&half) && buckets.contains(&double),
                "{name}: {buckets:?}"
            );
            assert!(
                buckets.contains(&resolution.as_secs_f64()),
                "{name}: {buckets:?}"
            );
        }
    }

    #[test]
    fn exposition_declares_every_family_once_with_its_type() {
        let metrics = SelfMetrics::new();
        metrics.kubelet_request("n", Duration::from_millis(1), true, 0.0);
        metrics.scrape_failure("decode");
        metrics.tick(Duration::from_secs(1));
        metrics.storage_points(1, 1);
        metrics.freshness(1.0);
        let text = String::from_utf8(metrics.render()).expect("UTF-8");
        for (family, kind) in [
            ("metrics_server_api_metric_freshness_seconds", "histogram"),
            ("metrics_server_kubelet_last_request_time_seconds", "gauge"),
            (
                "metrics_server_kubelet_request_duration_seconds",
                "histogram",
            ),
            ("metrics_server_kubelet_request_total", "counter"),
            ("metrics_server_manager_tick_duration_seconds", "histogram"),
            ("metrics_server_storage_points", "gauge"),
            ("resource_metrics_server_scrape_failures_total", "counter"),
        ] {
            let line = format!("# TYPE {family} {kind}\n");
            assert_eq!(text.matches(&line).count(), 1, "{family}: {text}");
        }
    }
}
