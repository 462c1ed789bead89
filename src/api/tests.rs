//! Request-level tests of the API against in-file fakes of `ClusterView` and `MetricsSource`: routing, exact
//! bodies, Status errors, negotiation, selectors, Tables, authorization attributes and freshness.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::cluster::{Labels, NodeInfo, PodInfo};

/// 2026-01-01T10:00:05Z.
const NOW_MS: TimestampMs = 1_767_261_605_000;
/// 2026-01-01T10:00:00Z.
const SAMPLE_MS: TimestampMs = 1_767_261_600_000;

#[derive(Default)]
struct FakeCluster {
    /// Nodes and whether they match `--node-selector` (listed).
    nodes: Vec<(Arc<NodeInfo>, bool)>,
    pods: Vec<Arc<PodInfo>>,
}

#[derive(Default)]
struct FakeMetrics {
    nodes: HashMap<String, NodeUsage>,
    pods: HashMap<(String, String), PodUsage>,
}

impl ClusterView for FakeCluster {
    fn is_synced(&self) -> bool {
        true
    }
    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        let mut nodes: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, listed)| *listed)
            .map(|(n, _)| n.clone())
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }
    fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.nodes
            .iter()
            .find(|(n, _)| &*n.name == name)
            .map(|(n, _)| n.clone())
    }
    fn pods(&self, namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        let mut pods: Vec<_> = self
            .pods
            .iter()
            .filter(|p| namespace.is_none_or(|ns| &*p.namespace == ns))
            .cloned()
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.pods
            .iter()
            .find(|p| &*p.namespace == namespace && &*p.name == name)
            .cloned()
    }
}

impl MetricsSource for FakeMetrics {
    fn node_usage(&self, node: &str, _now_ms: TimestampMs) -> Option<NodeUsage> {
        self.nodes.get(node).cloned()
    }
    fn pod_usage(&self, namespace: &str, pod: &str, _now_ms: TimestampMs) -> Option<PodUsage> {
        self.pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
    }
    fn is_ready(&self, _now_ms: TimestampMs) -> bool {
        !self.nodes.is_empty()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn usage(cpu_nanocores: u64, memory_bytes: u64) -> Usage {
    Usage {
        cpu_nanocores,
        memory_bytes,
        swap_bytes: None,
    }
}

/// The standard fixture:
/// - node-a (listed, metrics, labels), node-b (listed, metrics, swap), node-c (listed, no metrics),
///   node-x (not matching `--node-selector`, metrics).
/// - default/web-1 (2 containers), default/web-2 (no metrics), kube-system/dns (1 container), other/db (swap).
fn fixture() -> (FakeCluster, FakeMetrics) {
    let mut cluster = FakeCluster::default();
    let mut metrics = FakeMetrics::default();
    let node = |name: &str, pairs: &[(&str, &str)]| {
        Arc::new(NodeInfo {
            name: name.into(),
            labels: labels(pairs),
            target: None,
        })
    };
    cluster
        .nodes
        .push((node("node-b", &[("role", "worker")]), true));
    cluster.nodes.push((
        node(
            "node-a",
            &[("kubernetes.io/os", "linux"), ("role", "control")],
        ),
        true,
    ));
    cluster.nodes.push((node("node-c", &[]), true));
    cluster.nodes.push((node("node-x", &[]), false));
    let node_usage = |u: Usage| NodeUsage {
        timestamp_ms: SAMPLE_MS,
        window_ms: 15_012,
        usage: u,
    };
    metrics.nodes.insert(
        "node-a".into(),
        node_usage(usage(123_456_789, 1_578_392 * 1024)),
    );
    metrics.nodes.insert(
        "node-b".into(),
        node_usage(Usage {
            cpu_nanocores: 1_200_000_000,
            memory_bytes: 6 << 30,
            swap_bytes: Some(1 << 20),
        }),
    );
    metrics
        .nodes
        .insert("node-x".into(), node_usage(usage(1_000_000_000, 1 << 30)));

    let pod = |ns: &str, name: &str, pairs: &[(&str, &str)]| {
        Arc::new(PodInfo {
            namespace: ns.into(),
            name: name.into(),
            labels: labels(pairs),
        })
    };
    cluster
        .pods
        .push(pod("kube-system", "dns", &[("k8s-app", "kube-dns")]));
    cluster
        .pods
        .push(pod("default", "web-2", &[("app", "web")]));
    cluster.pods.push(pod(
        "default",
        "web-1",
        &[("app", "web"), ("tier", "front")],
    ));
    cluster.pods.push(pod("other", "db", &[]));
    let container = |name: &str, u: Usage| ContainerUsage {
        name: name.into(),
        usage: u,
    };
    let pod_usage = |containers: Vec<ContainerUsage>| PodUsage {
        timestamp_ms: SAMPLE_MS - 500,
        window_ms: 20_050,
        containers: containers.into(),
    };
    metrics.pods.insert(
        ("default".into(), "web-1".into()),
        pod_usage(vec![
            container("app", usage(250_499_999, 10 << 20)),
            container("sidecar", usage(4_999_999, 512)),
        ]),
    );
    metrics.pods.insert(
        ("kube-system".into(), "dns".into()),
        pod_usage(vec![container("coredns", usage(5_000_000, 1500))]),
    );
    metrics.pods.insert(
        ("other".into(), "db".into()),
        pod_usage(vec![container(
            "pg",
            Usage {
                cpu_nanocores: 2_000_000_000,
                memory_bytes: 1 << 30,
                swap_bytes: Some(2048),
            },
        )]),
    );
    (cluster, metrics)
}

fn api() -> Api {
    let (cluster, metrics) = fixture();
    Api::new(Arc::new(cluster), Arc::new(metrics))
}

fn get(api: &Api, path_and_query: &str, accept: &str) -> ApiResponse {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    api.handle(
        ApiRequest {
            method: "GET",
            path,
            query,
            accept,
        },
        NOW_MS,
    )
}

fn body(response: &ApiResponse) -> &str {
    std::str::from_utf8(&response.body).unwrap()
}

const NODE_A: &str = r#"{"metadata":{"name":"node-a","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"kubernetes.io/os":"linux","role":"control"}},"timestamp":"2026-01-01T10:00:00Z","window":"15.012s","usage":{"cpu":"123456789n","memory":"1578392Ki"}}"#;
const NODE_B: &str = r#"{"metadata":{"name":"node-b","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"role":"worker"}},"timestamp":"2026-01-01T10:00:00Z","window":"15.012s","usage":{"cpu":"1200m","memory":"6Gi","swap":"1Mi"}}"#;
const WEB_1: &str = r#"{"metadata":{"name":"web-1","namespace":"default","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"app":"web","tier":"front"}},"timestamp":"2026-01-01T09:59:59Z","window":"20.05s","containers":[{"name":"app","usage":{"cpu":"250499999n","memory":"10Mi"}},{"name":"sidecar","usage":{"cpu":"4999999n","memory":"512"}}]}"#;
const DNS: &str = r#"{"metadata":{"name":"dns","namespace":"kube-system","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"k8s-app":"kube-dns"}},"timestamp":"2026-01-01T09:59:59Z","window":"20.05s","containers":[{"name":"coredns","usage":{"cpu":"5m","memory":"1500"}}]}"#;
const DB: &str = r#"{"metadata":{"name":"db","namespace":"other","creationTimestamp":"2026-01-01T10:00:05Z"},"timestamp":"2026-01-01T09:59:59Z","window":"20.05s","containers":[{"name":"pg","usage":{"cpu":"2","memory":"1Gi","swap":"2Ki"}}]}"#;

fn list(kind: &str, version: &str, items: &[&str]) -> String {
    format!(
        r#"{{"kind":"{kind}","apiVersion":"metrics.k8s.io/{version}","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

fn with_kind(kind: &str, version: &str, object: &str) -> String {
    format!(
        r#"{{"kind":"{kind}","apiVersion":"metrics.k8s.io/{version}",{}"#,
        &object[1..]
    )
}

fn status(code: u16, reason: &str, message: &str, details: Option<&str>) -> String {
    let details = details
        .map(|d| format!(r#","details":{d}"#))
        .unwrap_or_default();
    format!(
        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":{},"reason":"{reason}"{details},"code":{code}}}"#,
        serde_json::to_string(message).unwrap()
    )
}

#[test]
fn successful_requests_return_exact_bodies() {
    let api = api();
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "node list is sorted, omits nodes without metrics and unselected nodes",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            list("NodeMetricsList", "v1beta1", &[NODE_A, NODE_B]),
        ),
        (
            "node list in v1 says v1",
            "/apis/metrics.k8s.io/v1/nodes",
            list("NodeMetricsList", "v1", &[NODE_A, NODE_B]),
        ),
        (
            "node get has kind and apiVersion",
            "/apis/metrics.k8s.io/v1beta1/nodes/node-a",
            with_kind("NodeMetrics", "v1beta1", NODE_A),
        ),
        (
            "node get ignores --node-selector",
            "/apis/metrics.k8s.io/v1/nodes/node-x",
            {
                let mut s = with_kind("NodeMetrics", "v1", NODE_A);
                s = s.replace(r#""name":"node-a","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"kubernetes.io/os":"linux","role":"control"}"#, r#""name":"node-x","creationTimestamp":"2026-01-01T10:00:05Z""#);
                s.replace(
                    r#"{"cpu":"123456789n","memory":"1578392Ki"}"#,
                    r#"{"cpu":"1","memory":"1Gi"}"#,
                )
            },
        ),
        (
            "pod list over all namespaces is sorted by namespace and name",
            "/apis/metrics.k8s.io/v1beta1/pods",
            list("PodMetricsList", "v1beta1", &[WEB_1, DNS, DB]),
        ),
        (
            "namespaced pod list",
            "/apis/metrics.k8s.io/v1/namespaces/kube-system/pods",
            list("PodMetricsList", "v1", &[DNS]),
        ),
        (
            "empty namespace gives an empty list",
            "/apis/metrics.k8s.io/v1/namespaces/none/pods",
            list("PodMetricsList", "v1", &[]),
        ),
        (
            "pod get",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
            with_kind("PodMetrics", "v1beta1", WEB_1),
        ),
        (
            "label selector on nodes",
            "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=role%3Dworker&limit=500",
            list("NodeMetricsList", "v1beta1", &[NODE_B]),
        ),
        (
            "set-based selector with plus-encoded spaces",
            "/apis/metrics.k8s.io/v1/pods?labelSelector=app+in+%28web%29%2C%21legacy",
            list("PodMetricsList", "v1", &[WEB_1]),
        ),
        (
            "field selector on node name",
            "/apis/metrics.k8s.io/v1/nodes?fieldSelector=metadata.name%21%3Dnode-a",
            list("NodeMetricsList", "v1", &[NODE_B]),
        ),
        (
            "field selector on pod namespace",
            "/apis/metrics.k8s.io/v1/pods?fieldSelector=metadata.namespace%3Dother",
            list("PodMetricsList", "v1", &[DB]),
        ),
        (
            "field selector namespace disagreeing with the path",
            "/apis/metrics.k8s.io/v1/namespaces/default/pods?fieldSelector=metadata.namespace%3Dother",
            list("PodMetricsList", "v1", &[]),
        ),
        (
            "watch=false is a list",
            "/apis/metrics.k8s.io/v1/nodes?watch=false",
            list("NodeMetricsList", "v1", &[NODE_A, NODE_B]),
        ),
    ];
    for (name, path, want) in cases {
        let response = get(&api, path, "application/vnd.kubernetes.protobuf, */*");
        assert_eq!(response.status, 200, "{name}: {}", body(&response));
        assert_eq!(response.content_type, "application/json", "{name}");
        assert_eq!(body(&response), want, "{name}");
        serde_json::from_slice::<serde_json::Value>(&response.body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn failures_return_exact_status_bodies() {
    let api = api();
    let nodes_kind = r#"{"group":"metrics.k8s.io","kind":"nodes"}"#;
    let cases: Vec<(&str, &str, &str, &str, u16, String)> = vec![
        (
            "node without metrics",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/nodes/node-c",
            "",
            404,
            status(
                404,
                "NotFound",
                "nodemetrics.metrics.k8s.io \"node-c\" not found",
                Some(r#"{"name":"node-c","group":"metrics.k8s.io","kind":"nodemetrics"}"#),
            ),
        ),
        (
            "unknown node",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/nodes/nope",
            "",
            404,
            status(
                404,
                "NotFound",
                "node \"nope\" not found",
                Some(r#"{"name":"nope","kind":"node"}"#),
            ),
        ),
        (
            "pod without metrics",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-2",
            "",
            404,
            status(
                404,
                "NotFound",
                "podmetrics.metrics.k8s.io \"default/web-2\" not found",
                Some(r#"{"name":"default/web-2","group":"metrics.k8s.io","kind":"podmetrics"}"#),
            ),
        ),
        (
            "unknown or not running pod",
            "GET",
            "/apis/metrics.k8s.io/v1/namespaces/default/pods/gone",
            "",
            404,
            status(
                404,
                "NotFound",
                "pods \"gone\" not found",
                Some(r#"{"name":"gone","kind":"pods"}"#),
            ),
        ),
        (
            "unknown path in the group",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/services",
            "",
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some("{}"),
            ),
        ),
        (
            "core api is not served",
            "GET",
            "/api",
            "",
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some("{}"),
            ),
        ),
        (
            "unknown version",
            "GET",
            "/apis/metrics.k8s.io/v2",
            "",
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some("{}"),
            ),
        ),
        (
            "watch on nodes",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "watch=true",
            405,
            status(
                405,
                "MethodNotAllowed",
                "watch is not supported on resources of kind \"nodes.metrics.k8s.io\"",
                Some(nodes_kind),
            ),
        ),
        (
            "watch=1 on pods",
            "GET",
            "/apis/metrics.k8s.io/v1/namespaces/default/pods",
            "watch=1",
            405,
            status(
                405,
                "MethodNotAllowed",
                "watch is not supported on resources of kind \"pods.metrics.k8s.io\"",
                Some(r#"{"group":"metrics.k8s.io","kind":"pods"}"#),
            ),
        ),
        (
            "post",
            "POST",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "",
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some("{}"),
            ),
        ),
        (
            "delete of a named pod",
            "DELETE",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
            "",
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some("{}"),
            ),
        ),
        (
            "put on discovery",
            "PUT",
            "/apis",
            "",
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some("{}"),
            ),
        ),
        (
            "unknown field selector",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/pods",
            "fieldSelector=spec.nodeName%3Dnode-a",
            400,
            status(
                400,
                "BadRequest",
                "\"spec.nodeName\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                None,
            ),
        ),
        (
            "bad label selector",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "labelSelector=a%3Db+c",
            400,
            status(
                400,
                "BadRequest",
                "found 'c', expected: ',' or 'end of string'",
                None,
            ),
        ),
    ];
    for (name, method, path, query, code, want) in cases {
        let response = api.handle(
            ApiRequest {
                method,
                path,
                query,
                accept: "application/json",
            },
            NOW_MS,
        );
        assert_eq!(response.status, code, "{name}");
        assert_eq!(response.content_type, "application/json", "{name}");
        assert_eq!(body(&response), want, "{name}");
    }
}

#[test]
fn accept_headers_decide_between_json_table_and_406() {
    let api = api();
    let not_acceptable = status(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json",
        None,
    );
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        (
            "protobuf with fallback",
            "/apis/metrics.k8s.io/v1/nodes",
            "application/vnd.kubernetes.protobuf, */*",
            200,
            "application/json",
        ),
        (
            "protobuf only",
            "/apis/metrics.k8s.io/v1/nodes",
            "application/vnd.kubernetes.protobuf",
            406,
            "application/json",
        ),
        (
            "yaml only on a get",
            "/apis/metrics.k8s.io/v1/nodes/node-a",
            "application/yaml",
            406,
            "application/json",
        ),
        (
            "application wildcard",
            "/apis/metrics.k8s.io/v1/pods",
            "application/*",
            200,
            "application/json",
        ),
        (
            "kubectl get asks for a table",
            "/apis/metrics.k8s.io/v1/pods",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            200,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        ),
        (
            "table only on a discovery document",
            "/apis/metrics.k8s.io/v1",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            406,
            "application/json",
        ),
        (
            "protobuf only on discovery",
            "/apis",
            "application/vnd.kubernetes.protobuf",
            406,
            "application/json",
        ),
    ];
    for (name, path, accept, code, content_type) in cases {
        let response = get(&api, path, accept);
        assert_eq!(response.status, code, "{name}");
        assert_eq!(response.content_type, content_type, "{name}");
        if code == 406 {
            assert_eq!(body(&response), not_acceptable, "{name}");
        }
    }
}

const AGG_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGG_V2B1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

#[test]
fn discovery_documents_are_exact() {
    let api = api();
    let versions = r#""versions":[{"groupVersion":"metrics.k8s.io/v1","version":"v1"},{"groupVersion":"metrics.k8s.io/v1beta1","version":"v1beta1"}],"preferredVersion":{"groupVersion":"metrics.k8s.io/v1","version":"v1"}"#;
    let resources = r#""resources":[{"name":"nodes","singularName":"","namespaced":false,"kind":"NodeMetrics","verbs":["get","list"]},{"name":"pods","singularName":"","namespaced":true,"kind":"PodMetrics","verbs":["get","list"]}]"#;
    let agg_resources = r#""resources":[{"resource":"nodes","responseKind":{"group":"","version":"","kind":"NodeMetrics"},"scope":"Cluster","singularResource":"","verbs":["get","list"]},{"resource":"pods","responseKind":{"group":"","version":"","kind":"PodMetrics"},"scope":"Namespaced","singularResource":"","verbs":["get","list"]}]"#;
    let aggregated = |v: &str| {
        format!(
            r#"{{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/{v}","metadata":{{}},"items":[{{"metadata":{{"name":"metrics.k8s.io"}},"versions":[{{"version":"v1",{agg_resources},"freshness":"Current"}},{{"version":"v1beta1",{agg_resources},"freshness":"Current"}}]}}]}}"#
        )
    };
    let legacy_list = format!(
        r#"{{"kind":"APIGroupList","apiVersion":"v1","groups":[{{"name":"metrics.k8s.io",{versions}}}]}}"#
    );
    let kubectl_130 = format!("{AGG_V2},{AGG_V2B1},application/json");
    let kubectl_127 = format!("{AGG_V2B1},application/json");
    let cases: Vec<(&str, &str, &str, &str, String)> = vec![
        (
            "legacy apis",
            "/apis",
            "application/json, */*",
            "application/json",
            legacy_list.clone(),
        ),
        (
            "apis without accept",
            "/apis?timeout=32s",
            "",
            "application/json",
            legacy_list,
        ),
        (
            "aggregated v2",
            "/apis",
            &kubectl_130,
            AGG_V2,
            aggregated("v2"),
        ),
        (
            "aggregated v2beta1 only when offered first",
            "/apis",
            &kubectl_127,
            AGG_V2B1,
            aggregated("v2beta1"),
        ),
        (
            "group",
            "/apis/metrics.k8s.io",
            "application/json, */*",
            "application/json",
            format!(
                r#"{{"kind":"APIGroup","apiVersion":"v1","name":"metrics.k8s.io",{versions}}}"#
            ),
        ),
        (
            "v1beta1 resources",
            "/apis/metrics.k8s.io/v1beta1",
            "application/json, */*",
            "application/json",
            format!(
                r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"metrics.k8s.io/v1beta1",{resources}}}"#
            ),
        ),
        (
            "v1 resources",
            "/apis/metrics.k8s.io/v1",
            "",
            "application/json",
            format!(
                r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"metrics.k8s.io/v1",{resources}}}"#
            ),
        ),
    ];
    for (name, path, accept, content_type, want) in cases {
        let response = get(&api, path, accept);
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(response.content_type, content_type, "{name}");
        assert_eq!(body(&response), want, "{name}");
    }
}

#[test]
fn apis_varies_on_accept_and_carries_a_stable_etag_per_body() {
    let api = api();
    let legacy = get(&api, "/apis", "application/json");
    let v2 = get(&api, "/apis", AGG_V2);
    let header = |r: &ApiResponse, name: &str| {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(&legacy, "Vary").as_deref(), Some("Accept"));
    assert_eq!(header(&v2, "Vary").as_deref(), Some("Accept"));
    let (legacy_tag, v2_tag) = (
        header(&legacy, "ETag").unwrap(),
        header(&v2, "ETag").unwrap(),
    );
    assert!(
        legacy_tag.starts_with('"') && legacy_tag.ends_with('"') && legacy_tag.len() == 66,
        "{legacy_tag}"
    );
    assert_ne!(legacy_tag, v2_tag);
    assert_eq!(
        header(&get(&api, "/apis", "application/json"), "ETag").unwrap(),
        legacy_tag
    );
}

#[test]
fn discovery_answers_before_any_metrics_exist() {
    let api = Api::new(
        Arc::new(FakeCluster::default()),
        Arc::new(FakeMetrics::default()),
    );
    assert_eq!(get(&api, "/apis/metrics.k8s.io/v1beta1", "").status, 200);
    let response = get(&api, "/apis/metrics.k8s.io/v1beta1/nodes", "");
    assert_eq!(body(&response), list("NodeMetricsList", "v1beta1", &[]));
}

const TABLE_V1: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const NAME_COLUMN: &str = r#"{"name":"Name","type":"string","format":"name","description":"Name of the resource","priority":0}"#;
const WINDOW_COLUMN: &str =
    r#"{"name":"Window","type":"string","format":"duration","description":"","priority":0}"#;

fn quantity_column(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","type":"string","format":"quantity","description":"","priority":0}}"#
    )
}

fn table(version: &str, columns: &[&str], rows: &[String]) -> String {
    let mut defs = vec![NAME_COLUMN.to_owned()];
    defs.extend(columns.iter().map(|c| quantity_column(c)));
    defs.push(WINDOW_COLUMN.to_owned());
    format!(
        r#"{{"kind":"Table","apiVersion":"meta.k8s.io/{version}","metadata":{{}},"columnDefinitions":[{}],"rows":[{}]}}"#,
        defs.join(","),
        rows.join(",")
    )
}

#[test]
fn tables_have_fixed_columns_summed_pod_rows_and_partial_metadata() {
    let api = api();
    let web_meta = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"web-1","namespace":"default","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"app":"web","tier":"front"}}}"#;
    let web_row =
        format!(r#"{{"cells":["web-1","255499998n","10486272","20.05s"],"object":{web_meta}}}"#);
    let node_a_meta = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1beta1","metadata":{"name":"node-a","creationTimestamp":"2026-01-01T10:00:05Z","labels":{"kubernetes.io/os":"linux","role":"control"}}}"#;
    let cases: Vec<(&str, &str, &str, String)> = vec![
        (
            "pod rows sum containers and embed metadata",
            "/apis/metrics.k8s.io/v1/namespaces/default/pods?limit=500",
            TABLE_V1,
            table("v1", &["cpu", "memory"], &[web_row]),
        ),
        (
            "empty lists still define columns",
            "/apis/metrics.k8s.io/v1/namespaces/none/pods",
            TABLE_V1,
            table("v1", &["cpu", "memory"], &[]),
        ),
        (
            "swap column appears when an object reports swap",
            "/apis/metrics.k8s.io/v1/nodes?includeObject=None",
            TABLE_V1,
            table(
                "v1",
                &["cpu", "memory", "swap"],
                &[
                    r#"{"cells":["node-a","123456789n","1578392Ki","<unknown>","15.012s"]}"#
                        .to_owned(),
                    r#"{"cells":["node-b","1200m","6Gi","1Mi","15.012s"]}"#.to_owned(),
                ],
            ),
        ),
        (
            "v1beta1 table for a get",
            "/apis/metrics.k8s.io/v1beta1/nodes/node-a",
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
            table(
                "v1beta1",
                &["cpu", "memory"],
                &[format!(
                    r#"{{"cells":["node-a","123456789n","1578392Ki","15.012s"],"object":{node_a_meta}}}"#
                )],
            ),
        ),
        (
            "includeObject=Object embeds the full object",
            "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods?includeObject=Object",
            TABLE_V1,
            table(
                "v1",
                &["cpu", "memory"],
                &[format!(
                    r#"{{"cells":["dns","5m","1500","20.05s"],"object":{}}}"#,
                    with_kind("PodMetrics", "v1beta1", DNS)
                )],
            ),
        ),
    ];
    for (name, path, accept, want) in cases {
        let response = get(&api, path, accept);
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(body(&response), want, "{name}");
    }
}

#[test]
fn attributes_follow_request_info() {
    let resource =
        |verb: &str, resource: &str, version: &str, namespace: Option<&str>, name: Option<&str>| {
            Attributes::Resource {
                verb: verb.into(),
                group: "metrics.k8s.io".into(),
                version: version.into(),
                resource: resource.into(),
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
            }
        };
    let non_resource = |verb: &str, path: &str| Attributes::NonResource {
        verb: verb.into(),
        path: path.into(),
    };
    let cases: Vec<(&str, &str, &str, &str, Attributes)> = vec![
        (
            "node list",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "",
            resource("list", "nodes", "v1beta1", None, None),
        ),
        (
            "node get",
            "GET",
            "/apis/metrics.k8s.io/v1/nodes/node-a",
            "",
            resource("get", "nodes", "v1", None, Some("node-a")),
        ),
        (
            "watch",
            "GET",
            "/apis/metrics.k8s.io/v1/nodes",
            "watch=true",
            resource("watch", "nodes", "v1", None, None),
        ),
        (
            "all pods",
            "GET",
            "/apis/metrics.k8s.io/v1/pods",
            "",
            resource("list", "pods", "v1", None, None),
        ),
        (
            "namespaced pod get",
            "GET",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
            "",
            resource("get", "pods", "v1beta1", Some("default"), Some("web-1")),
        ),
        (
            "namespaced list",
            "GET",
            "/apis/metrics.k8s.io/v1/namespaces/default/pods",
            "labelSelector=a",
            resource("list", "pods", "v1", Some("default"), None),
        ),
        (
            "post",
            "POST",
            "/apis/metrics.k8s.io/v1/nodes",
            "",
            resource("create", "nodes", "v1", None, None),
        ),
        (
            "put",
            "PUT",
            "/apis/metrics.k8s.io/v1/nodes/a",
            "",
            resource("update", "nodes", "v1", None, Some("a")),
        ),
        (
            "patch",
            "PATCH",
            "/apis/metrics.k8s.io/v1/nodes/a",
            "",
            resource("patch", "nodes", "v1", None, Some("a")),
        ),
        (
            "delete",
            "DELETE",
            "/apis/metrics.k8s.io/v1/nodes/a",
            "",
            resource("delete", "nodes", "v1", None, Some("a")),
        ),
        (
            "discovery",
            "GET",
            "/apis",
            "",
            non_resource("get", "/apis"),
        ),
        (
            "group version",
            "GET",
            "/apis/metrics.k8s.io/v1beta1",
            "",
            non_resource("get", "/apis/metrics.k8s.io/v1beta1"),
        ),
        (
            "metrics",
            "GET",
            "/metrics",
            "",
            non_resource("get", "/metrics"),
        ),
        (
            "other group",
            "GET",
            "/apis/apps/v1/deployments",
            "",
            non_resource("get", "/apis/apps/v1/deployments"),
        ),
    ];
    for (name, method, path, query, want) in cases {
        assert_eq!(
            Api::attributes(ApiRequest {
                method,
                path,
                query,
                accept: ""
            }),
            want,
            "{name}"
        );
    }
}

#[test]
fn freshness_is_observed_for_every_returned_object() {
    let (cluster, metrics) = fixture();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let api = Api::new(Arc::new(cluster), Arc::new(metrics))
        .with_freshness_observer(Arc::new(move |age| sink.lock().unwrap().push(age)));
    get(&api, "/apis/metrics.k8s.io/v1/nodes", "");
    get(
        &api,
        "/apis/metrics.k8s.io/v1/namespaces/default/pods/web-1",
        "",
    );
    get(&api, "/apis/metrics.k8s.io/v1/nodes/node-c", "");
    assert_eq!(*seen.lock().unwrap(), vec![5.0, 5.0, 5.5]);
}

#[test]
fn openapi_documents_describe_both_kinds_in_both_versions() {
    let api = api();
    let json = |path: &str| -> serde_json::Value {
        let response = get(&api, path, "application/json");
        assert_eq!(response.status, 200, "{path}");
        assert!(response.headers.iter().any(|(n, _)| *n == "ETag"), "{path}");
        serde_json::from_slice(&response.body).unwrap()
    };
    let v2 = json("/openapi/v2");
    assert_eq!(v2["swagger"], "2.0");
    for v in ["v1", "v1beta1"] {
        let node = &v2["definitions"][format!("io.k8s.metrics.pkg.apis.metrics.{v}.NodeMetrics")];
        assert_eq!(
            node["required"],
            serde_json::json!(["timestamp", "window", "usage"]),
            "{v}"
        );
        assert_eq!(node["x-kubernetes-group-version-kind"][0]["version"], v);
        let pod = &v2["definitions"][format!("io.k8s.metrics.pkg.apis.metrics.{v}.PodMetrics")];
        assert_eq!(
            pod["required"],
            serde_json::json!(["timestamp", "window", "containers"]),
            "{v}"
        );
        let get_pod = &v2["paths"]
            [format!("/apis/metrics.k8s.io/{v}/namespaces/{{namespace}}/pods/{{name}}")];
        assert_eq!(
            get_pod["parameters"].as_array().map(Vec::len),
            Some(2),
            "{v}"
        );
        assert_eq!(get_pod["get"]["x-kubernetes-action"], "get");
    }
    // Every $ref resolves inside the document.
    let text = v2.to_string();
    for reference in text.split("\"$ref\":\"#/definitions/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            v2["definitions"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let index = json("/openapi/v3");
    let url = index["paths"]["apis/metrics.k8s.io/v1beta1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("/openapi/v3/apis/metrics.k8s.io/v1beta1?hash="),
        "{url}"
    );
    let v3 = json(url.split('?').next().unwrap());
    assert_eq!(v3["openapi"], "3.0.0");
    assert!(
        v3["components"]["schemas"]
            .get("io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetricsList")
            .is_some()
    );
    assert!(
        v3["components"]["schemas"]
            .get("io.k8s.metrics.pkg.apis.metrics.v1.PodMetricsList")
            .is_none()
    );
}

#[test]
fn if_none_match_turns_matching_documents_into_304() {
    let api = api();
    let request = |path, accept| ApiRequest {
        method: "GET",
        path,
        query: "",
        accept,
    };
    let first = api.handle(request("/apis", AGG_V2), NOW_MS);
    let etag = first
        .headers
        .iter()
        .find(|(n, _)| *n == "ETag")
        .map(|(_, v)| v.clone())
        .unwrap();
    let cases: Vec<(&str, &str, &str, String, u16)> = vec![
        ("same tag", "/apis", AGG_V2, etag.clone(), 304),
        (
            "weak form of the same tag",
            "/apis",
            AGG_V2,
            format!("W/{etag}"),
            304,
        ),
        (
            "one of several",
            "/apis",
            AGG_V2,
            format!("\"other\", {etag}"),
            304,
        ),
        ("star", "/apis", AGG_V2, "*".to_owned(), 304),
        ("other tag", "/apis", AGG_V2, "\"other\"".to_owned(), 200),
        (
            "tag of another representation",
            "/apis",
            "application/json",
            etag.clone(),
            200,
        ),
        ("absent", "/apis", AGG_V2, String::new(), 200),
        (
            "metrics lists carry no tag",
            "/apis/metrics.k8s.io/v1/nodes",
            "application/json",
            "*".to_owned(),
            200,
        ),
    ];
    for (name, path, accept, if_none_match, code) in cases {
        let response = api.handle_conditional(request(path, accept), &if_none_match, NOW_MS);
        assert_eq!(response.status, code, "{name}");
        assert_eq!(response.body.is_empty(), code == 304, "{name}");
    }
}
