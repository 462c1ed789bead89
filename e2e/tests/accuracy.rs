//! Accuracy of the served values, end to end: the real binary scrapes fake kubelets whose CPU counters grow at known
//! rates, and every NodeMetrics/PodMetrics object read through the aggregator over HTTPS, in both
//! `metrics.k8s.io/v1beta1` and `metrics.k8s.io/v1`, must match the model: CPU within 1 %, memory and swap exact,
//! a sane window and timestamp, the right apiVersion, kind, metadata and ordering. Build the binary first
//! (`$RMS_BIN`). This file checks values only; client rendering is in `kubectl_matrix.rs`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::harness::{Cluster, ServerProcess, eventually};
use e2e::model::{ClusterSpec, container, node, pod};
use serde_json::Value;
use support::{bytes, cpu_nanocores, go_duration};

mod support;

/// Startup budget of the server.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Budget for every object to have metrics (two scrapes at 10 s plus slack for a loaded machine).
const METRICS_WITHIN: Duration = Duration::from_secs(90);

/// `--metric-resolution` the harness starts the server with, seconds.
const RESOLUTION_S: f64 = 10.0;

/// `--kubelet-request-timeout` the harness starts the server with, seconds.
const TIMEOUT_S: f64 = 5.0;

/// Slack for a loaded machine on top of the window/timestamp bounds, seconds.
const SLACK_S: f64 = 5.0;

const VERSIONS: [&str; 2] = ["v1beta1", "v1"];

fn cluster_spec() -> ClusterSpec {
    ClusterSpec::new()
        .node(
            node("node-a")
                .label("role", "worker")
                .label("zone", "z1")
                .system_usage(333, 700 << 20),
        )
        .node(
            node("node-b")
                .label("role", "worker")
                .swap(8 << 30)
                .system_usage(1500, (3 << 30) + 12345),
        )
        .node(node("node-c"))
        .pod(
            pod("default", "web-1")
                .on("node-a")
                .label("app", "web")
                .label("tier", "front")
                .container(
                    container("zeta")
                        .cpu_millicores(250)
                        .memory_bytes(128 << 20),
                )
                .container(container("alpha").cpu_millicores(3).memory_bytes(1_234_567)),
        )
        .pod(
            pod("default", "batch")
                .on("node-b")
                .container(
                    container("worker")
                        .cpu_millicores(1777)
                        .memory_bytes(2 << 30)
                        .swap_bytes(300 << 20),
                )
                .container(
                    container("logger")
                        .cpu_millicores(12)
                        .memory_bytes(5_000_000),
                ),
        )
        .pod(
            pod("kube-system", "dns").on("node-c").container(
                container("coredns")
                    .cpu_millicores(7)
                    .memory_bytes(30 << 20),
            ),
        )
        .pod(
            pod("apps", "api")
                .on("node-a")
                .label("app", "api")
                .container(
                    container("server")
                        .cpu_millicores(600)
                        .memory_bytes(512 << 20),
                ),
        )
}

async fn start() -> (Cluster, ServerProcess) {
    let cluster = Cluster::start(cluster_spec()).await.unwrap();
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    (cluster, server)
}

async fn get_json(cluster: &Cluster, path: &str) -> Option<Value> {
    let (status, body) = cluster.api_get(path, "application/json").await.ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

/// Waits until both lists of `version` hold every node and every pod of the model, and returns them.
async fn full_lists(cluster: &Cluster, server: &ServerProcess, version: &str) -> (Value, Value) {
    let nodes = cluster.model().nodes().len();
    let pods = cluster.model().pods().len();
    let result = eventually(
        &format!("{version} lists with every node and pod"),
        METRICS_WITHIN,
        || async {
            let n = get_json(cluster, &format!("/apis/metrics.k8s.io/{version}/nodes")).await?;
            let p = get_json(cluster, &format!("/apis/metrics.k8s.io/{version}/pods")).await?;
            (n["items"].as_array()?.len() == nodes && p["items"].as_array()?.len() == pods)
                .then_some((n, p))
        },
    )
    .await;
    result.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()))
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the usage object `usage` against the model figures.
fn assert_usage(what: &str, usage: &Value, cpu_millicores: u64, memory: u64, swap: Option<u64>) {
    let cpu = cpu_nanocores(
        usage["cpu"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: cpu")),
    );
    let want = cpu_millicores as f64 * 1e6;
    // 1 % of the rate, plus a nanocore of rounding.
    assert!(
        (cpu - want).abs() <= want * 0.01 + 1.0,
        "{what}: cpu {cpu}n, want {want}n ± 1 %"
    );
    let got = bytes(
        usage["memory"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: memory")),
    );
    assert_eq!(got, memory, "{what}: memory bytes");
    match swap {
        Some(want) => {
            let got = usage["swap"]
                .as_str()
                .map(bytes)
                .unwrap_or_else(|| panic!("{what}: swap missing from {usage}"));
            assert_eq!(got, want, "{what}: swap bytes");
        }
        None => assert!(
            usage.get("swap").is_none(),
            "{what}: unexpected swap in {usage}"
        ),
    }
}

/// Asserts `timestamp` and `window` of one metrics object.
fn assert_times(what: &str, item: &Value, read_at: jiff::Timestamp) {
    let window = go_duration(
        item["window"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: window")),
    );
    assert!(
        window > 0.0 && window <= 2.0 * RESOLUTION_S + SLACK_S,
        "{what}: window {window}s"
    );
    let timestamp: jiff::Timestamp = item["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: timestamp"))
        .parse()
        .unwrap_or_else(|e| panic!("{what}: timestamp {}: {e}", item["timestamp"]));
    let age = (read_at - timestamp).total(jiff::Unit::Second).unwrap();
    assert!(
        (-1.0..=2.0 * RESOLUTION_S + TIMEOUT_S + SLACK_S).contains(&age),
        "{what}: timestamp {timestamp} is {age}s before the read at {read_at}"
    );
}

fn assert_sorted<T: Ord + std::fmt::Debug>(what: &str, keys: &[T]) {
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "{what} not sorted: {keys:?}"
    );
}

fn assert_nodes(cluster: &Cluster, version: &str, list: &Value, read_at: jiff::Timestamp) {
    let model = cluster.model();
    assert_eq!(list["apiVersion"], format!("metrics.k8s.io/{version}"));
    assert_eq!(list["kind"], "NodeMetricsList");
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_sorted("node items", &names);
    for item in items {
        let name = item["metadata"]["name"].as_str().unwrap();
        let what = format!("{version} node {name}");
        let node = model
            .node(name)
            .unwrap_or_else(|| panic!("{what}: not in the model"));
        let want = model.expected_node_usage(name).unwrap();
        assert!(
            item.get("apiVersion")
                .is_none_or(|v| *v == list["apiVersion"])
        );
        assert!(item.get("kind").is_none_or(|k| k == "NodeMetrics"));
        assert_eq!(labels(item), node.spec.labels, "{what}: labels");
        let swap = node.spec.swap_capacity_bytes.map(|_| want.swap_bytes);
        assert_usage(
            &what,
            &item["usage"],
            want.cpu_millicores,
            want.memory_bytes,
            swap,
        );
        assert_times(&what, item, read_at);
    }
}

fn assert_pod(cluster: &Cluster, what: &str, item: &Value, read_at: jiff::Timestamp) {
    let model = cluster.model();
    let ns = item["metadata"]["namespace"].as_str().unwrap();
    let name = item["metadata"]["name"].as_str().unwrap();
    let pod = model
        .pod(ns, name)
        .unwrap_or_else(|| panic!("{what}: {ns}/{name} not in the model"));
    let has_swap = model
        .node(&pod.spec.node)
        .unwrap()
        .spec
        .swap_capacity_bytes
        .is_some();
    assert_eq!(labels(item), pod.spec.labels, "{what}: labels");
    assert_times(what, item, read_at);
    let containers = item["containers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_sorted(&format!("{what}: containers"), &names);
    assert_eq!(
        containers.len(),
        pod.spec.containers.len(),
        "{what}: containers"
    );
    for c in containers {
        let cname = c["name"].as_str().unwrap();
        let spec = pod
            .spec
            .containers
            .iter()
            .find(|s| s.name == cname)
            .unwrap_or_else(|| panic!("{what}: unknown container {cname}"));
        assert_usage(
            &format!("{what} container {cname}"),
            &c["usage"],
            spec.cpu_millicores,
            spec.working_set_bytes,
            has_swap.then_some(spec.swap_bytes),
        );
    }
}

fn assert_pods(cluster: &Cluster, version: &str, list: &Value, read_at: jiff::Timestamp) {
    assert_eq!(list["apiVersion"], format!("metrics.k8s.io/{version}"));
    assert_eq!(list["kind"], "PodMetricsList");
    let items = list["items"].as_array().unwrap();
    let keys: Vec<(&str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_sorted("pod items", &keys);
    for item in items {
        let what = format!(
            "{version} pod {}/{}",
            item["metadata"]["namespace"].as_str().unwrap(),
            item["metadata"]["name"].as_str().unwrap()
        );
        assert!(item.get("kind").is_none_or(|k| k == "PodMetrics"));
        assert_pod(cluster, &what, item, read_at);
    }
}

#[tokio::test]
async fn every_served_value_matches_the_model_in_both_api_versions() {
    let (cluster, server) = start().await;
    for version in VERSIONS {
        let (nodes, pods) = full_lists(&cluster, &server, version).await;
        let read_at = jiff::Timestamp::now();
        assert_nodes(&cluster, version, &nodes, read_at);
        assert_pods(&cluster, version, &pods, read_at);

        // Single objects: the same checks, plus apiVersion and kind on the object itself.
        for node in cluster.model().nodes() {
            let name = &node.spec.name;
            let path = format!("/apis/metrics.k8s.io/{version}/nodes/{name}");
            let item = get_json(&cluster, &path)
                .await
                .unwrap_or_else(|| panic!("GET {path}"));
            assert_eq!(
                item["apiVersion"],
                format!("metrics.k8s.io/{version}"),
                "{path}"
            );
            assert_eq!(item["kind"], "NodeMetrics", "{path}");
            let list = serde_json::json!({
                "apiVersion": format!("metrics.k8s.io/{version}"),
                "kind": "NodeMetricsList",
                "items": [item],
            });
            assert_nodes(&cluster, version, &list, jiff::Timestamp::now());
        }
        for pod in cluster.model().pods() {
            let (ns, name) = (&pod.spec.namespace, &pod.spec.name);
            let path = format!("/apis/metrics.k8s.io/{version}/namespaces/{ns}/pods/{name}");
            let item = get_json(&cluster, &path)
                .await
                .unwrap_or_else(|| panic!("GET {path}"));
            assert_eq!(
                item["apiVersion"],
                format!("metrics.k8s.io/{version}"),
                "{path}"
            );
            assert_eq!(item["kind"], "PodMetrics", "{path}");
            assert_pod(&cluster, &path, &item, jiff::Timestamp::now());
        }

        // A namespaced list holds exactly that namespace's pods, sorted.
        let path = format!("/apis/metrics.k8s.io/{version}/namespaces/default/pods");
        let list = get_json(&cluster, &path).await.unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["batch", "web-1"], "{path}");
        assert_pods(&cluster, version, &list, jiff::Timestamp::now());
    }
}
