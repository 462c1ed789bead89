//! [`SelfMetrics`]: the server's own Prometheus metrics, in a registry owned by the value.
//!
//! Names, labels and buckets of the six `metrics_server_*` families follow metrics-server so that dashboards and
//! alerts carry over. This file is the only one naming the `prometheus` crate; it must not read clocks or serve HTTP.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
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
    /// `kubelet_total`'s `success="true"` and `"false"` children, looked up once each on first use (a label lookup
    /// hashes the value and takes the family's lock; this counts every scrape). Lazy, so that a series appears
    /// when it first counts, as client_golang's `WithLabelValues` does.
    kubelet_outcomes: [OnceLock<IntCounter>; 2],
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
        let kubelet_nodes = KubeletNodes::default();
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
            kubelet_outcomes: [OnceLock::new(), OnceLock::new()],
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
        let collectors: [Box<dyn Collector>; 5] = [
            Box::new(self.freshness.clone()),
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
        let (slot, label) = match success {
            true => (&self.kubelet_outcomes[0], "true"),
            false => (&self.kubelet_outcomes[1], "false"),
        };
        slot.get_or_init(|| self.kubelet_total.with_label_values(&[label]))
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

    /// Prometheus text exposition (format 0.0.4, see [`CONTENT_TYPE`]) of every family, whole.
    ///
    /// The same bytes as the chunks of [`SelfMetrics::exposition`], joined.
    pub fn render(&self) -> Vec<u8> {
        self.exposition().flatten().collect()
    }

    /// Prometheus text exposition (format 0.0.4, see [`CONTENT_TYPE`]) of every family, as chunks of about
    /// [`CHUNK_BYTES`] rendered as they are taken.
    ///
    /// Families come sorted by name, as a registry gathers them; the per-node families are written in their place.
    /// Every value is read here, at once; only the per-node text (≈ 1.5 KiB per node, ≈ 7 MiB at 5,000 nodes) is
    /// written later, chunk by chunk, so a scrape of `/metrics` never holds it whole.
    pub fn exposition(&self) -> Exposition {
        let (mut head, mut tail) = (String::new(), String::new());
        for family in self.registry.gather() {
            let out = if family.name() > LAST_REQUEST.0 {
                &mut tail
            } else {
                &mut head
            };
            if let Err(error) = TextEncoder::new().encode_utf8(std::slice::from_ref(&family), out) {
                // Only possible with invalid names; names are static.
                tracing::error!(%error, "cannot encode self-metrics");
            }
        }
        Exposition {
            head,
            nodes: self.kubelet_nodes.snapshot(),
            tail,
            next: Part::Head,
        }
    }
}

/// Target size of one chunk of an [`Exposition`].
pub const CHUNK_BYTES: usize = 64 << 10;

/// The self-metrics text, produced in chunks by iterating (see [`SelfMetrics::exposition`]).
#[derive(Debug)]
pub struct Exposition {
    /// The registry's families that sort before the per-node ones.
    head: String,
    nodes: NodesSnapshot,
    /// The registry's families that sort after them.
    tail: String,
    next: Part,
}

/// What an [`Exposition`] writes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Head,
    /// Node `i`'s lines of a per-node family (its header first, before node 0).
    Node(NodeFamily, usize),
    Tail,
    Done,
}

/// The per-node families, in exposition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeFamily {
    LastRequest,
    Duration,
}

impl Iterator for Exposition {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = String::new();
        while out.len() < CHUNK_BYTES && self.next != Part::Done {
            self.next = self.write_part(&mut out);
        }
        (!out.is_empty()).then(|| out.into_bytes())
    }
}

impl Exposition {
    /// Writes the next part (the head, one family header, one node's lines, or the tail); returns the one after.
    fn write_part(&mut self, out: &mut String) -> Part {
        let nodes = &self.nodes;
        let node_count = nodes.records.len();
        match self.next {
            Part::Head => {
                out.push_str(&std::mem::take(&mut self.head));
                if node_count == 0 {
                    // The registry leaves out families without series; so do we.
                    Part::Tail
                } else {
                    Part::Node(NodeFamily::LastRequest, 0)
                }
            }
            Part::Node(family, i) => {
                if i == 0 {
                    let ((name, help), kind) = match family {
                        NodeFamily::LastRequest => (LAST_REQUEST, "gauge"),
                        NodeFamily::Duration => (REQUEST_DURATION, "histogram"),
                    };
                    family_header(out, name, help, kind);
                }
                if let Some((node, record)) = nodes.get(i) {
                    nodes.write(out, family, node, record);
                }
                match family {
                    _ if i + 1 < node_count => Part::Node(family, i + 1),
                    NodeFamily::LastRequest => Part::Node(NodeFamily::Duration, 0),
                    NodeFamily::Duration => Part::Tail,
                }
            }
            Part::Tail => {
                out.push_str(&std::mem::take(&mut self.tail));
                Part::Done
            }
            Part::Done => Part::Done,
        }
    }
}

/// A copy of every node's record, sorted by node name (the registry's order), names escaped once.
#[derive(Debug)]
struct NodesSnapshot {
    /// The escaped names back to back.
    names: String,
    /// Each node's end offset in `names` and its record.
    records: Vec<(usize, NodeRequests)>,
    /// The bucket bounds as the encoder prints them.
    bounds: [String; DURATION_BUCKETS],
    /// `_bucket`, `_sum` and `_count` series names of the duration histogram.
    duration_names: [String; 3],
}

impl NodesSnapshot {
    /// One node's lines of `family`.
    fn write(&self, out: &mut String, family: NodeFamily, node: &str, record: &NodeRequests) {
        match family {
            NodeFamily::LastRequest => {
                sample(
                    out,
                    LAST_REQUEST.0,
                    node,
                    None,
                    record.last_request_unix_seconds,
                );
            }
            NodeFamily::Duration => {
                let [bucket, sum, count] = &self.duration_names;
                let mut cumulative = 0;
                for (bound, n) in self.bounds.iter().zip(record.buckets) {
                    cumulative += n;
                    sample(out, bucket, node, Some(bound), cumulative as f64);
                }
                sample(out, bucket, node, Some("+Inf"), record.count as f64);
                sample(out, sum, node, None, record.sum_seconds);
                sample(out, count, node, None, record.count as f64);
            }
        }
    }

    /// Node `i`'s escaped name and record.
    fn get(&self, i: usize) -> Option<(&str, &NodeRequests)> {
        let (end, record) = self.records.get(i)?;
        let start = match i.checked_sub(1) {
            Some(previous) => self.records.get(previous)?.0,
            None => 0,
        };
        Some((self.names.get(start..*end)?, record))
    }
}

/// The two per-node families, `metrics_server_kubelet_request_duration_seconds{node}` (Prometheus default
/// buckets) and `metrics_server_kubelet_last_request_time_seconds{node}`, kept as one plain record per node and
/// rendered straight to text.
///
/// A `HistogramVec` child plus a `GaugeVec` child cost about 1.2 KiB per node (two shards of atomic buckets, label
/// pairs, boxed cores, two hash entries): ≈ 6 MiB at 5,000 nodes. A [`NodeRequests`] is 120 bytes plus the name.
/// Rendering through the registry would also build ≈ 1.5 KiB of protobuf values per node for every read of
/// `/metrics` (≈ 8 MiB at 5,000 nodes, freed at once but resident until the allocator gives it back); the text is
/// written directly instead, byte for byte what the `prometheus` crate's encoder writes for its own vectors (a
/// test renders both side by side and compares them).
#[derive(Debug, Default)]
struct KubeletNodes {
    nodes: Mutex<HashMap<Box<str>, NodeRequests>>,
}

/// Number of upper bounds of `metrics_server_kubelet_request_duration_seconds` (the Prometheus defaults).
const DURATION_BUCKETS: usize = prometheus::DEFAULT_BUCKETS.len();

/// Name and help of `metrics_server_kubelet_last_request_time_seconds`.
const LAST_REQUEST: (&str, &str) = (
    "metrics_server_kubelet_last_request_time_seconds",
    "Time of last request performed to Kubelet since unix epoch in seconds",
);

/// Name and help of `metrics_server_kubelet_request_duration_seconds` (sorts right after [`LAST_REQUEST`]).
const REQUEST_DURATION: (&str, &str) = (
    "metrics_server_kubelet_request_duration_seconds",
    "Duration of requests to Kubelet API in seconds",
);

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

    /// Every record, sorted by the raw node name (the registry's order), each name escaped once for its 15 lines.
    fn snapshot(&self) -> NodesSnapshot {
        let nodes = self.lock();
        let mut by_name: Vec<(&str, &NodeRequests)> =
            nodes.iter().map(|(node, r)| (&**node, r)).collect();
        by_name.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut names = String::with_capacity(by_name.iter().map(|(node, _)| node.len()).sum());
        let records = by_name
            .into_iter()
            .map(|(node, record)| {
                names.push_str(&escape(node, true));
                (names.len(), *record)
            })
            .collect();
        let name = REQUEST_DURATION.0;
        NodesSnapshot {
            names,
            records,
            bounds: prometheus::DEFAULT_BUCKETS.map(|bound| bound.to_string()),
            duration_names: [
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
        }
    }
}

/// `# HELP` and `# TYPE` lines, as the `prometheus` crate's text encoder writes them.
fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = escape(help, false);
    // Writing to a String cannot fail.
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// One sample line with the `node` label (its value already escaped) and, for a bucket, `le`, as the `prometheus`
/// crate's text encoder writes it.
fn sample(out: &mut String, name: &str, node: &str, le: Option<&str>, value: f64) {
    // Writing to a String cannot fail.
    let _ = match le {
        Some(le) => writeln!(out, "{name}{{node=\"{node}\",le=\"{le}\"}} {value}"),
        None => writeln!(out, "{name}{{node=\"{node}\"}} {value}"),
    };
}

/// The text format's escaping: backslash and newline, and the double quote in label values.
fn escape(text: &str, label_value: bool) -> Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (label_value && c == '"');
    if !text.contains(special) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if label_value => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
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
    use prometheus::Encoder as _;

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

    /// The whole exposition is what a registry holding the `prometheus` crate's own `HistogramVec` and `GaugeVec`
    /// for the per-node families would render: same bytes, families in name order, escaping included.
    #[test]
    fn per_node_families_render_like_the_prometheus_vectors() {
        let metrics = SelfMetrics::new();
        let reference = Registry::new();
        let duration = prometheus::HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION.0, REQUEST_DURATION.1),
            &["node"],
        )
        .unwrap();
        let last = GaugeVec::new(Opts::new(LAST_REQUEST.0, LAST_REQUEST.1), &["node"]).unwrap();
        reference.register(Box::new(duration.clone())).unwrap();
        reference.register(Box::new(last.clone())).unwrap();
        let render_reference = |metrics: &SelfMetrics| {
            let mut families = metrics.registry.gather();
            families.extend(reference.gather());
            families.sort_by(|a, b| a.name().cmp(b.name()));
            let mut text = Vec::new();
            TextEncoder::new().encode(&families, &mut text).unwrap();
            String::from_utf8(text).unwrap()
        };
        let render = |metrics: &SelfMetrics| String::from_utf8(metrics.render()).unwrap();
        assert_eq!(
            render(&metrics),
            render_reference(&metrics),
            "nothing recorded"
        );

        // On a bound, between bounds, below the first and above the last; nodes out of order, one forgotten, one
        // whose name needs escaping; families before and after the per-node ones in name order.
        let requests = [
            ("node-b", 0.005, 10.0),
            ("node-a", 0.001, 11.0),
            ("node-a", 0.25, 12.5),
            ("node-c", 0.3, 13.0),
            ("node-b", 42.0, 14.0),
            ("node-a", 10.0, 15.25),
            ("gone", 1.0, 16.0),
            ("odd\"name\\\n", 0.02, 17.0),
        ];
        for (node, seconds, at) in requests {
            let seconds = Duration::from_secs_f64(seconds);
            metrics.kubelet_request(node, seconds, true, at);
            duration
                .with_label_values(&[node])
                .observe(seconds.as_secs_f64());
            last.with_label_values(&[node]).set(at);
        }
        metrics.forget_node("gone");
        duration.remove_label_values(&["gone"]).unwrap();
        last.remove_label_values(&["gone"]).unwrap();
        metrics.freshness(2.0);
        metrics.tick(Duration::from_secs(3));
        let got = render(&metrics);
        assert_eq!(got, render_reference(&metrics));
        assert_eq!(
            got.lines().filter(|l| l.contains("{node=")).count(),
            4 * (1 + 14),
            "{got}"
        );
        assert!(got.contains("{node=\"odd\\\"name\\\\\\n\"}"), "{got}");
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

    #[test]
    fn the_exposition_comes_in_bounded_chunks_that_join_to_the_whole_text() {
        let metrics = SelfMetrics::new();
        // ≈ 1.5 KiB of text per node: several chunks.
        for i in 0..300 {
            metrics.kubelet_request(
                &format!("node-{i:03}"),
                Duration::from_millis(i),
                true,
                1_700_000_000.0,
            );
        }
        metrics.tick(Duration::from_secs(1));
        let chunks: Vec<Vec<u8>> = metrics.exposition().collect();
        assert!(chunks.len() >= 5, "{} chunks", chunks.len());
        let one_node = 2 << 10;
        for chunk in &chunks {
            assert!(!chunk.is_empty());
            assert!(chunk.len() < CHUNK_BYTES + one_node, "{}", chunk.len());
        }
        let joined = chunks.concat();
        let text = String::from_utf8(joined.clone()).expect("UTF-8");
        // Every node's 15 lines, in name order, with the other families around them.
        assert_eq!(text.matches("node=\"node-").count(), 300 * 15);
        assert!(text.find("node=\"node-000\"") < text.find("node=\"node-299\""));
        assert!(text.starts_with("# HELP metrics_server_api_metric_freshness_seconds"));
        assert!(text.contains("# TYPE metrics_server_manager_tick_duration_seconds histogram"));
        // A later read sees the same text (the exposition only reads).
        assert_eq!(metrics.render(), joined);
    }

    #[test]
    fn an_exposition_is_a_snapshot_taken_when_it_is_created() {
        let metrics = SelfMetrics::new();
        metrics.kubelet_request("node-a", Duration::from_millis(1), true, 1.0);
        let exposition = metrics.exposition();
        metrics.kubelet_request("node-b", Duration::from_millis(1), true, 2.0);
        metrics.forget_node("node-a");
        let text = String::from_utf8(exposition.flatten().collect()).expect("UTF-8");
        assert!(text.contains("node=\"node-a\""), "{text}");
        assert!(!text.contains("node=\"node-b\""), "{text}");
    }
}
