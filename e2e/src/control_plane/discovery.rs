//! Discovery documents of the fake API server: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/metrics.k8s.io`,
//! in legacy and aggregated (apidiscovery v2 / v2beta1) forms. The metrics group appears only while the metrics
//! APIService is available, with v1 preferred and v1beta1 also served.
//!
//! Pure documents; negotiation lives in `negotiate`, availability in `aggregator`.

use serde_json::{Value, json};

use super::negotiate::DiscoveryFormat;
use super::objects::KUBERNETES_VERSION;

/// The metrics group name.
pub const METRICS_GROUP: &str = "metrics.k8s.io";

/// Metrics versions in preference order.
pub const METRICS_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// A core resource: name, singular, kind, namespaced, short names.
struct CoreResource {
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
}

const CORE: [CoreResource; 3] = [
    CoreResource {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
    },
    CoreResource {
        name: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short: &["no"],
    },
    CoreResource {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
    },
];

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Content-Type of an aggregated discovery answer.
pub fn aggregated_content_type(format: DiscoveryFormat) -> &'static str {
    match format {
        DiscoveryFormat::AggregatedV2 => {
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        }
        _ => "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
    }
}

fn discovery_list(format: DiscoveryFormat, items: Vec<Value>) -> Value {
    let version = if format == DiscoveryFormat::AggregatedV2 {
        "v2"
    } else {
        "v2beta1"
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

/// `/api` in the negotiated format.
pub fn core_root(format: DiscoveryFormat, server_address: &str) -> Value {
    if format == DiscoveryFormat::Legacy {
        return json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        });
    }
    let resources: Vec<Value> = CORE
        .iter()
        .map(|r| {
            json!({
                "resource": r.name,
                "responseKind": {"group": "", "version": "v1", "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": READ_VERBS,
                "shortNames": r.short,
            })
        })
        .collect();
    discovery_list(
        format,
        vec![
            json!({"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]}),
        ],
    )
}

/// `/api/v1`.
pub fn core_v1() -> Value {
    let resources: Vec<Value> = CORE
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": READ_VERBS,
                "shortNames": r.short,
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

fn metrics_resources_aggregated() -> Value {
    json!([
        {"resource": "nodes", "responseKind": {"group": "", "version": "", "kind": "NodeMetrics"}, "scope": "Cluster", "singularResource": "", "verbs": ["get", "list"]},
        {"resource": "pods", "responseKind": {"group": "", "version": "", "kind": "PodMetrics"}, "scope": "Namespaced", "singularResource": "", "verbs": ["get", "list"]},
    ])
}

fn metrics_group_legacy() -> Value {
    let versions: Vec<Value> = METRICS_VERSIONS
        .iter()
        .map(|v| json!({"groupVersion": format!("{METRICS_GROUP}/{v}"), "version": v}))
        .collect();
    json!({
        "name": METRICS_GROUP,
        "versions": versions,
        "preferredVersion": {"groupVersion": format!("{METRICS_GROUP}/{}", METRICS_VERSIONS[0]), "version": METRICS_VERSIONS[0]},
    })
}

/// `/apis` in the negotiated format; the metrics group only when `metrics_available`.
pub fn groups_root(format: DiscoveryFormat, metrics_available: bool) -> Value {
    if format == DiscoveryFormat::Legacy {
        let groups: Vec<Value> = if metrics_available {
            vec![metrics_group_legacy()]
        } else {
            Vec::new()
        };
        return json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups});
    }
    let mut items = Vec::new();
    if metrics_available {
        let versions: Vec<Value> = METRICS_VERSIONS
            .iter()
            .map(|v| json!({"version": v, "resources": metrics_resources_aggregated(), "freshness": "Current"}))
            .collect();
        items.push(json!({"metadata": {"name": METRICS_GROUP}, "versions": versions}));
    }
    discovery_list(format, items)
}

/// `/apis/metrics.k8s.io` (the aggregator serves it itself from the APIService).
pub fn metrics_group() -> Value {
    let mut group = metrics_group_legacy();
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    group
}
