//! libFuzzer target for the whole request path of the metrics API: routing (`src/api/route.rs`), `Accept`
//! negotiation (`src/api/negotiate.rs`), query and selector parsing, and rendering, through `Api::handle`,
//! `Api::handle_conditional` and `Api::attributes`.
//!
//! Compiles `src/api.rs` (with its submodules) and `src/time.rs` straight from the main crate; `cluster` and `auth`
//! are replaced by copies of their seam types (`shim/`), so kube, hyper and rustls are not instrumented. The cluster
//! view and metrics source are in-target fakes: fixed base objects plus objects and usage numbers from the input.
//! The first byte picks text mode (odd: method, path?query, Accept and If-None-Match as lines, as in the seeds)
//! or generated mode (even: requests built from vocabularies of real path segments, parameters and media types).
//!
//! Checks: no panic; status in {200, 304, 400, 404, 405, 406}; every body is JSON of the announced kind (a `Status`
//! with the same code for errors, a `Table` for Table content types, the offered discovery version); non-GET
//! methods never get 200; `*/*` or `application/json` (or no `Accept`) never gets 406; listed objects satisfy the
//! request's selectors; answers are deterministic. Must not hold API logic of its own.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use libfuzzer_sys::arbitrary::{Result as ArbitraryResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../src/time.rs"]
mod time;

#[allow(dead_code)]
#[path = "shim/cluster.rs"]
mod cluster;

#[allow(dead_code)]
#[path = "shim/auth.rs"]
mod auth;

/// `src/api.rs` is loaded as a plain `mod api;` inside an inline module pointing at `src/`, so that its own
/// `mod discovery;` etc. resolve to `src/api/*.rs` (a file loaded through `#[path]` would look beside itself).
#[allow(dead_code, unused_imports)]
#[path = "../../src"]
mod main_crate {
    pub mod api;
}
use main_crate::api;

use api::{
    Api, ApiRequest, ApiResponse, ContainerUsage, MetricsSource, NodeUsage, PodUsage, Usage,
};
use cluster::{ClusterView, Labels, NodeInfo, PodInfo};

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "get", "OPTIONS", "",
];
const SEGMENTS: &[&str] = &[
    "apis",
    "apis",
    "metrics.k8s.io",
    "metrics.k8s.io",
    "v1",
    "v1beta1",
    "nodes",
    "pods",
    "namespaces",
    "default",
    "kube-system",
    "node-a",
    "node-b",
    "web-1",
    "openapi",
    "v2",
    "v3",
    "api",
    "",
    ".",
    "..",
    "%2F",
    "%2f",
    "%",
    "%zz",
    "%00",
    "node%2Da",
    "ü",
    "a b",
    "status",
    "version",
    "metrics.k8s.io%2Fv1",
];
const QUERY_KEYS: &[&str] = &[
    "labelSelector",
    "labelSelector",
    "fieldSelector",
    "watch",
    "includeObject",
    "limit",
    "timeout",
    "resourceVersion",
    "continue",
    "",
];
const QUERY_VALUES: &[&str] = &[
    "app%3Dweb",
    "app+in+%28x%2Cy%29%2C%21legacy%2Ctier%21%3Ddb",
    "k%3E1",
    "environment+notin+%28prod%29",
    "metadata.name%3Dnode-a",
    "metadata.namespace%3Ddefault",
    "metadata.name%21%3Dweb-1",
    "spec.nodeName%3Dnode-a",
    "true",
    "false",
    "0",
    "1",
    "None",
    "Object",
    "Metadata",
    "500",
    "32s",
    "",
    "%",
    "%ZZ",
    "+",
    "%2C",
];
const MEDIA: &[&str] = &[
    "application/json",
    "application/json",
    "*/*",
    "application/*",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
    "text/plain",
    "APPLICATION/JSON",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
    "*/json",
    "application",
    "",
];
const PARAMS: &[&str] = &[
    "as=Table",
    "v=v1",
    "v=v1beta1",
    "g=meta.k8s.io",
    "as=APIGroupDiscoveryList",
    "g=apidiscovery.k8s.io",
    "v=v2",
    "v=v2beta1",
    "q=0",
    "q=0.5",
    "q=1",
    "q=1.5",
    "q=-1",
    "q=NaN",
    "q=abc",
    "charset=utf-8",
    "pretty=1",
    "as=\"Table\"",
    " v = v1 ",
    "=",
    "",
];
const NAMES: &[&str] = &[
    "node-a",
    "node-b",
    "web-1",
    "web-2",
    "db-0",
    "a\"b",
    "ü",
    "\u{1}x",
    "back\\slash",
    "",
];
const NAMESPACES: &[&str] = &["default", "kube-system", "prod", ""];
const LABEL_KEYS: &[&str] = &[
    "app",
    "tier",
    "k",
    "legacy",
    "environment",
    "example.com/x",
    "role",
    "quote\"key",
];
const LABEL_VALUES: &[&str] = &[
    "web",
    "db",
    "x",
    "y",
    "prod",
    "1",
    "2",
    "-3",
    "",
    "line\nbreak",
    "ü",
];

/// The input's objects and usage, swapped in before each run (libFuzzer runs inputs one at a time).
static WORLD: Mutex<Option<Arc<(FakeCluster, FakeMetrics)>>> = Mutex::new(None);

fn current() -> Arc<(FakeCluster, FakeMetrics)> {
    WORLD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .expect("a world is installed before each run")
}

/// Reads [`WORLD`]; building the discovery and OpenAPI documents once instead of per input keeps `Api::new` out of
/// the loop.
struct Current;

impl ClusterView for Current {
    fn is_synced(&self) -> bool {
        current().0.is_synced()
    }
    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        current().0.nodes()
    }
    fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        current().0.node(name)
    }
    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        current().0.pods(namespace)
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        current().0.pod(namespace, name)
    }
}

impl MetricsSource for Current {
    fn node_usage(&self, node: &str, now_ms: i64) -> Option<NodeUsage> {
        current().1.node_usage(node, now_ms)
    }
    fn pod_usage(&self, namespace: &str, pod: &str, now_ms: i64) -> Option<PodUsage> {
        current().1.pod_usage(namespace, pod, now_ms)
    }
    fn is_ready(&self, now_ms: i64) -> bool {
        current().1.is_ready(now_ms)
    }
}

/// The one `Api`, now serving `cluster` and `metrics`.
fn api_for(cluster: FakeCluster, metrics: FakeMetrics) -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    *WORLD.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new((cluster, metrics)));
    API.get_or_init(|| Api::new(Arc::new(Current), Arc::new(Current)))
}

/// Nodes and pods from the input, answered from memory like the real index.
struct FakeCluster {
    nodes: Vec<Arc<NodeInfo>>,
    pods: Vec<Arc<PodInfo>>,
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
        self.pods
            .iter()
            .filter(|p| namespace.is_none_or(|ns| &*p.namespace == ns))
            .cloned()
            .collect()
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.pods
            .iter()
            .find(|p| &*p.namespace == namespace && &*p.name == name)
            .cloned()
    }
}

/// Usage from the input; staleness is the source's business, so `now` is ignored.
struct FakeMetrics {
    nodes: BTreeMap<String, NodeUsage>,
    pods: BTreeMap<(String, String), PodUsage>,
}

impl MetricsSource for FakeMetrics {
    fn node_usage(&self, node: &str, _now_ms: i64) -> Option<NodeUsage> {
        self.nodes.get(node).cloned()
    }
    fn pod_usage(&self, namespace: &str, pod: &str, _now_ms: i64) -> Option<PodUsage> {
        self.pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
    }
    fn is_ready(&self, _now_ms: i64) -> bool {
        true
    }
}

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> ArbitraryResult<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

/// A vocabulary word most of the time, otherwise a raw string from the input.
fn word(u: &mut Unstructured<'_>, from: &[&str]) -> ArbitraryResult<String> {
    if u.ratio(1, 6)? {
        Ok(u.arbitrary::<&str>()?.to_owned())
    } else {
        Ok(pick(u, from)?.to_owned())
    }
}

fn labels(u: &mut Unstructured<'_>) -> ArbitraryResult<Arc<Labels>> {
    let mut labels = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=3)? {
        labels.insert(word(u, LABEL_KEYS)?, word(u, LABEL_VALUES)?);
    }
    Ok(Arc::new(Labels::from(labels)))
}

fn usage(u: &mut Unstructured<'_>) -> ArbitraryResult<Usage> {
    Ok(Usage {
        cpu_nanocores: u.arbitrary()?,
        memory_bytes: u.arbitrary()?,
        swap_bytes: u.arbitrary()?,
    })
}

fn window(u: &mut Unstructured<'_>) -> ArbitraryResult<(i64, i64)> {
    // MetricsSource promises window_ms > 0.
    Ok((u.arbitrary()?, u.int_in_range(1..=i64::MAX)?))
}

fn fixed_labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// The objects every input starts with (so text-mode seeds from real clients find something): two nodes and three
/// pods with usage, one node and one pod without.
fn base_world() -> (FakeCluster, FakeMetrics) {
    const NOW: i64 = 1_767_261_600_000;
    let usage = Usage {
        cpu_nanocores: 1_234_567_890,
        memory_bytes: 6 << 30,
        swap_bytes: Some(0),
    };
    let node = |name: &str, labels: &[(&str, &str)]| {
        Arc::new(NodeInfo {
            name: name.into(),
            labels: fixed_labels(labels),
            target: None,
        })
    };
    let pod = |namespace: &str, name: &str, labels: &[(&str, &str)]| {
        Arc::new(PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            labels: fixed_labels(labels),
        })
    };
    let cluster = FakeCluster {
        nodes: vec![
            node("node-a", &[("role", "worker"), ("k", "5")]),
            node("node-b", &[("role", "control-plane")]),
            node("node-c", &[]),
        ],
        pods: vec![
            pod("default", "web-1", &[("app", "x"), ("tier", "web")]),
            pod("default", "web-2", &[("app", "y"), ("legacy", "")]),
            pod("kube-system", "dns", &[("k8s-app", "kube-dns")]),
            pod("prod", "db-0", &[("app", "db"), ("environment", "prod")]),
        ],
    };
    let mut metrics = FakeMetrics {
        nodes: BTreeMap::new(),
        pods: BTreeMap::new(),
    };
    for name in ["node-a", "node-b"] {
        metrics.nodes.insert(
            name.to_owned(),
            NodeUsage {
                timestamp_ms: NOW,
                window_ms: 20_050,
                usage,
            },
        );
    }
    for (namespace, name) in [
        ("default", "web-1"),
        ("default", "web-2"),
        ("kube-system", "dns"),
    ] {
        let containers = vec![
            ContainerUsage {
                name: "app".into(),
                usage,
            },
            ContainerUsage {
                name: "sidecar".into(),
                usage: Usage {
                    swap_bytes: None,
                    ..usage
                },
            },
        ];
        let pod = PodUsage {
            timestamp_ms: NOW,
            window_ms: 15_000,
            containers: containers.into(),
        };
        metrics
            .pods
            .insert((namespace.to_owned(), name.to_owned()), pod);
    }
    (cluster, metrics)
}

/// The base objects plus objects and usage from the input.
fn world(u: &mut Unstructured<'_>) -> ArbitraryResult<(FakeCluster, FakeMetrics)> {
    let (mut cluster, mut metrics) = base_world();
    for _ in 0..u.int_in_range(0..=3)? {
        let name = word(u, NAMES)?;
        if cluster.nodes.iter().any(|n| *n.name == *name) {
            continue;
        }
        if u.ratio(3, 4)? {
            let (timestamp_ms, window_ms) = window(u)?;
            metrics.nodes.insert(
                name.clone(),
                NodeUsage {
                    timestamp_ms,
                    window_ms,
                    usage: usage(u)?,
                },
            );
        }
        cluster.nodes.push(Arc::new(NodeInfo {
            name: name.into(),
            labels: labels(u)?,
            target: None,
        }));
    }
    cluster.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    for _ in 0..u.int_in_range(0..=4)? {
        let (namespace, name) = (word(u, NAMESPACES)?, word(u, NAMES)?);
        if cluster
            .pods
            .iter()
            .any(|p| (&*p.namespace, &*p.name) == (&*namespace, &*name))
        {
            continue;
        }
        if u.ratio(3, 4)? {
            let (timestamp_ms, window_ms) = window(u)?;
            let mut containers: Vec<ContainerUsage> = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                let container = word(u, &["app", "sidecar", "c\"q", ""])?;
                if containers.iter().all(|c| *c.name != *container) {
                    containers.push(ContainerUsage {
                        name: container.into(),
                        usage: usage(u)?,
                    });
                }
            }
            containers.sort_by(|a, b| a.name.cmp(&b.name));
            let pod = PodUsage {
                timestamp_ms,
                window_ms,
                containers: containers.into(),
            };
            metrics
                .pods
                .insert((namespace.clone(), name.clone()), pod);
        }
        cluster.pods.push(Arc::new(PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels(u)?,
        }));
    }
    cluster
        .pods
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok((cluster, metrics))
}

struct Input {
    method: String,
    path: String,
    query: String,
    accept: String,
    if_none_match: String,
    now_ms: i64,
}

/// Text mode: `METHOD\nPATH[?QUERY]\nACCEPT\nIF-NONE-MATCH\n`, then bytes for the extra objects.
fn text_input(data: &[u8]) -> Option<(Input, &[u8])> {
    let mut lines = data.splitn(5, |&b| b == b'\n');
    let mut line = || {
        std::str::from_utf8(lines.next().unwrap_or_default())
            .ok()
            .map(str::to_owned)
    };
    let (method, target, accept, if_none_match) = (line()?, line()?, line()?, line()?);
    let rest = lines.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let input = Input {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        accept,
        if_none_match,
        now_ms: 1_767_261_630_000,
    };
    Some((input, rest))
}

fn input(u: &mut Unstructured<'_>) -> ArbitraryResult<Input> {
    let method = word(u, METHODS)?;
    let path = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let mut path = String::new();
        for _ in 0..u.int_in_range(0..=7)? {
            path.push('/');
            path.push_str(&word(u, SEGMENTS)?);
        }
        if u.ratio(1, 8)? {
            path.push('/');
        }
        path
    };
    let query = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let mut params = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            params.push(format!(
                "{}={}",
                word(u, QUERY_KEYS)?,
                word(u, QUERY_VALUES)?
            ));
        }
        params.join("&")
    };
    let accept = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let mut entries = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let mut entry = word(u, MEDIA)?;
            for _ in 0..u.int_in_range(0..=2)? {
                entry.push(';');
                entry.push_str(&word(u, PARAMS)?);
            }
            entries.push(entry);
        }
        entries.join(pick(u, &[",", ", ", " , "])?)
    };
    let if_none_match = word(u, &["", "", "*", "W/\"x\"", "\"x\", *"])?;
    Ok(Input {
        method,
        path,
        query,
        accept,
        if_none_match,
        now_ms: u.arbitrary()?,
    })
}

fn content_type_is_json(content_type: &str) -> bool {
    content_type == "application/json" || content_type.starts_with("application/json;")
}

/// Whether one `Accept` entry is exactly `*/*` or `application/json`, which must never be refused.
fn offers_plain_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept
            .split(',')
            .map(str::trim)
            .any(|e| e == "*/*" || e == "application/json")
}

fn check(request: ApiRequest<'_>, response: &ApiResponse, conditional: bool) {
    let allowed: &[u16] = if conditional {
        &[200, 304, 400, 404, 405, 406]
    } else {
        &[200, 400, 404, 405, 406]
    };
    assert!(
        allowed.contains(&response.status),
        "unexpected status {response:?} for {request:?}"
    );
    if request.method != "GET" {
        assert!(
            matches!(response.status, 404 | 405),
            "{request:?} answered {}",
            response.status
        );
    }
    if offers_plain_json(request.accept) {
        assert_ne!(response.status, 406, "{request:?}");
    }
    if response.status == 304 {
        assert!(response.body.is_empty(), "a 304 has no body");
        return;
    }
    assert!(content_type_is_json(&response.content_type), "{response:?}");
    let body: Value = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(e) => panic!(
            "body is not JSON ({e}): {:?} for {request:?}",
            String::from_utf8_lossy(&response.body)
        ),
    };
    let kind = body.get("kind").and_then(Value::as_str);
    if response.status != 200 {
        assert_eq!(kind, Some("Status"), "{body}");
        assert_eq!(
            body.get("code").and_then(Value::as_u64),
            Some(u64::from(response.status)),
            "{body}"
        );
        return;
    }
    let content_type = response.content_type.as_str();
    if content_type.contains("as=Table") {
        assert_eq!(kind, Some("Table"), "{content_type}");
    }
    if content_type.contains("as=APIGroupDiscoveryList") {
        assert_eq!(kind, Some("APIGroupDiscoveryList"), "{content_type}");
        let version = if content_type.contains("v=v2beta1") {
            "v2beta1"
        } else {
            "v2"
        };
        let want = format!("apidiscovery.k8s.io/{version}");
        assert_eq!(
            body.get("apiVersion").and_then(Value::as_str),
            Some(want.as_str())
        );
        let offered = request
            .accept
            .split(',')
            .any(|e| e.contains("APIGroupDiscoveryList") && e.contains(version));
        assert!(
            offered,
            "aggregated discovery {version} sent to {:?}",
            request.accept
        );
    }
    if matches!(kind, Some("NodeMetricsList" | "PodMetricsList")) {
        check_selected(request.query, &body);
    }
}

/// Every listed object satisfies the request's label and field selectors (first occurrence of each wins).
fn check_selected(query: &str, body: &Value) {
    let first = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let labels = api::LabelSelector::parse(&first("labelSelector"))
        .expect("a listed request had a valid selector");
    let fields = api::FieldSelector::parse(&first("fieldSelector"))
        .expect("a listed request had a valid selector");
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .expect("a list has items");
    for item in items {
        let metadata = &item["metadata"];
        let mut map = BTreeMap::new();
        if let Some(object) = metadata.get("labels").and_then(Value::as_object) {
            for (k, v) in object {
                map.insert(
                    k.clone(),
                    v.as_str().expect("label values are strings").to_owned(),
                );
            }
        }
        assert!(
            labels.matches(&Labels::from(map)),
            "{item} does not match the label selector of {query:?}"
        );
        let name = metadata["name"].as_str().expect("objects have a name");
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(
            fields.matches(name, namespace),
            "{item} does not match the field selector of {query:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the mode: odd = text (seeds from real clients), even = generated from vocabularies.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (request, mut u) = if mode % 2 == 1 {
        let Some((request, rest)) = text_input(rest) else {
            return;
        };
        (request, Unstructured::new(rest))
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(request) = input(&mut u) else {
            return;
        };
        (request, u)
    };
    let (cluster, metrics) = world(&mut u).unwrap_or_else(|_| base_world());
    let api = api_for(cluster, metrics);
    let req = ApiRequest {
        method: &request.method,
        path: &request.path,
        query: &request.query,
        accept: &request.accept,
    };
    let response = api.handle(req, request.now_ms);
    check(req, &response, false);
    assert_eq!(
        api.handle(req, request.now_ms),
        response,
        "answers are deterministic"
    );
    let conditional = api.handle_conditional(req, &request.if_none_match, request.now_ms);
    check(req, &conditional, true);
    if let Some((_, etag)) = response.headers.iter().find(|(name, _)| *name == "ETag") {
        let revalidated = api.handle_conditional(req, etag, request.now_ms);
        assert_eq!(revalidated.status, 304, "the ETag just served revalidates");
    }
    if let auth::Attributes::Resource { group, .. } = Api::attributes(req) {
        assert_eq!(group, "metrics.k8s.io");
    }
});
