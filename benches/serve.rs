//! Serving benchmarks: rendering large NodeMetrics/PodMetrics lists (JSON and Table) through `Api::handle`.
//!
//! Uses in-file fakes of `ClusterView` and `MetricsSource` (no storage, no cluster index) so the figures measure
//! the API alone: selection, sorting checks, and JSON writing. The `serve_index` group serves from the real
//! cluster [`Index`] instead, for the HPA-style selector list whose cost is the index lookup. It must not read
//! clocks or touch the network.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use resource_metrics_server::api::{
    Api, ApiRequest, ContainerUsage, MetricsSource, NodeUsage, PodUsage, Usage,
};
use resource_metrics_server::cluster::{ClusterView, Index, Labels, NodeInfo, PodInfo};
use resource_metrics_server::time::TimestampMs;

/// 2026-01-01T10:00:05Z.
const NOW_MS: TimestampMs = 1_767_261_605_000;
/// Pods in the large cluster (2 containers each).
const PODS: usize = 150_000;
/// Pods per namespace: 1 500 namespaces.
const PODS_PER_NAMESPACE: usize = 100;
/// Nodes in the large cluster.
const NODES: usize = 5_000;
/// Pods per namespace in the `serve_index` cluster (the scale benchmark's shape: 50 namespaces of 3,000 pods).
const HPA_PODS_PER_NAMESPACE: usize = 3_000;
/// Pods per `hpa=h-<group>` label value: what one HPA-style selector list answers.
const HPA_GROUP: usize = 10;

struct FakeCluster {
    nodes: Vec<Arc<NodeInfo>>,
    /// Pods sorted by (namespace, name), and the index range of each namespace.
    pods: Vec<Arc<PodInfo>>,
    namespaces: HashMap<String, (usize, usize)>,
}

struct FakeMetrics {
    nodes: HashMap<String, NodeUsage>,
    pods: HashMap<String, HashMap<String, PodUsage>>,
}

impl ClusterView for FakeCluster {
    fn is_synced(&self) -> bool {
        true
    }
    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        self.nodes.clone()
    }
    fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.nodes.iter().find(|n| &*n.name == name).cloned()
    }
    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        match namespace {
            None => self.pods.clone(),
            Some(ns) => self
                .namespaces
                .get(ns)
                .map(|&(a, b)| self.pods[a..b].to_vec())
                .unwrap_or_default(),
        }
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let &(a, b) = self.namespaces.get(namespace)?;
        self.pods[a..b].iter().find(|p| &*p.name == name).cloned()
    }
}

impl MetricsSource for FakeMetrics {
    fn node_usage(&self, node: &str, _now_ms: TimestampMs) -> Option<NodeUsage> {
        self.nodes.get(node).cloned()
    }
    fn pod_usage(&self, namespace: &str, pod: &str, _now_ms: TimestampMs) -> Option<PodUsage> {
        self.pods.get(namespace)?.get(pod).cloned()
    }
    fn is_ready(&self, _now_ms: TimestampMs) -> bool {
        true
    }
}

fn build() -> Api {
    let mut cluster = FakeCluster {
        nodes: Vec::new(),
        pods: Vec::with_capacity(PODS),
        namespaces: HashMap::new(),
    };
    let mut metrics = FakeMetrics {
        nodes: HashMap::new(),
        pods: HashMap::new(),
    };
    for n in 0..NODES {
        let name: Arc<str> = format!("node-{n:05}").into();
        let labels: Labels = [("kubernetes.io/os".to_owned(), "linux".to_owned())]
            .into_iter()
            .collect();
        cluster.nodes.push(Arc::new(NodeInfo {
            name: name.clone(),
            labels: Arc::new(labels),
            target: None,
        }));
        let usage = Usage {
            cpu_nanocores: 1_234_567_890 + n as u64,
            memory_bytes: 6 << 30,
            swap_bytes: None,
        };
        metrics.nodes.insert(
            name.to_string(),
            NodeUsage {
                timestamp_ms: NOW_MS - 7_000,
                window_ms: 15_012,
                usage,
            },
        );
    }
    for p in 0..PODS {
        let namespace = format!("ns-{:04}", p / PODS_PER_NAMESPACE);
        let name = format!("app-{:03}-{p}", p % PODS_PER_NAMESPACE);
        let labels: Labels = [
            ("app".to_owned(), format!("app-{}", p % 10)),
            ("pod-template-hash".to_owned(), "7d9f8c6b5".to_owned()),
        ]
        .into_iter()
        .collect();
        let start = cluster.pods.len();
        let range = cluster
            .namespaces
            .entry(namespace.clone())
            .or_insert((start, start));
        range.1 = start + 1;
        cluster.pods.push(Arc::new(PodInfo {
            namespace: namespace.as_str().into(),
            name: name.as_str().into(),
            labels: Arc::new(labels),
        }));
        let container = |c: &str, cpu: u64| ContainerUsage {
            name: c.into(),
            usage: Usage {
                cpu_nanocores: cpu,
                memory_bytes: 52_428_800 + p as u64 * 4096,
                swap_bytes: None,
            },
        };
        let usage = PodUsage {
            timestamp_ms: NOW_MS - 9_000,
            window_ms: 20_050,
            containers: vec![
                container("app", 250_499_999 + p as u64),
                container("istio-proxy", 4_999_999),
            ]
            .into(),
        };
        metrics
            .pods
            .entry(namespace)
            .or_default()
            .insert(name, usage);
    }
    Api::new(Arc::new(cluster), Arc::new(metrics))
}

/// 150,000 pods in a real [`Index`], labelled like the scale benchmark: `app=app-<j%10>` and `hpa=h-<j/10>` for
/// the `j`-th pod of its namespace, so every `hpa` value selects 10 pods of a 3,000-pod namespace.
fn build_hpa() -> Api {
    let index = Index::default();
    let mut metrics = FakeMetrics {
        nodes: HashMap::new(),
        pods: HashMap::new(),
    };
    let mut pods = Vec::with_capacity(PODS);
    for p in 0..PODS {
        let (ns, j) = (p / HPA_PODS_PER_NAMESPACE, p % HPA_PODS_PER_NAMESPACE);
        let namespace = format!("ns-{ns}");
        let name = format!("pod-{j}");
        let labels: Labels = [
            ("app".to_owned(), format!("app-{}", j % 10)),
            ("hpa".to_owned(), format!("h-{}", j / HPA_GROUP)),
        ]
        .into_iter()
        .collect();
        let usage = PodUsage {
            timestamp_ms: NOW_MS - 9_000,
            window_ms: 20_050,
            containers: vec![ContainerUsage {
                name: "app".into(),
                usage: Usage {
                    cpu_nanocores: 250_499_999 + p as u64,
                    memory_bytes: 52_428_800,
                    swap_bytes: None,
                },
            }]
            .into(),
        };
        metrics
            .pods
            .entry(namespace.clone())
            .or_default()
            .insert(name.clone(), usage);
        pods.push((namespace, name, labels));
    }
    index.replace_pods(pods);
    index.replace_nodes(Vec::new());
    Api::new(Arc::new(index), Arc::new(metrics))
}

fn serve_index(c: &mut Criterion) {
    let api = build_hpa();
    let mut group = c.benchmark_group("serve_index");
    let cases = [
        ("hpa_selector_10_of_3000", "labelSelector=hpa%3Dh-123"),
        (
            "in_two_values_20_of_3000",
            "labelSelector=hpa+in+%28h-123%2Ch-124%29",
        ),
        (
            "combined_selector_2_of_3000",
            "labelSelector=hpa%2Capp%3Dapp-3%2Chpa+notin+%28h-0%29%2Chpa+in+%28h-123%2Ch-124%29%2Capp%21%3Dapp-4",
        ),
    ];
    for (name, query) in cases {
        let req = ApiRequest {
            method: "GET",
            path: "/apis/metrics.k8s.io/v1beta1/namespaces/ns-7/pods",
            query,
            accept: "application/json",
        };
        let probe = api.handle(req, NOW_MS);
        assert_eq!(probe.status, 200, "{name}");
        let items = String::from_utf8_lossy(&probe.body)
            .matches("\"containers\"")
            .count();
        eprintln!("{name}: {} bytes, {items} pods", probe.body.len());
        group.bench_function(name, |b| {
            b.iter(|| black_box(api.handle(black_box(req), NOW_MS)))
        });
    }
    group.finish();
}

fn serve(c: &mut Criterion) {
    let api = build();
    let request = |path: &'static str, query: &'static str, accept: &'static str| ApiRequest {
        method: "GET",
        path,
        query,
        accept,
    };
    let mut group = c.benchmark_group("serve");
    group.sample_size(10);
    let cases = [
        (
            "list_150k_pods_json",
            request(
                "/apis/metrics.k8s.io/v1beta1/pods",
                "",
                "application/vnd.kubernetes.protobuf, */*",
            ),
        ),
        (
            "list_150k_pods_table",
            request(
                "/apis/metrics.k8s.io/v1/pods",
                "limit=500",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            ),
        ),
        (
            "list_5k_nodes_json",
            request("/apis/metrics.k8s.io/v1/nodes", "", "application/json"),
        ),
        (
            "list_namespace_with_selector",
            request(
                "/apis/metrics.k8s.io/v1beta1/namespaces/ns-0700/pods",
                "labelSelector=app+in+%28app-1%2Capp-2%29",
                "*/*",
            ),
        ),
        (
            "list_all_with_selector",
            request(
                "/apis/metrics.k8s.io/v1beta1/pods",
                "labelSelector=app%3Dapp-3",
                "*/*",
            ),
        ),
        (
            "get_pod",
            request(
                "/apis/metrics.k8s.io/v1/namespaces/ns-0700/pods/app-050-70050",
                "",
                "*/*",
            ),
        ),
    ];
    for (name, req) in cases {
        let probe = api.handle(req, NOW_MS);
        assert_eq!(
            probe.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&probe.body)
        );
        eprintln!("{name}: {} bytes", probe.body.len());
        group.bench_function(name, |b| {
            b.iter(|| black_box(api.handle(black_box(req), NOW_MS)))
        });
    }
    group.finish();
}

criterion_group!(benches, serve, serve_index);
criterion_main!(benches);
