//! kubectl version matrix against the real binary: kubectl 1.27, 1.30, 1.33 (`kubectl.1.NN`) and 1.37 (the venv)
//! run `top node`/`top pod` in their common forms, `get nodemetrics`/`get podmetrics` (server-side Table) and
//! `get --raw` on both API versions through the fake aggregator, and every printed number is compared with the
//! model. A second cluster covers what users meet when things change: unknown pods, a dead kubelet, a new pod, a
//! container restart, one failed scrape. Build the binary first (`$RMS_BIN`); 1.37 needs `$E2E_VENV`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use e2e::harness::{
    Cluster, KubectlOutput, ServerProcess, eventually, kubectl_binary, venv_binary,
};
use e2e::kubelet::Fault;
use e2e::model::{ClusterSpec, ExpectedUsage, container, node, pod};
use serde_json::Value;
use support::{bytes, cpu_nanocores, mebibytes, millicores};

mod support;

/// Startup budget of the server.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Budget for the first complete metrics (two scrapes at 10 s plus slack for a loaded machine).
const METRICS_WITHIN: Duration = Duration::from_secs(90);

/// `--metric-resolution` the harness starts the server with.
const RESOLUTION: Duration = Duration::from_secs(10);

/// kubectl minors under test; 37 comes from the venv.
const VERSIONS: [u32; 4] = [27, 30, 33, 37];

/// Namespace of the selector and sorting cases.
const NS: &str = "shop";

fn kubectl(minor: u32) -> PathBuf {
    if minor == 37 {
        venv_binary("kubectl").unwrap()
    } else {
        kubectl_binary(Some(minor)).unwrap()
    }
}

/// node-d's kubelet refuses connections from the start: it never gets metrics.
fn cluster_spec() -> ClusterSpec {
    ClusterSpec::new()
        .node(node("node-a").label("role", "worker").swap(4 << 30))
        .node(node("node-b").label("role", "worker"))
        .node(node("node-c"))
        .node(node("node-d").label("role", "edge"))
        .pod(
            pod(NS, "cart")
                .on("node-a")
                .label("a", "x")
                .container(
                    container("app")
                        .cpu_millicores(420)
                        .memory_bytes(200 << 20)
                        .swap_bytes(50 << 20),
                )
                .container(container("proxy").cpu_millicores(31).memory_bytes(40 << 20)),
        )
        .pod(
            pod(NS, "checkout").on("node-b").label("a", "y").container(
                container("app")
                    .cpu_millicores(1250)
                    .memory_bytes(700 << 20),
            ),
        )
        .pod(
            pod(NS, "search")
                .on("node-b")
                .label("a", "y")
                .label("b", "1")
                .container(container("app").cpu_millicores(75).memory_bytes(90 << 20)),
        )
        .pod(
            pod(NS, "ledger")
                .on("node-c")
                .label("a", "z")
                .container(container("app").cpu_millicores(5).memory_bytes(33 << 20)),
        )
        .pod(
            pod("kube-system", "dns").on("node-c").container(
                container("coredns")
                    .cpu_millicores(7)
                    .memory_bytes(30 << 20),
            ),
        )
}

async fn start(spec: ClusterSpec, down: &[&str]) -> (Cluster, ServerProcess) {
    let cluster = Cluster::start(spec).await.unwrap();
    for node in down {
        cluster.kubelets().set_fault(node, Fault::Refuse);
    }
    let server = cluster.start_server(&[], READY_WITHIN).await.unwrap();
    cluster
        .wait_metrics_available(Duration::from_secs(30))
        .await
        .unwrap();
    (cluster, server)
}

/// Runs kubectl `minor` until `done` accepts a successful answer.
async fn kubectl_until(
    cluster: &Cluster,
    server: &ServerProcess,
    minor: u32,
    args: &[&str],
    done: impl Fn(&KubectlOutput) -> bool,
) -> KubectlOutput {
    let binary = kubectl(minor);
    let result = eventually(
        &format!("kubectl 1.{minor} {}", args.join(" ")),
        METRICS_WITHIN,
        || async {
            let out = cluster.kubectl(&binary, args).await.ok()?;
            (out.code == 0 && done(&out)).then_some(out)
        },
    )
    .await;
    result.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()))
}

/// Runs kubectl `minor` once and requires success.
async fn run(cluster: &Cluster, minor: u32, args: &[&str]) -> KubectlOutput {
    let out = cluster.kubectl(&kubectl(minor), args).await.unwrap();
    assert_eq!(
        out.code,
        0,
        "kubectl 1.{minor} {}: {}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out
}

/// Header cells and data rows of a kubectl table.
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let rows = lines
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// Asserts a printed CPU cell (millicores, rounded up) against the model: ±2 %, at least ±1m.
fn assert_cpu(what: &str, cell: &str, want_millicores: u64) {
    let got = millicores(cell).unwrap_or_else(|| panic!("{what}: cpu cell {cell:?}"));
    let slack = (want_millicores * 2 / 100).max(1);
    assert!(
        got.abs_diff(want_millicores) <= slack,
        "{what}: cpu {got}m, want {want_millicores}m"
    );
}

/// Asserts a printed memory cell (`NNNMi`) against the model: ±1 Mi.
fn assert_mib(what: &str, cell: &str, want_bytes: u64) {
    let got = mebibytes(cell).unwrap_or_else(|| panic!("{what}: memory cell {cell:?}"));
    assert!(
        got.abs_diff(want_bytes >> 20) <= 1,
        "{what}: memory {got}Mi, want {}Mi",
        want_bytes >> 20
    );
}

/// Asserts a printed percentage cell against `usage / allocatable` (±1 point).
fn assert_percent(what: &str, cell: &str, usage: u64, allocatable: u64) {
    let got: u64 = cell
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what}: percent cell {cell:?}"));
    let want = usage * 100 / allocatable;
    assert!(got.abs_diff(want) <= 1, "{what}: {got}%, want {want}%");
}

fn node_usage(cluster: &Cluster, name: &str) -> ExpectedUsage {
    cluster.model().expected_node_usage(name).unwrap()
}

fn pod_usage(cluster: &Cluster, ns: &str, name: &str) -> ExpectedUsage {
    cluster.model().expected_pod_usage(ns, name).unwrap()
}

/// Checks `top node` rows: `names` with numbers, `unknown` with `<unknown>` cells, nothing else.
fn assert_top_nodes(cluster: &Cluster, minor: u32, out: &str, names: &[&str], unknown: &[&str]) {
    let what = format!("1.{minor} top node {names:?}");
    let (header, rows) = table(out);
    // 1.27 and 1.30 still print the old `CPU%` headers (observed; clients.md says 1.27+ print `CPU(%)`).
    let want_header = if minor < 33 {
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    } else {
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    };
    assert_eq!(header[..5], want_header, "{what}:\n{out}");
    let mut seen: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    seen.sort_unstable();
    let mut want: Vec<&str> = names.iter().chain(unknown).copied().collect();
    want.sort_unstable();
    assert_eq!(seen, want, "{what}:\n{out}");
    for row in &rows {
        let name = row[0].as_str();
        let what = format!("{what} {name}");
        if unknown.contains(&name) {
            assert!(
                row[1..5].iter().all(|c| c == "<unknown>"),
                "{what}: {row:?}"
            );
            continue;
        }
        let want = node_usage(cluster, name);
        let spec = cluster.model().node(name).unwrap().spec.clone();
        assert_cpu(&what, &row[1], want.cpu_millicores);
        assert_percent(
            &what,
            &row[2],
            want.cpu_millicores,
            spec.cpu_allocatable_millicores,
        );
        assert_mib(&what, &row[3], want.memory_bytes);
        assert_percent(
            &what,
            &row[4],
            want.memory_bytes,
            spec.memory_allocatable_bytes,
        );
    }
}

/// The servable pods of `ns` (or all namespaces) as `(namespace, name)`.
fn model_pods(cluster: &Cluster, ns: Option<&str>) -> Vec<(String, String)> {
    let mut pods: Vec<(String, String)> = cluster
        .model()
        .pods()
        .iter()
        .filter(|p| ns.is_none_or(|ns| p.spec.namespace == ns))
        .map(|p| (p.spec.namespace.clone(), p.spec.name.clone()))
        .collect();
    pods.sort();
    pods
}

/// Waits until every node but node-d and every pod has metrics (each node after its own scrapes).
async fn wait_all_metrics(cluster: &Cluster, server: &ServerProcess) {
    let pods = model_pods(cluster, None).len();
    kubectl_until(cluster, server, 33, &["top", "pod", "-A"], |out| {
        table(&out.stdout).1.len() == pods
    })
    .await;
    kubectl_until(cluster, server, 33, &["top", "node"], |out| {
        table(&out.stdout)
            .1
            .iter()
            .filter(|r| r[1] == "<unknown>")
            .count()
            == 1
    })
    .await;
}

async fn top_nodes(cluster: &Cluster, minor: u32) {
    let out = run(cluster, minor, &["top", "node"]).await;
    assert_top_nodes(
        cluster,
        minor,
        &out.stdout,
        &["node-a", "node-b", "node-c"],
        &["node-d"],
    );

    let out = run(cluster, minor, &["top", "node", "-l", "role=worker"]).await;
    assert_top_nodes(cluster, minor, &out.stdout, &["node-a", "node-b"], &[]);

    if minor >= 37 {
        let what = format!("1.{minor} top node --show-swap");
        let out = run(cluster, minor, &["top", "node", "--show-swap"]).await;
        let (header, rows) = table(&out.stdout);
        assert_eq!(
            header[5..],
            ["SWAP(bytes)", "SWAP(%)"],
            "{what}:\n{}",
            out.stdout
        );
        for row in &rows {
            let name = row[0].as_str();
            let spec = cluster.model().node(name).unwrap().spec.clone();
            match spec.swap_capacity_bytes {
                Some(capacity) if name != "node-d" => {
                    let want = node_usage(cluster, name).swap_bytes;
                    assert_mib(&format!("{what} {name} swap"), &row[5], want);
                    assert_percent(&format!("{what} {name} swap"), &row[6], want, capacity);
                }
                _ => assert_eq!(row[5..], ["<unknown>", "<unknown>"], "{what} {name}"),
            }
        }
    }

    // get --raw, both versions: node-d has no metrics and is simply absent.
    for version in ["v1", "v1beta1"] {
        let path = format!("/apis/metrics.k8s.io/{version}/nodes");
        let out = run(cluster, minor, &["get", "--raw", &path]).await;
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            list["apiVersion"],
            format!("metrics.k8s.io/{version}"),
            "{path}"
        );
        assert_eq!(list["kind"], "NodeMetricsList");
        let items = list["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["node-a", "node-b", "node-c"], "1.{minor} {path}");
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap();
            let want = node_usage(cluster, name);
            let what = format!("1.{minor} {path} {name}");
            let cpu = cpu_nanocores(item["usage"]["cpu"].as_str().unwrap());
            let slack = (want.cpu_millicores as f64 * 1e6 * 0.02).max(1e6);
            assert!(
                (cpu - want.cpu_millicores as f64 * 1e6).abs() <= slack,
                "{what}: cpu {cpu}n"
            );
            let memory = bytes(item["usage"]["memory"].as_str().unwrap());
            assert_eq!(memory, want.memory_bytes, "{what}: memory");
        }
    }

    // get nodemetrics: the server's Table, printed by kubectl.
    let what = format!("1.{minor} get nodemetrics");
    let out = run(cluster, minor, &["get", "nodemetrics"]).await;
    let (header, rows) = table(&out.stdout);
    // node-a has swap, so the Table has a swap column.
    assert_eq!(
        header,
        ["NAME", "CPU", "MEMORY", "SWAP", "WINDOW"],
        "{what}:\n{}",
        out.stdout
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"], "{what}");
    for row in &rows {
        let name = row[0].as_str();
        let want = node_usage(cluster, name);
        assert_table_usage(&format!("{what} {name}"), &row[1..], want);
    }
}

/// Checks Table cells `cpu memory swap window` against the model.
fn assert_table_usage(what: &str, cells: &[String], want: ExpectedUsage) {
    let cpu = cpu_nanocores(&cells[0]);
    let target = want.cpu_millicores as f64 * 1e6;
    assert!(
        (cpu - target).abs() <= (target * 0.02).max(1e6),
        "{what}: cpu {} want {}m",
        cells[0],
        want.cpu_millicores
    );
    assert_eq!(
        bytes(&cells[1]),
        want.memory_bytes,
        "{what}: memory {}",
        cells[1]
    );
    if cells.len() == 4 && want.swap_bytes > 0 {
        assert_eq!(
            bytes(&cells[2]),
            want.swap_bytes,
            "{what}: swap {}",
            cells[2]
        );
    }
    let window = support::go_duration(cells.last().unwrap());
    assert!(window > 0.0, "{what}: window {window}");
}

async fn top_pods(cluster: &Cluster, minor: u32) {
    // -A: every pod, both key columns.
    let what = format!("1.{minor} top pod -A");
    let out = run(cluster, minor, &["top", "pod", "-A"]).await;
    let (header, rows) = table(&out.stdout);
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{what}"
    );
    let keys: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, model_pods(cluster, None), "{what}:\n{}", out.stdout);
    for row in &rows {
        let want = pod_usage(cluster, &row[0], &row[1]);
        let what = format!("{what} {}/{}", row[0], row[1]);
        assert_cpu(&what, &row[2], want.cpu_millicores);
        assert_mib(&what, &row[3], want.memory_bytes);
    }

    // Set-based selector with --containers: cart (2 containers) and checkout only.
    let what = format!("1.{minor} top pod -l 'a in (x,y),!b' --containers");
    let out = run(
        cluster,
        minor,
        &[
            "top",
            "pod",
            "-n",
            NS,
            "-l",
            "a in (x,y),!b",
            "--containers",
        ],
    )
    .await;
    let (header, rows) = table(&out.stdout);
    assert_eq!(
        header,
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{what}"
    );
    let mut keys: Vec<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    keys.sort();
    let want_keys: Vec<(String, String)> =
        [("cart", "app"), ("cart", "proxy"), ("checkout", "app")]
            .iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect();
    assert_eq!(keys, want_keys, "{what}:\n{}", out.stdout);
    for row in &rows {
        let pod = cluster.model().pod(NS, &row[0]).unwrap();
        let spec = pod
            .spec
            .containers
            .iter()
            .find(|c| c.name == row[1])
            .unwrap();
        let what = format!("{what} {}/{}", row[0], row[1]);
        assert_cpu(&what, &row[2], spec.cpu_millicores);
        assert_mib(&what, &row[3], spec.working_set_bytes);
    }

    // By name.
    let what = format!("1.{minor} top pod checkout");
    let out = run(cluster, minor, &["top", "pod", "checkout", "-n", NS]).await;
    let (_, rows) = table(&out.stdout);
    assert_eq!(rows.len(), 1, "{what}:\n{}", out.stdout);
    assert_eq!(rows[0][0], "checkout");
    let want = pod_usage(cluster, NS, "checkout");
    assert_cpu(&what, &rows[0][1], want.cpu_millicores);
    assert_mib(&what, &rows[0][2], want.memory_bytes);

    // --sort-by=cpu: descending by the model's rates.
    let what = format!("1.{minor} top pod --sort-by=cpu");
    let out = run(cluster, minor, &["top", "pod", "-n", NS, "--sort-by=cpu"]).await;
    let (_, rows) = table(&out.stdout);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut want: Vec<(u64, String)> = model_pods(cluster, Some(NS))
        .into_iter()
        .map(|(ns, name)| (pod_usage(cluster, &ns, &name).cpu_millicores, name))
        .collect();
    want.sort_by_key(|w| std::cmp::Reverse(w.0));
    let want: Vec<&str> = want.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, want, "{what}:\n{}", out.stdout);
    for row in &rows {
        let usage = pod_usage(cluster, NS, &row[0]);
        assert_cpu(&format!("{what} {}", row[0]), &row[1], usage.cpu_millicores);
        assert_mib(&format!("{what} {}", row[0]), &row[2], usage.memory_bytes);
    }

    // get podmetrics: the server's Table (the namespace has a pod on a swap node).
    let what = format!("1.{minor} get podmetrics -n {NS}");
    let out = run(cluster, minor, &["get", "podmetrics", "-n", NS]).await;
    let (header, rows) = table(&out.stdout);
    assert_eq!(
        header,
        ["NAME", "CPU", "MEMORY", "SWAP", "WINDOW"],
        "{what}:\n{}",
        out.stdout
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let want: Vec<String> = model_pods(cluster, Some(NS))
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, want, "{what}");
    for row in &rows {
        let want = pod_usage(cluster, NS, &row[0]);
        assert_table_usage(&format!("{what} {}", row[0]), &row[1..], want);
    }

    // Errors as users meet them.
    let out = cluster
        .kubectl(&kubectl(minor), &["top", "pod", "nosuch", "-n", NS])
        .await
        .unwrap();
    assert_eq!(out.code, 1, "1.{minor} top pod nosuch: {}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): pods \"nosuch\" not found",
        "1.{minor} top pod nosuch"
    );
    let out = cluster
        .kubectl(&kubectl(minor), &["top", "node", "node-d"])
        .await
        .unwrap();
    assert_eq!(out.code, 1, "1.{minor} top node node-d: {}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): nodemetrics.metrics.k8s.io \"node-d\" not found",
        "1.{minor} top node node-d"
    );
}

#[tokio::test]
async fn every_kubectl_version_prints_the_model_values() {
    let (cluster, server) = start(cluster_spec(), &["node-d"]).await;
    wait_all_metrics(&cluster, &server).await;
    for minor in VERSIONS {
        top_nodes(&cluster, minor).await;
        top_pods(&cluster, minor).await;
    }
}

/// CPU millicores of `ns/name` in `kubectl top pod` (1.33), `None` when not listed.
async fn top_pod_cpu(cluster: &Cluster, ns: &str, name: &str) -> Option<i64> {
    let out = cluster
        .kubectl(
            &kubectl(33),
            &["top", "pod", name, "-n", ns, "--no-headers"],
        )
        .await
        .ok()?;
    if out.code != 0 {
        return None;
    }
    let cell = out.stdout.split_whitespace().nth(1)?;
    // Parse signed: a negative rate must be caught, not skipped.
    match cell.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => cell.parse::<i64>().ok().map(|c| c * 1000),
    }
}

#[tokio::test]
async fn changes_at_runtime_show_up_without_absurd_or_missing_values() {
    let spec = ClusterSpec::new()
        .node(node("node-a"))
        .node(node("node-b"))
        .pod(
            pod("default", "web")
                .on("node-a")
                .container(container("app").cpu_millicores(300).memory_bytes(64 << 20)),
        );
    let (cluster, server) = start(spec, &[]).await;
    kubectl_until(&cluster, &server, 33, &["top", "node"], |out| {
        !out.stdout.contains("<unknown>")
    })
    .await;

    // A new pod appears within a couple of resolutions, with the right values.
    cluster
        .model()
        .add_pod(
            pod("default", "fresh")
                .on("node-b")
                .container(container("app").cpu_millicores(180).memory_bytes(48 << 20)),
        )
        .unwrap();
    let out = eventually(
        "the new pod in kubectl top",
        RESOLUTION * 2 + Duration::from_secs(10),
        || async {
            let out = cluster
                .kubectl(&kubectl(33), &["top", "pod", "fresh"])
                .await
                .ok()?;
            (out.code == 0).then_some(out)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let (_, rows) = table(&out.stdout);
    let want = pod_usage(&cluster, "default", "fresh");
    assert_cpu("fresh pod", &rows[0][1], want.cpu_millicores);
    assert_mib("fresh pod", &rows[0][2], want.memory_bytes);

    // A container restart never prints a negative or absurd rate: sample across the restart.
    let ceiling = 300 * 3 / 2 + 5;
    let mut samples = Vec::new();
    for i in 0..24 {
        if i == 4 {
            cluster
                .model()
                .restart_container("default", "web", "app")
                .unwrap();
        }
        if let Some(cpu) = top_pod_cpu(&cluster, "default", "web").await {
            samples.push(cpu);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(samples.len() >= 12, "too few samples: {samples:?}");
    assert!(
        samples.iter().all(|c| (0..=ceiling).contains(c)),
        "cpu across a restart: {samples:?}"
    );

    // One failed scrape does not make a node disappear: the fault is cleared right after the first scrape that
    // met it (the next one is a resolution later), while the node is read every second.
    let path = "/apis/metrics.k8s.io/v1beta1/nodes/node-b";
    let requests_before = cluster.kubelets().requests("node-b");
    cluster.kubelets().set_fault("node-b", Fault::Status(500));
    let mut statuses = Vec::new();
    let mut cleared_at = None;
    let started = tokio::time::Instant::now();
    while cleared_at
        .is_none_or(|at: tokio::time::Instant| at.elapsed() < RESOLUTION + Duration::from_secs(2))
    {
        assert!(
            started.elapsed() < RESOLUTION * 4,
            "no scrape of node-b met the fault"
        );
        if cleared_at.is_none() && cluster.kubelets().requests("node-b") > requests_before {
            cluster.kubelets().set_fault("node-b", Fault::None);
            cleared_at = Some(tokio::time::Instant::now());
        }
        let (status, _) = cluster.api_get(path, "application/json").await.unwrap();
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{path} during one failed scrape: {statuses:?}; server log:\n{}",
        server.log()
    );
}
