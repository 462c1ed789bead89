//! End-to-end tests of the real resource-metrics-server binary: the harness starts a fake cluster, spawns the
//! binary (`$RMS_BIN` or the workspace's `target/debug/resource-metrics-server`; build it first), and real kubectl
//! talks to it through the fake aggregator. Values are checked against the model's known rates.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::control_plane::{Rule, Subject};
use e2e::harness::{Cluster, KubectlOutput, ServerProcess, eventually, kubectl_binary};
use e2e::kubelet::Fault;
use e2e::model::{ClusterSpec, ExpectedUsage, container, node, pod};

/// Startup budget of the server (TLS material, first watches).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Budget for the first metrics: two scrapes at 10 s resolution, plus slack for a loaded machine.
const METRICS_WITHIN: Duration = Duration::from_secs(90);

fn cluster_spec() -> ClusterSpec {
    ClusterSpec::new()
        .node(node("node-a").label("role", "worker"))
        .node(node("node-b").label("role", "worker"))
        .node(node("node-c"))
        .pod(
            pod("default", "web-1")
                .on("node-a")
                .label("app", "web")
                .container(container("app").cpu_millicores(250).memory_bytes(128 << 20)),
        )
        .pod(
            pod("default", "web-2")
                .on("node-b")
                .label("app", "web")
                .container(container("app").cpu_millicores(120).memory_bytes(96 << 20))
                .container(
                    container("sidecar")
                        .cpu_millicores(15)
                        .memory_bytes(20 << 20),
                ),
        )
        .pod(
            pod("kube-system", "dns").on("node-c").container(
                container("coredns")
                    .cpu_millicores(7)
                    .memory_bytes(30 << 20),
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

/// Runs kubectl until it succeeds with every row filled in (nodes get metrics one by one, each after its second
/// scrape, so early answers have `<unknown>` rows or miss pods).
async fn top_until_ok(cluster: &Cluster, server: &ServerProcess, args: &[&str]) -> KubectlOutput {
    top_until(cluster, server, args, |out| {
        !out.stdout.contains("<unknown>")
    })
    .await
}

async fn top_until(
    cluster: &Cluster,
    server: &ServerProcess,
    args: &[&str],
    done: impl Fn(&KubectlOutput) -> bool,
) -> KubectlOutput {
    let kubectl = kubectl_binary(Some(33)).unwrap();
    let result = eventually(
        &format!("kubectl {}", args.join(" ")),
        METRICS_WITHIN,
        || async {
            let out = cluster.kubectl(&kubectl, args).await.ok()?;
            (out.code == 0 && done(&out)).then_some(out)
        },
    )
    .await;
    result.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()))
}

/// Waits until the server has metrics for every node and every Running pod of the model.
async fn wait_all_metrics(cluster: &Cluster, server: &ServerProcess) {
    let pods = cluster.model().pods().len();
    top_until(cluster, server, &["top", "pod", "-A"], |out| {
        out.stdout.lines().count() == pods + 1
    })
    .await;
    top_until_ok(cluster, server, &["top", "node"]).await;
}

/// Rows of `kubectl top` output by first column (or first two with `-A`).
fn rows(out: &str, key_columns: usize) -> Vec<(String, Vec<String>)> {
    out.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (
                cells[..key_columns].join("/"),
                cells[key_columns..].to_vec(),
            )
        })
        .collect()
}

fn millicores(cell: &str) -> Option<u64> {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => cell.parse::<u64>().ok().map(|c| c * 1000),
    }
}

fn assert_usage(name: &str, cpu_cell: &str, memory_cell: &str, want: ExpectedUsage) {
    let cpu = millicores(cpu_cell).unwrap_or_else(|| panic!("{name}: cpu cell {cpu_cell:?}"));
    // The server rounds up to whole millicores and the window is measured, so allow 1m + 1 %.
    let slack = 1 + want.cpu_millicores / 100;
    assert!(
        cpu.abs_diff(want.cpu_millicores) <= slack,
        "{name}: cpu {cpu}m, want {}m",
        want.cpu_millicores
    );
    assert_eq!(
        memory_cell,
        format!("{}Mi", want.memory_bytes >> 20),
        "{name}: memory"
    );
}

#[tokio::test]
async fn kubectl_top_node_reports_the_model_rates_through_the_aggregator() {
    let (cluster, server) = start().await;
    let out = top_until_ok(&cluster, &server, &["top", "node"]).await;
    let rows = rows(&out.stdout, 1);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    for (name, cells) in &rows {
        let want = cluster.model().expected_node_usage(name).unwrap();
        assert_usage(name, &cells[0], &cells[2], want);
    }
    // The kubelets saw the server's bearer token.
    assert_eq!(
        cluster.kubelets().last_authorization("node-a"),
        Some(format!("Bearer {}", cluster.server_token()))
    );
}

#[tokio::test]
async fn kubectl_top_pod_sums_containers_per_pod() {
    let (cluster, server) = start().await;
    wait_all_metrics(&cluster, &server).await;
    let out = top_until_ok(&cluster, &server, &["top", "pod", "-A"]).await;
    let rows = rows(&out.stdout, 2);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    for (key, cells) in &rows {
        let (ns, name) = key.split_once('/').unwrap();
        let want = cluster.model().expected_pod_usage(ns, name).unwrap();
        assert_usage(key, &cells[0], &cells[1], want);
    }
    let containers =
        top_until_ok(&cluster, &server, &["top", "pod", "web-2", "--containers"]).await;
    assert!(
        containers.stdout.contains("sidecar"),
        "{}",
        containers.stdout
    );
}

#[tokio::test]
async fn an_unreachable_kubelet_leaves_its_node_unknown() {
    let cluster = Cluster::start(cluster_spec()).await.unwrap();
    cluster.kubelets().set_fault("node-c", Fault::Refuse);
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    let out = top_until(&cluster, &server, &["top", "node"], |out| {
        out.stdout
            .lines()
            .any(|l| l.starts_with("node-a") && !l.contains("<unknown>"))
    })
    .await;
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("node-c"))
        .unwrap();
    assert!(row.contains("<unknown>"), "{}", out.stdout);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("node-a"))
        .unwrap();
    assert!(!row.contains("<unknown>"), "{}", out.stdout);
}

#[tokio::test]
async fn users_without_access_are_forbidden_until_a_rule_allows_them() {
    let (cluster, server) = start().await;
    top_until_ok(&cluster, &server, &["top", "node"]).await;
    let viewer = cluster.add_user("viewer", &["viewers"]).unwrap();
    let kubectl = kubectl_binary(Some(33)).unwrap();
    let denied = cluster
        .kubectl_as(&kubectl, &viewer, &["top", "pod", "-A"])
        .await
        .unwrap();
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains("Forbidden"), "{denied:?}");

    let mut rules = Cluster::default_rules();
    rules.push(Rule::allow(
        Subject::Group("viewers".into()),
        &["get", "list"],
        &["metrics.k8s.io/pods"],
    ));
    cluster.control_plane().set_rules(rules);
    let allowed = eventually(
        "the viewer to be allowed (SAR cache expiry)",
        Duration::from_secs(30),
        || async {
            let out = cluster
                .kubectl_as(&kubectl, &viewer, &["top", "pod", "-A"])
                .await
                .ok()?;
            (out.code == 0).then_some(out)
        },
    )
    .await
    .unwrap();
    assert!(allowed.stdout.contains("web-1"), "{allowed:?}");
    assert!(cluster.control_plane().access_reviews() > 0);
}

#[tokio::test]
async fn raw_and_get_requests_see_both_metrics_versions() {
    let (cluster, server) = start().await;
    wait_all_metrics(&cluster, &server).await;
    let kubectl = kubectl_binary(Some(33)).unwrap();
    for version in ["v1beta1", "v1"] {
        let out = cluster
            .kubectl(
                &kubectl,
                &[
                    "get",
                    "--raw",
                    &format!("/apis/metrics.k8s.io/{version}/nodes"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(list["kind"], "NodeMetricsList");
        assert_eq!(list["apiVersion"], format!("metrics.k8s.io/{version}"));
        assert_eq!(list["items"].as_array().unwrap().len(), 3);
    }
    let get = cluster
        .kubectl(&kubectl, &["get", "nodemetrics"])
        .await
        .unwrap();
    assert_eq!(get.code, 0, "{get:?}");
    assert!(get.stdout.contains("node-b"), "{get:?}");
}

#[tokio::test]
async fn the_python_client_reads_metrics_and_gets_404_for_unknown_nodes() {
    let (cluster, server) = start().await;
    wait_all_metrics(&cluster, &server).await;
    let node = cluster
        .python_metrics(&["custom-node", "node-a"])
        .await
        .unwrap();
    assert_eq!(node["status"], 200, "{node}");
    assert_eq!(node["items"][0]["metadata"]["name"], "node-a", "{node}");
    let missing = cluster
        .python_metrics(&["custom-node", "node-z"])
        .await
        .unwrap();
    assert_eq!(missing["status"], 404, "{missing}");
    let pods = cluster
        .python_metrics(&["custom-pods", "default", "app=web"])
        .await
        .unwrap();
    assert_eq!(pods["status"], 200, "{pods}");
    let mut names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["web-1", "web-2"]);
}

#[tokio::test]
async fn an_hpa_like_consumer_scales_from_the_served_pod_metrics() {
    use e2e::hpa::{DEFAULT_TOLERANCE, Target, desired_replicas, pod_metrics, pods_from_model};
    let mut spec = cluster_spec();
    for (i, rate) in [300, 300, 100, 100].into_iter().enumerate() {
        spec = spec.pod(
            pod("default", format!("hpa-{i}"))
                .on("node-a")
                .label("app", "hpa")
                .container(
                    container("app")
                        .cpu_millicores(rate)
                        .requests(200, 64 << 20),
                ),
        );
    }
    let cluster = Cluster::start(spec).await.unwrap();
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();

    // The HPA's request: list only, canonical selector, protobuf first.
    let path = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dhpa";
    let body = eventually("pod metrics for the HPA", METRICS_WITHIN, || async {
        let (status, body) = cluster
            .api_get(path, "application/vnd.kubernetes.protobuf, */*")
            .await
            .ok()?;
        (status == 200 && pod_metrics(body.as_bytes()).is_ok_and(|m| m.len() == 4)).then_some(body)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let metrics = pod_metrics(body.as_bytes()).unwrap();
    let pods = pods_from_model(cluster.model(), "default", |l| {
        l.get("app").map(String::as_str) == Some("hpa")
    });
    let target = Target {
        utilization_percent: 50,
        tolerance: DEFAULT_TOLERANCE,
    };
    // 800m used of 800m requested = 100 % against a 50 % target: twice the replicas.
    let now = e2e::model::now_ms();
    assert_eq!(
        desired_replicas(4, &pods, &metrics, target, now),
        Ok(8),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn faulty_kubelets_stay_unknown_without_holding_back_healthy_ones() {
    let faults = [
        ("node-hang", Fault::Hang),
        ("node-huge", Fault::Huge(70 << 20)),
        ("node-garbage", Fault::Garbage),
        ("node-scrape-error", Fault::ScrapeError),
        ("node-500", Fault::Status(500)),
        ("node-reset", Fault::Reset),
        ("node-stuck", Fault::HangBeforeTls),
        ("node-slow", Fault::Slow(Duration::from_secs(8))),
    ];
    let mut spec = ClusterSpec::new().node(node("node-ok"));
    spec = spec.pod(
        pod("default", "ok-1")
            .on("node-ok")
            .container(container("app").cpu_millicores(80)),
    );
    for (name, _) in &faults {
        spec = spec.node(node(*name));
    }
    let cluster = Cluster::start(spec).await.unwrap();
    for (name, fault) in &faults {
        cluster.kubelets().set_fault(name, fault.clone());
    }
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    let out = top_until(&cluster, &server, &["top", "node"], |out| {
        out.stdout
            .lines()
            .any(|l| l.starts_with("node-ok") && !l.contains("<unknown>"))
    })
    .await;
    for (name, _) in &faults {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{}", out.stdout));
        assert!(
            row.contains("<unknown>"),
            "{name} must have no metrics:\n{}",
            out.stdout
        );
    }

    // Once the kubelets heal, every node gets metrics.
    for (name, _) in &faults {
        cluster.kubelets().set_fault(name, Fault::None);
    }
    top_until_ok(&cluster, &server, &["top", "node"]).await;
}

#[tokio::test]
async fn pods_added_deleted_and_restarted_show_up_in_later_answers() {
    let (cluster, server) = start().await;
    wait_all_metrics(&cluster, &server).await;
    let model = cluster.model();
    model
        .add_pod(
            pod("default", "late")
                .on("node-a")
                .label("app", "web")
                .container(container("app").cpu_millicores(33)),
        )
        .unwrap();
    model.delete_pod("kube-system", "dns").unwrap();
    model.restart_container("default", "web-1", "app").unwrap();
    let out = top_until(&cluster, &server, &["top", "pod", "-A"], |out| {
        out.stdout.contains(" late ")
            && !out.stdout.contains(" dns ")
            && out.stdout.contains(" web-1 ")
    })
    .await;
    let late = out.stdout.lines().find(|l| l.contains(" late ")).unwrap();
    assert!(
        late.contains("33m") || late.contains("32m") || late.contains("34m"),
        "{}",
        out.stdout
    );

    let selected = top_until_ok(&cluster, &server, &["top", "pod", "-l", "app=web"]).await;
    let mut names: Vec<&str> = selected
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["late", "web-1", "web-2"], "{}", selected.stdout);
}

#[tokio::test]
async fn every_kubectl_version_reads_the_real_server_and_1_37_shows_swap() {
    let spec = cluster_spec().node(node("node-swap").swap(8 << 30)).pod(
        pod("default", "swappy")
            .on("node-swap")
            .container(container("app").cpu_millicores(20).swap_bytes(64 << 20)),
    );
    let cluster = Cluster::start(spec).await.unwrap();
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    wait_all_metrics(&cluster, &server).await;
    for minor in [27, 29, 30, 31, 32] {
        let kubectl = kubectl_binary(Some(minor)).unwrap();
        let out = cluster.kubectl(&kubectl, &["top", "node"]).await.unwrap();
        assert_eq!(out.code, 0, "kubectl 1.{minor}: {out:?}");
        assert!(
            !out.stdout.contains("<unknown>"),
            "kubectl 1.{minor}: {}",
            out.stdout
        );
    }
    let kubectl_137 = e2e::harness::venv_binary("kubectl").unwrap();
    let out = cluster
        .kubectl(&kubectl_137, &["top", "node", "--show-swap"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("SWAP"), "{}", out.stdout);
    assert!(
        cluster.control_plane().requests().iter().any(|r| r
            .path_and_query
            .starts_with("/apis/metrics.k8s.io/v1/nodes")),
        "kubectl 1.37 uses metrics.k8s.io/v1"
    );
    let pods = cluster
        .kubectl(&kubectl_137, &["top", "pod", "swappy", "--show-swap"])
        .await
        .unwrap();
    assert_eq!(pods.code, 0, "{pods:?}");
    assert!(pods.stdout.contains("64Mi"), "{}", pods.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_node_cluster_gets_metrics_for_every_node_and_pod() {
    let nodes = 1_000;
    let cluster = Cluster::start(ClusterSpec::uniform(nodes, 10))
        .await
        .unwrap();
    let server = cluster
        .start_server(&[], Duration::from_secs(120))
        .await
        .unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    let count = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["items"].as_array().map(Vec::len))
    };
    let all_nodes = eventually(
        "metrics for every node",
        Duration::from_secs(180),
        || async {
            let (status, body) = cluster
                .api_get("/apis/metrics.k8s.io/v1beta1/nodes", "application/json")
                .await
                .ok()?;
            (status == 200 && count(&body) == Some(nodes as usize)).then_some(())
        },
    )
    .await;
    all_nodes.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let all_pods = eventually("metrics for every pod", Duration::from_secs(60), || async {
        let (status, body) = cluster
            .api_get("/apis/metrics.k8s.io/v1beta1/pods", "application/json")
            .await
            .ok()?;
        (status == 200 && count(&body) == Some(nodes as usize * 10)).then_some(())
    })
    .await;
    all_pods.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    // Every kubelet was scraped at least twice (a rate needs two points).
    assert!(cluster.kubelets().nodes().iter().all(|k| k.requests() >= 2));
}
