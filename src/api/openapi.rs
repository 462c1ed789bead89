//! OpenAPI documents for the two kinds: `/openapi/v2` (Swagger 2.0), `/openapi/v3` (the per-group-version index)
//! and `/openapi/v3/apis/metrics.k8s.io/<version>` (OpenAPI 3.0).
//!
//! The aggregator downloads and merges these so `kubectl explain nodemetrics` works. They never change, so they are
//! built once at start-up (a `serde_json::Value` here is fine: it is not on the request path) and served as bytes
//! with an `ETag`. This module must not read metrics or the cluster.

use serde_json::{Map, Value, json};

use super::discovery::Document;
use super::route::GroupVersion;

/// Pre-rendered OpenAPI documents.
#[derive(Debug, Clone)]
pub(crate) struct OpenApi {
    v2: Document,
    v3_index: Document,
    v3: [Document; 2],
}

/// Title of the documents (metrics-server's is "Kubernetes metrics-server").
const TITLE: &str = "resource-metrics-server";

/// Definitions from apimachinery that the kinds reference: (name, schema).
fn apimachinery_definitions(reference: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
            json!({"description": "Quantity is a fixed-point representation of a number (e.g. 250m, 1578392Ki).",
                   "type": "string"}),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
            json!({"description": "Time is an RFC 3339 date and time in UTC with whole seconds.",
                   "type": "string", "format": "date-time"}),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.Duration",
            json!({"description": "Duration is a Go duration string (e.g. 15.012s).", "type": "string"}),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
            json!({"description": "ListMeta describes metadata that synthetic resources must have.",
                   "type": "object",
                   "properties": {
                       "continue": {"type": "string"},
                       "remainingItemCount": {"type": "integer", "format": "int64"},
                       "resourceVersion": {"type": "string"},
                       "selfLink": {"type": "string"}}}),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            json!({"description": "ObjectMeta is metadata that all persisted resources must have.",
                   "type": "object",
                   "properties": {
                       "name": {"description": "Name of the node or pod.", "type": "string"},
                       "namespace": {"description": "Namespace of the pod.", "type": "string"},
                       "creationTimestamp": {"description": "When the metrics object was created (now).",
                                             "$ref": format!("{reference}io.k8s.apimachinery.pkg.apis.meta.v1.Time")},
                       "labels": {"description": "Labels of the node or pod.", "type": "object",
                                  "additionalProperties": {"type": "string", "default": ""}}}}),
        ),
    ]
}

/// The group's definitions for one version: (name, schema).
fn kind_definitions(version: GroupVersion, reference: &str) -> Vec<(String, Value)> {
    let v = version.as_str();
    let prefix = format!("io.k8s.metrics.pkg.apis.metrics.{v}.");
    let r = |name: &str| json!({ "$ref": format!("{reference}{name}") });
    let local = |name: &str| json!({ "$ref": format!("{reference}{prefix}{name}") });
    let gvk = |kind: &str| json!([{"group": "metrics.k8s.io", "kind": kind, "version": v}]);
    let usage = json!({"description": "The memory working set, CPU rate and (when reported) swap usage.",
                       "type": "object",
                       "additionalProperties": r("io.k8s.apimachinery.pkg.api.resource.Quantity")});
    let type_meta = |object: &mut Value| {
        object["properties"]["apiVersion"] =
            json!({"description": "APIVersion of this object.", "type": "string"});
        object["properties"]["kind"] =
            json!({"description": "Kind of this object.", "type": "string"});
    };
    let mut node = json!({
        "description": "NodeMetrics sets resource usage metrics of a node.",
        "type": "object",
        "required": ["timestamp", "window", "usage"],
        "properties": {
            "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "timestamp": {"description": "The end of the window the usage was measured over.",
                          "allOf": [r("io.k8s.apimachinery.pkg.apis.meta.v1.Time")]},
            "window": r("io.k8s.apimachinery.pkg.apis.meta.v1.Duration"),
            "usage": usage.clone()},
        "x-kubernetes-group-version-kind": gvk("NodeMetrics")});
    let mut pod = json!({
        "description": "PodMetrics sets resource usage metrics of a pod.",
        "type": "object",
        "required": ["timestamp", "window", "containers"],
        "properties": {
            "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "timestamp": {"description": "The end of the window the usage was measured over.",
                          "allOf": [r("io.k8s.apimachinery.pkg.apis.meta.v1.Time")]},
            "window": r("io.k8s.apimachinery.pkg.apis.meta.v1.Duration"),
            "containers": {"description": "Metrics for all containers, collected over the same window.",
                           "type": "array", "items": local("ContainerMetrics"),
                           "x-kubernetes-list-type": "atomic"}},
        "x-kubernetes-group-version-kind": gvk("PodMetrics")});
    let container = json!({
        "description": "ContainerMetrics sets resource usage metrics of a container.",
        "type": "object",
        "required": ["name", "usage"],
        "properties": {"name": {"description": "Container name.", "type": "string", "default": ""}, "usage": usage}});
    let list = |kind: &str, item: &str| {
        let mut list = json!({
            "description": format!("{kind} is a list of {item}."),
            "type": "object",
            "required": ["items"],
            "properties": {
                "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                "items": {"type": "array", "items": local(item)}},
            "x-kubernetes-group-version-kind": gvk(kind)});
        type_meta(&mut list);
        list
    };
    type_meta(&mut node);
    type_meta(&mut pod);
    vec![
        (format!("{prefix}ContainerMetrics"), container),
        (format!("{prefix}NodeMetrics"), node),
        (
            format!("{prefix}NodeMetricsList"),
            list("NodeMetricsList", "NodeMetrics"),
        ),
        (format!("{prefix}PodMetrics"), pod),
        (
            format!("{prefix}PodMetricsList"),
            list("PodMetricsList", "PodMetrics"),
        ),
    ]
}

/// One read-only operation: path, action, kind, operation id (`{}` stands for the capitalised version) and path
/// parameters.
struct Operation {
    path: String,
    action: &'static str,
    kind: &'static str,
    operation_id: String,
    parameters: &'static [&'static str],
}

/// The read-only operations of one version, named as the apiserver names them.
fn operations(version: GroupVersion) -> Vec<Operation> {
    let v = version.as_str();
    let base = format!("/apis/metrics.k8s.io/{v}");
    let capitalised = format!("V{}", &v[1..]);
    let op = |path: String, action, kind, id: &str, parameters| Operation {
        path,
        action,
        kind,
        operation_id: id.replace("{}", &capitalised),
        parameters,
    };
    vec![
        op(
            format!("{base}/nodes"),
            "list",
            "NodeMetrics",
            "listMetrics{}NodeMetrics",
            &[],
        ),
        op(
            format!("{base}/nodes/{{name}}"),
            "get",
            "NodeMetrics",
            "readMetrics{}NodeMetrics",
            &["name"],
        ),
        op(
            format!("{base}/pods"),
            "list",
            "PodMetrics",
            "listMetrics{}PodMetricsForAllNamespaces",
            &[],
        ),
        op(
            format!("{base}/namespaces/{{namespace}}/pods"),
            "list",
            "PodMetrics",
            "listMetrics{}NamespacedPodMetrics",
            &["namespace"],
        ),
        op(
            format!("{base}/namespaces/{{namespace}}/pods/{{name}}"),
            "get",
            "PodMetrics",
            "readMetrics{}NamespacedPodMetrics",
            &["namespace", "name"],
        ),
    ]
}

/// Builds the `paths` object; `v3` selects OpenAPI 3 parameter and response shapes.
fn paths(versions: &[GroupVersion], reference: &str, v3: bool) -> Value {
    let mut paths = Map::new();
    for &version in versions {
        let v = version.as_str();
        for Operation {
            path,
            action,
            kind,
            operation_id,
            parameters,
        } in operations(version)
        {
            let definition = if action == "list" {
                format!("{kind}List")
            } else {
                kind.to_owned()
            };
            let schema = json!({"$ref": format!("{reference}io.k8s.metrics.pkg.apis.metrics.{v}.{definition}")});
            let response = if v3 {
                json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
            } else {
                json!({"description": "OK", "schema": schema})
            };
            let parameters: Vec<Value> = parameters
                .iter()
                .map(|name| {
                    let description = if *name == "namespace" { "object name and auth scope" } else { "name of the object" };
                    if v3 {
                        json!({"name": name, "in": "path", "required": true, "description": description,
                               "schema": {"type": "string"}})
                    } else {
                        json!({"name": name, "in": "path", "required": true, "description": description, "type": "string"})
                    }
                })
                .collect();
            let mut operation = json!({
                "description": format!("{} {kind}", if action == "list" { "list" } else { "read the specified" }),
                "operationId": operation_id,
                "tags": [format!("metrics_{v}")],
                "responses": {"200": response, "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": {"group": "metrics.k8s.io", "version": v, "kind": kind}});
            if !v3 {
                operation["produces"] = json!(["application/json"]);
                operation["schemes"] = json!(["https"]);
            }
            let mut item = json!({ "get": operation });
            if !parameters.is_empty() {
                item["parameters"] = Value::Array(parameters);
            }
            paths.insert(path, item);
        }
    }
    Value::Object(paths)
}

fn definitions(versions: &[GroupVersion], reference: &str) -> Value {
    let mut definitions = Map::new();
    for (name, schema) in apimachinery_definitions(reference) {
        definitions.insert(name.to_owned(), schema);
    }
    for &version in versions {
        for (name, schema) in kind_definitions(version, reference) {
            definitions.insert(name, schema);
        }
    }
    Value::Object(definitions)
}

fn to_document(value: &Value) -> Document {
    // Serialising a Value built from string keys cannot fail; fall back to an empty object if it ever did.
    Document::new(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()))
}

// === impl OpenApi ===

impl OpenApi {
    /// Builds every document.
    pub(crate) fn new() -> Self {
        let info = json!({"title": TITLE, "version": env!("CARGO_PKG_VERSION")});
        let v2 = json!({
            "swagger": "2.0",
            "info": info,
            "paths": paths(&GroupVersion::ALL, "#/definitions/", false),
            "definitions": definitions(&GroupVersion::ALL, "#/definitions/")});
        let v3 = GroupVersion::ALL.map(|version| {
            to_document(&json!({
                "openapi": "3.0.0",
                "info": info,
                "paths": paths(&[version], "#/components/schemas/", true),
                "components": {"schemas": definitions(&[version], "#/components/schemas/")}}))
        });
        let mut index = Map::new();
        for (version, document) in GroupVersion::ALL.iter().zip(&v3) {
            let hash = document.etag.trim_matches('"').to_uppercase();
            index.insert(
                format!("apis/metrics.k8s.io/{}", version.as_str()),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/metrics.k8s.io/{}?hash={hash}", version.as_str())}),
            );
        }
        OpenApi {
            v2: to_document(&v2),
            v3_index: to_document(&json!({ "paths": index })),
            v3,
        }
    }

    /// `/openapi/v2`.
    pub(crate) fn v2(&self) -> &Document {
        &self.v2
    }

    /// `/openapi/v3`: links to each group-version document.
    pub(crate) fn v3_index(&self) -> &Document {
        &self.v3_index
    }

    /// `/openapi/v3/apis/metrics.k8s.io/<version>`.
    pub(crate) fn v3(&self, version: GroupVersion) -> &Document {
        &self.v3[version.index()]
    }
}
