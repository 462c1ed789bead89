//! `cargo run -p e2e --bin demo`: a fake 5-node cluster with a few dozen pods under varying load, the real
//! resource-metrics-server scraping it, and real `kubectl top` output; then it keeps running (load keeps
//! shifting) and prints the kubeconfig to point your own kubectl at, until Ctrl-C.

use std::time::Duration;

use anyhow::Context as _;
use e2e::harness::{Cluster, ClusterOptions, eventually, kubectl_binary, server_binary};
use e2e::model::{ClusterSpec, container, node, pod};

/// How often the demo shifts load so repeated `kubectl top` calls show movement.
const SHIFT_EVERY: Duration = Duration::from_secs(15);

fn demo_cluster() -> ClusterSpec {
    let mut spec = ClusterSpec::new();
    for i in 0..5u64 {
        let mut n = node(format!("node-{i}"))
            .label("topology.kubernetes.io/zone", format!("zone-{}", i % 2));
        if i == 0 {
            n = n.label("node-role.kubernetes.io/control-plane", "");
        }
        if i == 4 {
            n = n.swap(8 << 30);
        }
        spec = spec.node(n);
    }
    let apps = [
        ("web", "frontend", 8, 180),
        ("api", "backend", 6, 320),
        ("worker", "backend", 5, 650),
        ("cache", "data", 3, 40),
    ];
    let mut k = 0u64;
    for (app, namespace, replicas, base_cpu) in apps {
        for r in 0..replicas {
            k += 1;
            let load = base_cpu * (50 + (k * 37) % 100) / 100;
            let mut p = pod(namespace, format!("{app}-{r}"))
                .on(format!("node-{}", k % 5))
                .label("app", app)
                .container(
                    container(app)
                        .cpu_millicores(load)
                        .memory_bytes((64 + (k * 53) % 400) << 20)
                        .requests(250, 256 << 20),
                );
            if app == "api" {
                p = p.container(
                    container("envoy")
                        .cpu_millicores(15 + k % 10)
                        .memory_bytes(40 << 20),
                );
            }
            spec = spec.pod(p);
        }
    }
    for (i, name) in [
        "coredns-0",
        "coredns-1",
        "kube-proxy-0",
        "kube-proxy-1",
        "kube-proxy-2",
    ]
    .into_iter()
    .enumerate()
    {
        spec = spec.pod(
            pod("kube-system", name)
                .on(format!("node-{i}"))
                .label(
                    "k8s-app",
                    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-'),
                )
                .container(
                    container(name.split('-').next().unwrap_or(name))
                        .cpu_millicores(3 + i as u64)
                        .memory_bytes(30 << 20),
                ),
        );
    }
    spec
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = server_binary();
    anyhow::ensure!(
        binary.exists(),
        "server binary not found at {} — build it with `cargo build --bin resource-metrics-server` (or set RMS_BIN)",
        binary.display()
    );
    let kubectl = kubectl_binary(None).context("kubectl is needed for the demo")?;

    let cluster = Cluster::start_with(demo_cluster(), ClusterOptions::default())
        .await
        .context("starting the fake cluster")?;
    println!(
        "fake cluster: API server {} · {} nodes · {} pods",
        cluster.control_plane().url(),
        cluster.model().nodes().len(),
        cluster.model().pods().len()
    );
    let server = cluster
        .start_server(&[], Duration::from_secs(60))
        .await
        .context("starting resource-metrics-server")?;
    println!(
        "resource-metrics-server listening on https://{} (pid {:?})",
        server.addr(),
        server.pid()
    );
    cluster
        .wait_metrics_available(Duration::from_secs(60))
        .await
        .context("waiting for the metrics APIService")?;

    println!("waiting for the first metrics (two scrapes, ~10-20 s)…");
    let nodes = eventually("node metrics", Duration::from_secs(120), || async {
        let out = cluster.kubectl(&kubectl, &["top", "node"]).await.ok()?;
        // Each node gets metrics after its own second scrape: wait until no row is <unknown>.
        (out.code == 0 && !out.stdout.contains("<unknown>")).then_some(out)
    })
    .await
    .with_context(|| format!("no metrics yet; server log:\n{}", server.log()))?;
    println!("\n$ kubectl top node\n{}", nodes.stdout);
    let pod_count = cluster.model().pods().len();
    let pods = eventually("pod metrics", Duration::from_secs(60), || async {
        let out = cluster
            .kubectl(&kubectl, &["top", "pod", "-A"])
            .await
            .ok()?;
        // A header plus one row per pod.
        (out.code == 0 && out.stdout.lines().count() > pod_count).then_some(out)
    })
    .await?;
    println!("$ kubectl top pod -A\n{}", pods.stdout);

    println!(
        "The cluster keeps running; load shifts every {}s. Try:",
        SHIFT_EVERY.as_secs()
    );
    println!(
        "  {} --kubeconfig {} top pod -A --sort-by=cpu",
        kubectl.display(),
        cluster.admin_kubeconfig().display()
    );
    println!(
        "  {} --kubeconfig {} get --raw /apis/metrics.k8s.io/v1beta1/nodes",
        kubectl.display(),
        cluster.admin_kubeconfig().display()
    );
    println!("Press Ctrl-C to stop.");

    let mut tick = 0u64;
    let mut shift = tokio::time::interval(SHIFT_EVERY);
    shift.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = shift.tick() => {
                tick += 1;
                let replica = tick % 5;
                let load = if tick.is_multiple_of(2) { 900 } else { 120 };
                let _ = cluster.model().set_container_cpu("backend", &format!("worker-{replica}"), "worker", load);
            }
        }
    }
    println!("stopping");
    server.kill().await?;
    Ok(())
}
