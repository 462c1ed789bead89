//! Tests of the fakes on their own (no server binary): real kubectl against the fake control plane, kube-rs
//! watchers against its list/watch, fake kubelet bodies fetched over TLS, kubelet fault modes, and the aggregator
//! proxy in front of a tiny stand-in backend.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2e::control_plane::Availability;
use e2e::harness::{Cluster, ClusterOptions, eventually, kubectl_binary};
use e2e::https::{self, Body, full};
use e2e::kubelet::Fault;
use e2e::model::{ClusterSpec, container, node, pod};
use e2e::tls;
use futures::StreamExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

fn small_cluster() -> ClusterSpec {
    ClusterSpec::new()
        .node(node("node-a").label("role", "worker"))
        .node(node("node-b").swap(8 << 30))
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
                .container(container("app").cpu_millicores(100).swap_bytes(4 << 20))
                .container(container("sidecar").cpu_millicores(5)),
        )
        .pod(
            pod("kube-system", "dns")
                .on("node-a")
                .label("app", "dns")
                .container(container("coredns").cpu_millicores(3)),
        )
}

#[tokio::test]
async fn kubectl_lists_nodes_and_pods_from_the_fake_control_plane() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let kubectl = kubectl_binary(Some(33)).unwrap();

    let nodes = cluster.kubectl(&kubectl, &["get", "nodes"]).await.unwrap();
    assert_eq!(nodes.code, 0, "{nodes:?}");
    let lines: Vec<&str> = nodes.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS"),
        "{}",
        nodes.stdout
    );
    assert!(
        lines[1].starts_with("node-a") && lines[1].contains("Ready"),
        "{}",
        nodes.stdout
    );
    assert_eq!(lines.len(), 3, "{}", nodes.stdout);

    let pods = cluster
        .kubectl(&kubectl, &["get", "pods", "-A"])
        .await
        .unwrap();
    assert_eq!(pods.code, 0, "{pods:?}");
    assert!(
        pods.stdout.lines().next().unwrap().starts_with("NAMESPACE"),
        "{}",
        pods.stdout
    );
    assert!(pods.stdout.contains("kube-system   dns"), "{}", pods.stdout);
    assert!(
        pods.stdout.contains("web-2") && pods.stdout.contains("2/2"),
        "{}",
        pods.stdout
    );

    let selected = cluster
        .kubectl(
            &kubectl,
            &["get", "pods", "-l", "app in (web)", "-o", "name"],
        )
        .await
        .unwrap();
    assert_eq!(
        selected.stdout.trim(),
        "pod/web-1\npod/web-2",
        "{selected:?}"
    );

    let missing = cluster
        .kubectl(&kubectl, &["get", "node", "node-z"])
        .await
        .unwrap();
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("NotFound") && missing.stderr.contains("node-z"),
        "{missing:?}"
    );

    // kubectl top before any metrics backend: the group is absent from discovery.
    let top = cluster.kubectl(&kubectl, &["top", "node"]).await.unwrap();
    assert_eq!(top.code, 1);
    assert!(top.stderr.contains("Metrics API not available"), "{top:?}");
}

#[tokio::test]
async fn kubectl_rejects_a_kubeconfig_with_an_unknown_token() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let kubeconfig = cluster.dir().join("stranger.kubeconfig");
    let text = std::fs::read_to_string(cluster.admin_kubeconfig())
        .unwrap()
        .replace(cluster.admin_token(), "not-a-token");
    std::fs::write(&kubeconfig, text).unwrap();
    let out = cluster
        .kubectl_as(
            &kubectl_binary(Some(33)).unwrap(),
            &kubeconfig,
            &["get", "nodes"],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Unauthorized") || out.stderr.contains("credentials"),
        "{out:?}"
    );
}

async fn kubelet_body(
    cluster: &Cluster,
    node: &str,
    token: Option<&str>,
) -> Result<(u16, String), https::HttpsError> {
    let addr = cluster.kubelets().node(node).unwrap().addr();
    let config = Arc::new(tls::client_config(cluster.pki().cluster_ca_der(), None).unwrap());
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = https::get(
        addr,
        config,
        "/metrics/resource",
        &headers,
        Duration::from_secs(5),
    )
    .await?;
    Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

fn parse(body: &str) -> Vec<String> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape.samples.into_iter().map(|s| s.metric).collect()
}

fn sample(body: &str, series: &str) -> (f64, Option<i64>) {
    let line = body
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"));
    let rest = line[series.len()..].trim();
    let mut fields = rest.split(' ');
    let value: f64 = fields.next().unwrap().parse().unwrap();
    (value, fields.next().map(|t| t.parse().unwrap()))
}

#[tokio::test]
async fn kubelet_body_decodes_and_cpu_delta_over_time_equals_the_model_rate() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let token = cluster.server_token().to_owned();

    let (status, first) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200, "{first}");
    let families = parse(&first);
    assert!(
        families.iter().any(|f| f == "resource_scrape_error"),
        "{first}"
    );
    assert!(!first.contains("swap"), "node-a has no swap:\n{first}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, second) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();

    let series =
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web-1\"}";
    let (cpu1, t1) = sample(&first, series);
    let (cpu2, t2) = sample(&second, series);
    let rate_millicores = (cpu2 - cpu1) / ((t2.unwrap() - t1.unwrap()) as f64 / 1_000.0) * 1_000.0;
    assert!(
        (rate_millicores - 250.0).abs() < 0.01,
        "rate {rate_millicores}"
    );

    let (node1, nt1) = sample(&first, "node_cpu_usage_seconds_total");
    let (node2, nt2) = sample(&second, "node_cpu_usage_seconds_total");
    let node_rate = (node2 - node1) / ((nt2.unwrap() - nt1.unwrap()) as f64 / 1_000.0) * 1_000.0;
    let expected = cluster
        .model()
        .expected_node_usage("node-a")
        .unwrap()
        .cpu_millicores as f64;
    assert!(
        (node_rate - expected).abs() < 0.01,
        "node rate {node_rate}, expected {expected}"
    );

    let (start, start_ts) = sample(
        &second,
        "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web-1\"}",
    );
    assert!(start_ts.is_none(), "start times carry no timestamp");
    assert!(start > 1.7e9);

    let (_, swap_body) = kubelet_body(&cluster, "node-b", Some(&token))
        .await
        .unwrap();
    assert_eq!(
        sample(
            &swap_body,
            "container_swap_usage_bytes{container=\"app\",namespace=\"default\",pod=\"web-2\"}"
        )
        .0,
        (4u64 << 20) as f64
    );
    assert!(swap_body.contains("node_swap_usage_bytes "), "{swap_body}");

    assert_eq!(
        cluster.kubelets().last_authorization("node-a"),
        Some(format!("Bearer {token}"))
    );
    assert_eq!(cluster.kubelets().requests("node-a"), 2);
}

#[tokio::test]
async fn kubelets_require_the_server_token_and_restarts_reset_counters() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let (status, _) = kubelet_body(&cluster, "node-a", None).await.unwrap();
    assert_eq!(status, 401);
    let (status, _) = kubelet_body(&cluster, "node-a", Some("wrong"))
        .await
        .unwrap();
    assert_eq!(status, 401);

    let token = cluster.server_token().to_owned();
    let series =
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web-1\"}";
    let (_, before) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    cluster
        .model()
        .restart_container("default", "web-1", "app")
        .unwrap();
    let (_, after) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    assert!(
        sample(&after, series).0 < sample(&before, series).0,
        "counter went down after a restart"
    );
    let start =
        "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web-1\"}";
    assert!(
        sample(&after, start).0 > sample(&before, start).0,
        "start time moved forward"
    );
}

#[tokio::test]
async fn kubelet_fault_modes_behave_as_named() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let token = cluster.server_token().to_owned();
    let kubelets = cluster.kubelets();

    kubelets.set_fault("node-a", Fault::Status(500));
    assert_eq!(
        kubelet_body(&cluster, "node-a", Some(&token))
            .await
            .unwrap()
            .0,
        500
    );

    kubelets.set_fault("node-a", Fault::ScrapeError);
    let (_, body) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    assert_eq!(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["resource_scrape_error 1"]
    );

    kubelets.set_fault("node-a", Fault::MissingTimestamps);
    let (_, body) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    assert_eq!(sample(&body, "node_cpu_usage_seconds_total").1, None);

    kubelets.set_fault("node-a", Fault::Garbage);
    let (status, body) = kubelet_body(&cluster, "node-a", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(!body.contains("resource_scrape_error"));

    kubelets.set_fault("node-a", Fault::Refuse);
    let refused = eventually(
        "connections to be refused",
        Duration::from_secs(5),
        || async {
            matches!(
                kubelet_body(&cluster, "node-a", Some(&token)).await,
                Err(https::HttpsError::Connect { .. })
            )
            .then_some(())
        },
    )
    .await;
    assert!(refused.is_ok());

    kubelets.set_fault("node-a", Fault::Reset);
    let reset = eventually(
        "the kubelet to listen again",
        Duration::from_secs(5),
        || async {
            match kubelet_body(&cluster, "node-a", Some(&token)).await {
                Err(https::HttpsError::Connect { .. }) => None,
                other => Some(other),
            }
        },
    )
    .await
    .unwrap();
    assert!(
        reset.is_err(),
        "a reset connection yields no response: {reset:?}"
    );

    kubelets.set_fault("node-a", Fault::Hang);
    let addr = kubelets.node("node-a").unwrap().addr();
    let config = Arc::new(tls::client_config(cluster.pki().cluster_ca_der(), None).unwrap());
    let auth = format!("Bearer {token}");
    let hung = https::get(
        addr,
        config.clone(),
        "/metrics/resource",
        &[("Authorization", &auth)],
        Duration::from_millis(700),
    )
    .await;
    assert!(
        matches!(hung, Err(https::HttpsError::Timeout(_))),
        "{hung:?}"
    );

    kubelets.set_fault("node-a", Fault::HangBeforeTls);
    let stuck = https::get(
        addr,
        config.clone(),
        "/metrics/resource",
        &[("Authorization", &auth)],
        Duration::from_millis(700),
    )
    .await;
    assert!(
        matches!(stuck, Err(https::HttpsError::Timeout(_))),
        "{stuck:?}"
    );

    kubelets.set_fault("node-a", Fault::Huge(70 << 20));
    let (status, _, body) = https::get(
        addr,
        config.clone(),
        "/metrics/resource",
        &[("Authorization", &auth)],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.len(), 70 << 20);

    kubelets.set_fault("node-a", Fault::None);
    assert_eq!(
        kubelet_body(&cluster, "node-a", Some(&token))
            .await
            .unwrap()
            .0,
        200
    );
}

/// What the stand-in backend saw.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    accept: Option<String>,
    remote_user: Option<String>,
    remote_groups: Vec<String>,
    authorization: bool,
    client_cert_cn: Option<String>,
}

/// A tiny metrics backend: TLS requiring the front-proxy CA, answering discovery and a NodeMetricsList built from
/// the model's expected usage.
async fn start_standin(
    cluster: &Cluster,
) -> (
    SocketAddr,
    Arc<Mutex<Vec<Seen>>>,
    tokio::task::JoinHandle<()>,
) {
    let cert = cluster
        .pki()
        .issue_server("standin", &["127.0.0.1".into()])
        .unwrap();
    let config =
        Arc::new(tls::server_config(&cert, &[cluster.pki().front_proxy_ca_der()]).unwrap());
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let model = cluster.model().clone();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, log, model) = (acceptor.clone(), log.clone(), model.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::certificate_identity)
                    .map(|(u, _)| u);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    log.lock().unwrap().push(Seen {
                        path_and_query: req.uri().path_and_query().unwrap().to_string(),
                        accept: header("accept"),
                        remote_user: header("x-remote-user"),
                        remote_groups: req
                            .headers()
                            .get_all("x-remote-group")
                            .iter()
                            .map(|v| v.to_str().unwrap().to_owned())
                            .collect(),
                        authorization: req.headers().contains_key("authorization"),
                        client_cert_cn: cn.clone(),
                    });
                    let path = req.uri().path().to_owned();
                    let body = match path
                        .strip_suffix("/nodes")
                        .and_then(|p| p.strip_prefix("/apis/metrics.k8s.io/"))
                    {
                        Some(version) => {
                            let items: Vec<serde_json::Value> = model
                                .nodes()
                                .iter()
                                .map(|n| {
                                    let u = model.expected_node_usage(&n.spec.name).unwrap();
                                    serde_json::json!({
                                        "metadata": {"name": n.spec.name, "labels": n.spec.labels},
                                        "timestamp": "2026-11-26T18:00:00Z", "window": "10s",
                                        "usage": {"cpu": format!("{}m", u.cpu_millicores), "memory": format!("{}Ki", u.memory_bytes / 1024)},
                                    })
                                })
                                .collect();
                            serde_json::json!({"kind": "NodeMetricsList", "apiVersion": format!("metrics.k8s.io/{version}"), "metadata": {}, "items": items})
                        }
                        None => {
                            let version = path.rsplit('/').next().unwrap_or("v1beta1");
                            serde_json::json!({
                                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("metrics.k8s.io/{version}"),
                                "resources": [
                                    {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
                                    {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
                                ],
                            })
                        }
                    };
                    let mut response: Response<Body> =
                        Response::new(full(Bytes::from(serde_json::to_vec(&body).unwrap())));
                    response
                        .headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen, task)
}

#[tokio::test]
async fn aggregator_proxies_metrics_requests_with_front_proxy_identity() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let (addr, seen, task) = start_standin(&cluster).await;
    cluster.control_plane().set_metrics_backend(Some(addr));
    cluster
        .wait_metrics_available(Duration::from_secs(10))
        .await
        .unwrap();

    let kubectl = kubectl_binary(Some(33)).unwrap();
    let top = cluster.kubectl(&kubectl, &["top", "node"]).await.unwrap();
    assert_eq!(top.code, 0, "{top:?}");
    let expected_a = cluster.model().expected_node_usage("node-a").unwrap();
    let row = top
        .stdout
        .lines()
        .find(|l| l.starts_with("node-a"))
        .unwrap_or_else(|| panic!("{top:?}"));
    assert!(
        row.contains(&format!("{}m", expected_a.cpu_millicores)),
        "{row}"
    );

    // Every kubectl on the image negotiates discovery (v2, v2beta1-only for 1.27-1.29) and reaches the backend.
    for minor in 27..=32 {
        let kubectl = kubectl_binary(Some(minor)).unwrap();
        let top = cluster
            .kubectl(&kubectl, &["top", "node", "node-b"])
            .await
            .unwrap();
        assert_eq!(top.code, 0, "kubectl 1.{minor}: {top:?}");
        assert!(top.stdout.contains("node-b"), "kubectl 1.{minor}: {top:?}");
    }
    // kubectl 1.37 prefers metrics.k8s.io/v1 (served and preferred here).
    let kubectl_137 = e2e::harness::venv_binary("kubectl").unwrap();
    let top = cluster
        .kubectl(&kubectl_137, &["top", "node"])
        .await
        .unwrap();
    assert_eq!(top.code, 0, "kubectl 1.37: {top:?}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s.path_and_query == "/apis/metrics.k8s.io/v1/nodes")
    );

    // The Python client: CustomObjectsApi without discovery, DynamicClient with discovery.
    let listed = cluster.python_metrics(&["custom-nodes"]).await.unwrap();
    assert_eq!(listed["status"], 200, "{listed}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    let cache = cluster.dir().join("python-discovery.json");
    let dynamic = cluster
        .python_metrics(&["dynamic-nodes", cache.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(dynamic["status"], 200, "{dynamic}");
    assert_eq!(dynamic["items"].as_array().unwrap().len(), 2, "{dynamic}");

    seen.lock().unwrap().clear();
    let top = cluster.kubectl(&kubectl, &["top", "node"]).await.unwrap();
    assert_eq!(top.code, 0, "{top:?}");

    let proxied: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path_and_query.ends_with("/nodes"))
        .cloned()
        .collect();
    assert_eq!(proxied.len(), 1, "{proxied:?}");
    let request = &proxied[0];
    assert_eq!(request.path_and_query, "/apis/metrics.k8s.io/v1beta1/nodes");
    assert_eq!(
        request.accept.as_deref(),
        Some("application/vnd.kubernetes.protobuf, */*")
    );
    assert_eq!(
        request.remote_user.as_deref(),
        Some(e2e::harness::ADMIN_USER)
    );
    assert!(
        request.remote_groups.contains(&"system:masters".to_owned()),
        "{request:?}"
    );
    assert!(
        !request.authorization,
        "the caller's token must not reach the backend"
    );
    assert_eq!(
        request.client_cert_cn.as_deref(),
        Some("front-proxy-client")
    );

    // Query strings pass through unchanged.
    let (status, _) = cluster
        .api_get(
            "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app+in+%28x%2Cy%29",
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(seen.lock().unwrap().iter().any(|s| s.path_and_query
        == "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app+in+%28x%2Cy%29"));

    // Backend gone: 503 Status from the aggregator itself.
    task.abort();
    cluster
        .control_plane()
        .set_metrics_availability(Availability::ForceAvailable);
    cluster
        .control_plane()
        .set_metrics_backend(Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 1))));
    let (status, body) = cluster
        .api_get("/apis/metrics.k8s.io/v1beta1/nodes", "application/json")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ServiceUnavailable"), "{body}");
}

#[tokio::test]
async fn discovery_negotiates_aggregated_versions_exactly() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    cluster
        .control_plane()
        .set_metrics_availability(Availability::ForceAvailable);
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let v2b1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
    let (_, body) = cluster
        .api_get("/apis", &format!("{v2b1},application/json"))
        .await
        .unwrap();
    assert!(
        body.contains("apidiscovery.k8s.io/v2beta1") && body.contains("metrics.k8s.io"),
        "{body}"
    );
    let (_, body) = cluster
        .api_get("/apis", &format!("{v2},{v2b1},application/json"))
        .await
        .unwrap();
    assert!(body.contains("\"apidiscovery.k8s.io/v2\""), "{body}");
    let (_, body) = cluster
        .api_get("/apis", "application/json, */*")
        .await
        .unwrap();
    assert!(
        body.contains("APIGroupList")
            && body.contains("\"preferredVersion\":{\"groupVersion\":\"metrics.k8s.io/v1\""),
        "{body}"
    );
    cluster
        .control_plane()
        .set_metrics_availability(Availability::ForceUnavailable);
    let (_, body) = cluster.api_get("/apis", "application/json").await.unwrap();
    assert!(!body.contains("metrics.k8s.io"), "{body}");
}

#[tokio::test]
async fn kube_rs_watchers_see_live_changes_including_metadata_only_pods() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::runtime::watcher;

    let cluster = Cluster::start(small_cluster()).await.unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.server_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let pods: kube::Api<kube::core::PartialObjectMeta<Pod>> = kube::Api::all(client.clone());
    let mut pod_events = watcher::watcher(
        pods,
        watcher::Config::default().fields("status.phase=Running"),
    )
    .boxed();
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let mut node_events = watcher::watcher(nodes, watcher::Config::default()).boxed();

    let mut initial_pods = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), pod_events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(p) => initial_pods.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    initial_pods.sort();
    assert_eq!(initial_pods, ["dns", "web-1", "web-2"]);
    loop {
        if let watcher::Event::InitDone =
            tokio::time::timeout(Duration::from_secs(10), node_events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        {
            break;
        }
    }

    cluster
        .model()
        .add_pod(
            pod("default", "late")
                .on("node-b")
                .container(container("c")),
        )
        .unwrap();
    cluster
        .model()
        .update_pod("default", "web-1", |p| {
            p.phase = e2e::model::PodPhase::Succeeded
        })
        .unwrap();
    let mut applied = None;
    let mut deleted = None;
    while applied.is_none() || deleted.is_none() {
        match tokio::time::timeout(Duration::from_secs(10), pod_events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Apply(p) => applied = p.metadata.name,
            watcher::Event::Delete(p) => deleted = p.metadata.name,
            _ => {}
        }
    }
    assert_eq!(applied.as_deref(), Some("late"));
    assert_eq!(
        deleted.as_deref(),
        Some("web-1"),
        "a pod leaving Running leaves the field-selected watch"
    );

    cluster
        .model()
        .update_node("node-b", |n| {
            n.labels
                .insert("new".into(), "label".into())
                .map(|_| ())
                .unwrap_or(())
        })
        .unwrap();
    let node = loop {
        if let watcher::Event::Apply(n) =
            tokio::time::timeout(Duration::from_secs(10), node_events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        {
            break n;
        }
    };
    assert_eq!(
        node.metadata.labels.unwrap().get("new").map(String::as_str),
        Some("label")
    );
}

#[tokio::test]
async fn the_auth_configmap_and_reviews_are_served() {
    let cluster = Cluster::start_with(small_cluster(), ClusterOptions::default())
        .await
        .unwrap();
    let (status, body) = cluster
        .api_get(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let cm: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        cm["data"]["requestheader-allowed-names"],
        "[\"front-proxy-client\"]"
    );
    assert!(
        cm["data"]["requestheader-client-ca-file"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_ne!(
        cm["data"]["client-ca-file"],
        cm["data"]["requestheader-client-ca-file"]
    );
}

#[tokio::test]
async fn a_separate_fake_kubelets_process_serves_the_same_uniform_cluster() {
    use e2e::harness::KubeletProcess;
    let spec = ClusterSpec::uniform(300, 4);
    let options = ClusterOptions {
        start_kubelets: false,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(spec, options).await.unwrap();
    let process = KubeletProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_fake-kubelets")),
        200..300,
        4,
        Some(cluster.server_token()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(process.pid().is_some());

    let node = cluster.model().node("node-250").unwrap();
    let addr = SocketAddr::from((node.spec.address.unwrap(), node.spec.kubelet_port));
    assert_eq!(addr.to_string(), "127.1.1.1:10250");
    let config = Arc::new(tls::insecure_client_config(None).unwrap());
    let auth = format!("Bearer {}", cluster.server_token());
    let (status, _, body) = https::get(
        addr,
        config,
        "/metrics/resource",
        &[("Authorization", &auth)],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    // Same names and rates in both processes: the body's pods are the model's pods of node-250.
    for p in cluster
        .model()
        .pods()
        .iter()
        .filter(|p| p.spec.node == "node-250")
    {
        assert!(
            body.contains(&format!("pod=\"{}\"", p.spec.name)),
            "{} missing from\n{body}",
            p.spec.name
        );
    }
}

#[tokio::test]
async fn nodes_added_at_runtime_get_a_kubelet_and_appear_in_lists() {
    let cluster = Cluster::start(small_cluster()).await.unwrap();
    cluster.model().add_node(node("node-late")).unwrap();
    cluster
        .model()
        .add_pod(
            pod("default", "late-1")
                .on("node-late")
                .container(container("app").cpu_millicores(42)),
        )
        .unwrap();
    let kubelet = cluster.kubelets().start_node("node-late").await.unwrap();
    let existing = cluster.kubelets().node("node-a").unwrap().addr();
    assert_ne!(kubelet.addr().ip(), existing.ip());
    let (status, body) = kubelet_body(&cluster, "node-late", Some(cluster.server_token()))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("pod=\"late-1\""), "{body}");
    let nodes = cluster
        .kubectl(
            &kubectl_binary(Some(33)).unwrap(),
            &["get", "nodes", "-o", "name"],
        )
        .await
        .unwrap();
    assert!(nodes.stdout.contains("node/node-late"), "{nodes:?}");
}

#[tokio::test]
async fn a_thousand_node_cluster_serves_every_kubelet_and_lists_every_pod() {
    let cluster = Cluster::start(ClusterSpec::uniform(1_000, 3))
        .await
        .unwrap();
    assert_eq!(cluster.kubelets().nodes().len(), 1_000);
    for name in ["node-0", "node-499", "node-999"] {
        let (status, body) = kubelet_body(&cluster, name, Some(cluster.server_token()))
            .await
            .unwrap();
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            body.matches("container_cpu_usage_seconds_total{").count(),
            3,
            "{name}: {body}"
        );
    }
    let (status, body) = cluster
        .api_get(
            "/api/v1/pods?fieldSelector=status.phase%3DRunning",
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3_000);
}

#[tokio::test]
async fn lists_come_in_chunks_with_continue_tokens_like_kube_apiserver() {
    let cluster = Cluster::start_with(ClusterSpec::uniform(3, 4), ClusterOptions::default())
        .await
        .unwrap();
    let get = |path: String| {
        let cluster = &cluster;
        async move {
            let (status, body) = cluster.api_get(&path, "application/json").await.unwrap();
            let list: serde_json::Value = serde_json::from_str(&body).unwrap();
            (status, list)
        }
    };
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (status, whole) = get("/api/v1/pods".to_owned()).await;
    assert_eq!(status, 200);
    let all = names(&whole);
    assert_eq!(all.len(), 12);
    assert!(whole["metadata"].get("continue").is_none());

    // Pages of 5: 5 + 5 + 2, each but the last with a token and the count left.
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            None => "/api/v1/pods?limit=5".to_owned(),
            Some(t) => format!("/api/v1/pods?limit=5&continue={}", urlencode(t)),
        };
        let (status, page) = get(path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        paged.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(next) => {
                assert_eq!(
                    page["metadata"]["remainingItemCount"].as_u64(),
                    Some(12 - paged.len() as u64)
                );
                token = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all);

    // A selector hides the remaining count; a token from before a change is expired (410).
    let (_, first) =
        get("/api/v1/pods?limit=5&fieldSelector=status.phase%3DRunning".to_owned()).await;
    assert!(first["metadata"]["remainingItemCount"].is_null(), "{first}");
    let stale = first["metadata"]["continue"].as_str().unwrap().to_owned();
    cluster
        .model()
        .add_pod(
            pod("default", "late-1")
                .on("node-0")
                .container(container("app")),
        )
        .unwrap();
    let (status, expired) = get(format!(
        "/api/v1/pods?limit=5&continue={}",
        urlencode(&stale)
    ))
    .await;
    assert_eq!(status, 410, "{expired}");
    assert_eq!(expired["reason"], "Expired");
    let (status, _) = get("/api/v1/pods?limit=5&continue=not-a-token".to_owned()).await;
    assert_eq!(status, 400);
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
