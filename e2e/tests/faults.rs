//! End-to-end fault tests of the real server binary: a 20-node cluster where 6 kubelets are hostile (hang, answer
//! after the kubelet timeout, HTTP 500, garbage, a body over the cap, connection reset). Across several scrape cycles
//! every healthy node and pod stays fresh, memory stays bounded, `/livez` stays 200, the hostile nodes and their
//! pods are absent, and the log names each hostile node and its cause once rather than every cycle.
//!
//! Build the binary first (`cargo build --workspace --bins`, or set `RMS_BIN`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{NODES, PODS, READY_WITHIN, admin_headers, client, get, rss_kib, wait_for_nodes};
use e2e::harness::Cluster;
use e2e::kubelet::Fault;
use e2e::model::{ClusterSpec, node_name};
use serde_json::Value;

/// Cluster size.
const NODES_IN_CLUSTER: u32 = 20;

/// Pods per node.
const PODS_PER_NODE: u32 = 3;

/// Scrape cycles observed after every healthy node first has metrics.
const CYCLES: usize = 4;

/// The kubelet request timeout given to the server; the resolution is the harness's 10 s.
const KUBELET_TIMEOUT: &str = "--kubelet-request-timeout=2s";

/// Longest wait for one cycle to refresh every healthy node and pod (3 × the resolution; a bound, not a timing
/// assertion).
const CYCLE_WITHIN: Duration = Duration::from_secs(30);

/// Resident memory ceiling for 20 nodes and 60 pods, KiB.
const MAX_RSS_KIB: u64 = 200 * 1024;

/// Allowed RSS growth from the first to the last cycle, KiB (allocator noise, not a per-cycle leak).
const RSS_GROWTH_KIB: u64 = 24 * 1024;

/// A body larger than the default 64 MiB cap.
const HUGE_BODY_BYTES: u64 = (64 << 20) + (1 << 20);

/// One hostile kubelet: its node index, its fault and what the server's log line must say about it.
struct Hostile {
    index: u32,
    fault: Fault,
    cause: &'static str,
}

fn hostiles() -> Vec<Hostile> {
    vec![
        Hostile {
            index: 2,
            fault: Fault::Hang,
            cause: "timed out",
        },
        Hostile {
            index: 5,
            fault: Fault::Slow(Duration::from_secs(5)),
            cause: "timed out",
        },
        Hostile {
            index: 8,
            fault: Fault::Status(500),
            cause: "500",
        },
        Hostile {
            index: 11,
            fault: Fault::Garbage,
            cause: "decode",
        },
        Hostile {
            index: 14,
            fault: Fault::Huge(HUGE_BODY_BYTES),
            cause: "exceeds 67108864 bytes",
        },
        Hostile {
            index: 17,
            fault: Fault::Reset,
            cause: "reset",
        },
    ]
}

/// `name → timestamp` of every item of a metrics list (pods keyed `namespace/name`).
fn timestamps(list: &Value) -> BTreeMap<String, jiff::Timestamp> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let meta = &item["metadata"];
            let name = match meta["namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", meta["name"].as_str().unwrap()),
                None => meta["name"].as_str().unwrap().to_owned(),
            };
            let at = item["timestamp"].as_str().unwrap().parse().unwrap();
            (name, at)
        })
        .collect()
}

/// Log lines about a failed scrape of `node` (the node field must match exactly: `node-1` is not `node-11`).
fn failure_lines<'a>(log: &'a str, node: &str) -> Vec<&'a str> {
    let needle = format!("node={node}");
    log.lines()
        .filter(|l| l.contains("kubelet scrape failed"))
        .filter(|l| {
            l.match_indices(&needle).any(|(at, m)| {
                !l[at + m.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        })
        .collect()
}

#[tokio::test]
async fn hostile_kubelets_do_not_disturb_healthy_nodes_memory_or_liveness() {
    let cluster = Cluster::start(ClusterSpec::uniform(NODES_IN_CLUSTER, PODS_PER_NODE))
        .await
        .unwrap();
    let hostiles = hostiles();
    for h in &hostiles {
        assert!(
            cluster
                .kubelets()
                .set_fault(&node_name(h.index), h.fault.clone())
        );
    }
    let hostile_names: Vec<String> = hostiles.iter().map(|h| node_name(h.index)).collect();
    let mut healthy: Vec<String> = (0..NODES_IN_CLUSTER)
        .map(node_name)
        .filter(|n| !hostile_names.contains(n))
        .collect();
    healthy.sort();
    let mut healthy_pods: Vec<String> = cluster
        .model()
        .pods()
        .iter()
        .filter(|p| healthy.contains(&p.spec.node))
        .map(|p| format!("{}/{}", p.spec.namespace, p.spec.name))
        .collect();
    healthy_pods.sort();

    let server = cluster
        .start_server(&[KUBELET_TIMEOUT], READY_WITHIN)
        .await
        .unwrap();
    let pid = server.pid().unwrap();
    wait_for_nodes(&cluster, &server, &healthy).await;

    let admin = client(Some(cluster.front_proxy_client()));
    let headers = admin_headers();
    let anonymous = client(None);
    let mut last_nodes = BTreeMap::new();
    let mut last_pods = BTreeMap::new();
    let mut rss = Vec::new();
    let mut livez_checks = 0;
    for cycle in 0..CYCLES {
        // Poll until every healthy node and pod has a newer timestamp than in the previous cycle.
        let deadline = tokio::time::Instant::now() + CYCLE_WITHIN;
        let (nodes, pods) = loop {
            let livez = get(server.addr(), anonymous.clone(), "/livez", &[]).await;
            assert_eq!(livez.status, 200, "cycle {cycle}: /livez: {}", livez.body);
            livez_checks += 1;
            let nodes = get(server.addr(), admin.clone(), NODES, &headers).await;
            let pods = get(server.addr(), admin.clone(), PODS, &headers).await;
            assert_eq!(nodes.status, 200, "{}", nodes.body);
            assert_eq!(pods.status, 200, "{}", pods.body);
            let (nodes, pods) = (timestamps(&nodes.json()), timestamps(&pods.json()));
            let fresher = |now: &BTreeMap<String, jiff::Timestamp>,
                           before: &BTreeMap<String, jiff::Timestamp>| {
                now.iter()
                    .all(|(name, at)| before.get(name).is_none_or(|b| at > b))
            };
            let complete = nodes.keys().eq(healthy.iter()) && pods.keys().eq(healthy_pods.iter());
            if complete && fresher(&nodes, &last_nodes) && fresher(&pods, &last_pods) {
                break (nodes, pods);
            }
            if tokio::time::Instant::now() >= deadline {
                // Say which part is wrong: the listed sets, or freshness.
                assert_eq!(
                    nodes.keys().collect::<Vec<_>>(),
                    healthy.iter().collect::<Vec<_>>()
                );
                assert_eq!(
                    pods.keys().collect::<Vec<_>>(),
                    healthy_pods.iter().collect::<Vec<_>>()
                );
                panic!(
                    "cycle {cycle}: not every healthy node and pod was refreshed within {CYCLE_WITHIN:?}; server \
                     log:\n{}",
                    server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for h in &hostiles {
            let name = node_name(h.index);
            let path = format!("{NODES}/{name}");
            let answer = get(server.addr(), admin.clone(), &path, &headers).await;
            assert_eq!(answer.status, 404, "cycle {cycle}: {name}: {}", answer.body);
            assert_eq!(answer.reason(), "NotFound", "{}", answer.body);
            assert_eq!(
                answer.message(),
                format!("nodemetrics.metrics.k8s.io \"{name}\" not found")
            );
            let pod = cluster
                .model()
                .pods()
                .into_iter()
                .find(|p| p.spec.node == name)
                .unwrap();
            let path = format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods/{}",
                pod.spec.namespace, pod.spec.name
            );
            let answer = get(server.addr(), admin.clone(), &path, &headers).await;
            assert_eq!(answer.status, 404, "cycle {cycle}: {path}: {}", answer.body);
            assert_eq!(answer.reason(), "NotFound", "{}", answer.body);
        }
        rss.push(rss_kib(pid));
        last_nodes = nodes;
        last_pods = pods;
    }

    let log = server.log();
    assert!(
        !log.contains('\u{1b}'),
        "the log is not a terminal: no colour escape codes"
    );
    let mut report = Vec::new();
    for h in &hostiles {
        let name = node_name(h.index);
        let attempts = cluster.kubelets().requests(&name);
        let lines = failure_lines(&log, &name);
        report.push(format!(
            "{name} {:?}: {attempts} scrape attempts, {} log lines: {}",
            h.fault,
            lines.len(),
            lines.first().unwrap_or(&"-")
        ));
        assert!(
            lines.iter().any(|l| l.to_lowercase().contains(h.cause)),
            "{name} ({:?}): no failure line naming {:?}; log:\n{log}",
            h.fault,
            h.cause
        );
        // Every cycle scraped the node again, but the log names it at most twice: rate-limited, not per cycle.
        assert!(
            attempts >= CYCLES as u64,
            "{name}: only {attempts} scrape attempts"
        );
        assert!(
            lines.len() <= 2,
            "{name}: {} failure lines for {attempts} attempts (not rate-limited):\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
    eprintln!(
        "RSS per cycle (KiB): {rss:?}; /livez checked {livez_checks} times\n{}",
        report.join("\n")
    );
    for (cycle, kib) in rss.iter().enumerate() {
        assert!(
            *kib < MAX_RSS_KIB,
            "cycle {cycle}: RSS {kib} KiB over {MAX_RSS_KIB} KiB"
        );
    }
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(
        last <= first + RSS_GROWTH_KIB,
        "RSS grew from {first} KiB to {last} KiB over {CYCLES} cycles: {rss:?}"
    );
}
