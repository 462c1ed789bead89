//! Scrape integration tests: the real `KubeletClient` and `Scraper` against fake TLS kubelets on distinct
//! 127.x.y.z addresses. Assertions are about behaviour (headers seen, connections accepted, errors, ordering and
//! coverage), never about how long something took; every wait is bounded.
#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use resource_metrics_server::cluster::{ClusterView, Index};
use resource_metrics_server::scrape::{
    self, BodyBuffer, Error, Heartbeat, KubeletClient, KubeletClientConfig, Scraper, TokenSource,
    kubelet, kubelet::ServerTrust,
};
use resource_metrics_server::shutdown;
use resource_metrics_server::telemetry::SelfMetrics;
use support::{FakeKubelet, KUBELET_BODY, Mode, RecordingSink, TestCa, node, node_ip, target};

fn config(ca: &TestCa) -> KubeletClientConfig {
    KubeletClientConfig {
        trust: ServerTrust::Cas(kubelet::certificates_from_pem(&ca.pem).expect("test CA parses")),
        client_identity: None,
        token: TokenSource::Static("test-token".to_owned()),
        request_timeout: Duration::from_secs(5),
        max_body_bytes: kubelet::DEFAULT_MAX_BODY_BYTES,
        idle_timeout: Duration::from_secs(60),
        max_idle_connections: usize::MAX,
    }
}

fn client(config: KubeletClientConfig) -> KubeletClient {
    support::init_crypto();
    KubeletClient::new(config).expect("client config is valid")
}

async fn kubelet(base: u8, i: u32, ca: &TestCa, mode: Mode) -> FakeKubelet {
    FakeKubelet::start(node_ip(base, i), ca, mode, Arc::new(AtomicUsize::new(0))).await
}

/// Polls `done` every 20 ms for at most `limit`; returns whether it became true.
async fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn the_bearer_token_and_gzip_are_sent_and_the_body_is_decompressed() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(11, 0, &ca, Mode::Gzip).await;
    let client = client(config(&ca));
    let body = client
        .fetch(
            &target("n1", fake.addr),
            &mut BodyBuffer::default(),
            <[u8]>::to_vec,
        )
        .await
        .expect("scrape succeeds");
    assert_eq!(body, KUBELET_BODY.as_bytes(), "gzip body is decompressed");
    assert_eq!(
        fake.seen.authorization.lock().expect("lock").as_slice(),
        [Some("Bearer test-token".to_owned())]
    );
    assert_eq!(
        fake.seen.accept_encoding.lock().expect("lock").as_slice(),
        [Some("gzip".to_owned())]
    );
    assert_eq!(
        fake.seen.paths.lock().expect("lock").as_slice(),
        ["/metrics/resource"]
    );
}

#[tokio::test]
async fn the_token_is_read_from_a_file() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(12, 0, &ca, Mode::Ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "file-token\n").expect("write token");
    let client = client(KubeletClientConfig {
        token: TokenSource::File(path),
        ..config(&ca)
    });
    client
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect("scrape succeeds");
    assert_eq!(
        fake.seen.authorization.lock().expect("lock").as_slice(),
        [Some("Bearer file-token".to_owned())]
    );
}

#[tokio::test]
async fn a_kubelet_certificate_from_another_ca_fails_with_a_tls_error_naming_the_address() {
    let kubelet_ca = TestCa::new("kubelet CA");
    let other_ca = TestCa::new("some other CA");
    let fake = kubelet(13, 0, &kubelet_ca, Mode::Ok).await;
    let client = client(config(&other_ca));
    let error = client
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("untrusted cert");
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
    assert_eq!(error.reason(), "tls");
    let message = error.to_string();
    assert!(message.contains(&fake.addr.to_string()), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert_eq!(
        fake.requests(),
        0,
        "no request is sent over an unverified connection"
    );
}

#[tokio::test]
async fn a_kubelet_certificate_without_the_dialled_ip_fails_naming_address_and_sans() {
    let ca = TestCa::new("kubelet CA");
    let san = std::net::IpAddr::from([127, 0, 0, 99]);
    let fake = FakeKubelet::start_with_san(node_ip(26, 0), san, &ca, Mode::Ok).await;
    let error = client(config(&ca))
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("name mismatch");
    assert_eq!(error.reason(), "tls");
    let message = error.to_string();
    assert!(
        message.contains(&fake.addr.to_string()),
        "names the address dialled: {message}"
    );
    assert!(
        message.contains("127.0.0.99"),
        "names the SANs presented: {message}"
    );
}

#[tokio::test]
async fn insecure_tls_accepts_a_certificate_from_any_ca() {
    let kubelet_ca = TestCa::new("kubelet CA");
    let fake = kubelet(14, 0, &kubelet_ca, Mode::Ok).await;
    let insecure = KubeletClientConfig {
        trust: ServerTrust::InsecureSkipVerify,
        ..config(&kubelet_ca)
    };
    let body = client(insecure)
        .fetch(
            &target("n1", fake.addr),
            &mut BodyBuffer::default(),
            <[u8]>::to_vec,
        )
        .await
        .expect("insecure accepts");
    assert_eq!(body, KUBELET_BODY.as_bytes());
}

#[tokio::test]
async fn plain_http_mode_scrapes_without_tls_and_without_a_token() {
    let ca = TestCa::new("kubelet CA");
    let fake = FakeKubelet::start_plain(node_ip(24, 0), Mode::Ok).await;
    let plain = KubeletClientConfig {
        trust: ServerTrust::PlainHttp,
        ..config(&ca)
    };
    let body = client(plain)
        .fetch(
            &target("n1", fake.addr),
            &mut BodyBuffer::default(),
            <[u8]>::to_vec,
        )
        .await
        .expect("plain HTTP scrape");
    assert_eq!(body, KUBELET_BODY.as_bytes());
    assert_eq!(
        fake.seen.authorization.lock().expect("lock").as_slice(),
        [None],
        "no token in clear text"
    );
}

#[tokio::test]
async fn verification_without_any_ca_is_a_build_error() {
    let ca = TestCa::new("kubelet CA");
    support::init_crypto();
    let result = KubeletClient::new(KubeletClientConfig {
        trust: ServerTrust::Cas(Vec::new()),
        ..config(&ca)
    });
    assert!(
        matches!(result, Err(kubelet::BuildError::NoTrustAnchors)),
        "{result:?}"
    );
}

#[tokio::test]
async fn several_scrapes_of_one_kubelet_reuse_one_connection() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(15, 0, &ca, Mode::Ok).await;
    let client = client(config(&ca));
    let mut body = BodyBuffer::default();
    for _ in 0..5 {
        client
            .fetch(&target("n1", fake.addr), &mut body, |_| ())
            .await
            .expect("scrape succeeds");
    }
    assert_eq!(fake.requests(), 5);
    assert_eq!(
        fake.accepts(),
        1,
        "keep-alive: one TCP connection for five scrapes"
    );
}

#[tokio::test]
async fn connections_over_the_idle_budget_are_closed_after_use() {
    let ca = TestCa::new("kubelet CA");
    let first = kubelet(27, 0, &ca, Mode::Ok).await;
    let second = kubelet(27, 1, &ca, Mode::Ok).await;
    let client = client(KubeletClientConfig {
        max_idle_connections: 1,
        ..config(&ca)
    });
    let mut body = BodyBuffer::default();
    for _ in 0..3 {
        client
            .fetch(&target("first", first.addr), &mut body, |_| ())
            .await
            .expect("scrape first");
        client
            .fetch(&target("second", second.addr), &mut body, |_| ())
            .await
            .expect("scrape second");
    }
    assert_eq!(
        first.accepts(),
        1,
        "the first kubelet holds the one pooled connection"
    );
    assert_eq!(
        second.accepts(),
        3,
        "the second reconnects for every scrape"
    );
}

#[tokio::test]
async fn a_connection_closed_by_a_restarted_kubelet_is_replaced() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(16, 0, &ca, Mode::Ok).await;
    let client = client(config(&ca));
    client
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect("first scrape");
    let addr = fake.addr;
    drop(fake); // closes the listener and every connection it served
    tokio::task::yield_now().await;
    let fake = FakeKubelet::start_on(addr, &ca, Mode::Ok, Arc::new(AtomicUsize::new(0))).await;
    client
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect("scrape over a new connection");
    assert_eq!(fake.accepts(), 1);
}

#[tokio::test]
async fn a_body_over_the_cap_is_rejected() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(17, 0, &ca, Mode::Huge(300_000)).await;
    let client = client(KubeletClientConfig {
        max_body_bytes: 100_000,
        ..config(&ca)
    });
    let mut body = BodyBuffer::default();
    let error = client
        .fetch(&target("n1", fake.addr), &mut body, |_| ())
        .await
        .expect_err("too large");
    assert!(
        matches!(error, Error::BodyTooLarge { limit: 100_000, .. }),
        "{error:?}"
    );
    assert_eq!(error.reason(), "body_too_large");
    assert!(
        body.received().len() <= 100_000,
        "never buffers past the cap"
    );
}

#[tokio::test]
async fn a_gzip_body_that_inflates_past_the_cap_is_rejected() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(25, 0, &ca, Mode::HugeGzip(10_000_000)).await;
    let client = client(KubeletClientConfig {
        max_body_bytes: 100_000,
        ..config(&ca)
    });
    let mut body = BodyBuffer::default();
    let error = client
        .fetch(&target("n1", fake.addr), &mut body, |_| ())
        .await
        .expect_err("too large");
    assert!(
        matches!(error, Error::BodyTooLarge { limit: 100_000, .. }),
        "{error:?}"
    );
    assert!(
        body.received().len() < 100_000,
        "only the compressed body is buffered"
    );
}

#[tokio::test]
async fn a_non_200_answer_carries_the_status_and_the_kubelets_reason() {
    let ca = TestCa::new("kubelet CA");
    let reason = "Forbidden (user=system:serviceaccount:kube-system:metrics-server, verb=get, resource=nodes, \
                  subresource=metrics)";
    let fake = kubelet(18, 0, &ca, Mode::Status(403, reason)).await;
    let error = client(config(&ca))
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("403");
    match &error {
        Error::Status {
            status,
            body,
            address,
        } => {
            assert_eq!(*status, 403);
            assert_eq!(body, reason);
            assert_eq!(address, &fake.addr.to_string());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(error.reason(), "http_status");
}

#[tokio::test]
async fn a_long_error_body_is_cut_to_its_first_200_bytes() {
    let ca = TestCa::new("kubelet CA");
    let long: &'static str = Box::leak("x".repeat(5000).into_boxed_str());
    let fake = kubelet(28, 0, &ca, Mode::Status(401, long)).await;
    let error = client(config(&ca))
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("401");
    match error {
        Error::Status {
            status: 401, body, ..
        } => assert_eq!(body, "x".repeat(200)),
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn a_hanging_kubelet_times_out() {
    let ca = TestCa::new("kubelet CA");
    let fake = kubelet(19, 0, &ca, Mode::Hang).await;
    let client = client(KubeletClientConfig {
        request_timeout: Duration::from_millis(300),
        ..config(&ca)
    });
    let error = client
        .fetch(&target("n1", fake.addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("hangs");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(error.reason(), "timeout");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let ca = TestCa::new("kubelet CA");
    // Bind and drop to find a port nobody listens on.
    let addr = tokio::net::TcpListener::bind((node_ip(20, 0), 0))
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let error = client(config(&ca))
        .fetch(&target("n1", addr), &mut BodyBuffer::default(), |_| ())
        .await
        .expect_err("refused");
    assert_eq!(error.reason(), "connect", "{error:?}");
    assert!(error.to_string().contains(&addr.to_string()));
}

/// A scraper over `index` with the given resolution, and its shutdown trigger.
struct Running {
    sink: Arc<RecordingSink>,
    metrics: Arc<SelfMetrics>,
    heartbeat: Arc<Heartbeat>,
    trigger: shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

fn start_scraper(index: Arc<Index>, client: KubeletClient, resolution: Duration) -> Running {
    let sink = Arc::new(RecordingSink::default());
    let heartbeat = Arc::new(Heartbeat::default());
    let metrics = Arc::new(SelfMetrics::new());
    let scraper = Scraper {
        cluster: index,
        client,
        sink: sink.clone(),
        metrics: metrics.clone(),
        heartbeat: heartbeat.clone(),
        resolution,
        max_concurrency: scrape::DEFAULT_MAX_CONCURRENCY,
    };
    let (trigger, signal) = shutdown::channel();
    let task = tokio::spawn(scraper.run(signal));
    Running {
        sink,
        metrics,
        heartbeat,
        trigger,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("scraper stops promptly after shutdown")
            .expect("scraper task does not panic");
    }
}

#[tokio::test]
async fn a_hanging_kubelet_does_not_delay_healthy_ones() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let hanging = kubelet(21, 0, &ca, Mode::Hang).await;
    index.apply_node(node("hanging", hanging.addr));
    let mut healthy = Vec::new();
    for i in 1..=4 {
        let fake = kubelet(21, i, &ca, Mode::Ok).await;
        index.apply_node(node(&format!("healthy-{i}"), fake.addr));
        healthy.push(fake);
    }
    let client = client(KubeletClientConfig {
        request_timeout: Duration::from_millis(450),
        ..config(&ca)
    });
    let running = start_scraper(index, client, Duration::from_millis(500));
    let sink = running.sink.clone();
    let all_scraped_thrice = eventually(Duration::from_secs(20), || {
        (1..=4).all(|i| sink.count(&format!("healthy-{i}")) >= 3)
    })
    .await;
    assert!(
        all_scraped_thrice,
        "healthy nodes keep being scraped: {:?}",
        sink.order()
    );
    assert_eq!(sink.count("hanging"), 0);
    assert!(
        hanging.requests() >= 2,
        "the hanging node is retried each round, not stuck on its first request"
    );
    for fake in &healthy {
        assert_eq!(
            fake.accepts(),
            1,
            "one kept-alive connection per kubelet across rounds"
        );
    }
    assert!(running.heartbeat.is_timely(
        resource_metrics_server::time::now_ms(),
        Duration::from_millis(500)
    ));
    let metrics = running.metrics.clone();
    running.stop().await;
    let text = String::from_utf8(metrics.render()).expect("utf-8 exposition");
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with(needle) && !l.ends_with(" 0"))
    };
    assert!(
        has("resource_metrics_server_scrape_failures_total{reason=\"timeout\"}"),
        "{text}"
    );
    assert!(
        has("metrics_server_kubelet_request_total{success=\"true\"}"),
        "{text}"
    );
    assert!(
        has("metrics_server_kubelet_request_total{success=\"false\"}"),
        "{text}"
    );
    assert!(
        has("metrics_server_manager_tick_duration_seconds_count"),
        "rounds are timed: {text}"
    );
}

#[tokio::test]
async fn a_warm_up_pass_reaches_every_node_then_rounds_follow_the_phases() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let sequence = Arc::new(AtomicUsize::new(0));
    let resolution = Duration::from_secs(3);
    // Names whose phase is at least 200 ms into the round, so the warm-up pass is over before any slot is due.
    let names: Vec<String> = (0..100)
        .map(|i| format!("node-{i}"))
        .filter(|name| scrape::phase_of(name, resolution) >= Duration::from_millis(200))
        .take(12)
        .collect();
    let mut fakes = Vec::new();
    for (i, name) in (0u32..).zip(&names) {
        let fake = FakeKubelet::start(node_ip(22, i), &ca, Mode::Ok, sequence.clone()).await;
        index.apply_node(node(name, fake.addr));
        fakes.push((name.clone(), fake));
    }
    let running = start_scraper(index, client(config(&ca)), resolution);
    let every_node_twice = eventually(Duration::from_secs(20), || {
        fakes.iter().all(|(_, f)| f.requests() >= 2)
    })
    .await;
    running.stop().await;
    assert!(
        every_node_twice,
        "every node is scraped by the warm-up and in the first round"
    );

    let nth = |f: &FakeKubelet, n: usize| f.seen.sequence.lock().expect("lock")[n];
    let last_warm_up = fakes.iter().map(|(_, f)| nth(f, 0)).max().expect("nodes");
    let first_phased = fakes.iter().map(|(_, f)| nth(f, 1)).min().expect("nodes");
    assert!(
        last_warm_up < first_phased,
        "the warm-up reaches every node before the phased round starts"
    );

    // The first phased request to each node, in arrival order, follows the phases. Pairs whose phases are
    // closer than 100 ms are not compared: their requests race.
    let mut arrivals: Vec<_> = fakes
        .iter()
        .map(|(name, f)| (nth(f, 1), scrape::phase_of(name, resolution), name))
        .collect();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        assert!(
            later.1 + Duration::from_millis(100) >= earlier.1,
            "{} (phase {:?}) was scraped before {} (phase {:?})",
            earlier.2,
            earlier.1,
            later.2,
            later.1
        );
    }
    let quarters: std::collections::BTreeSet<_> = arrivals
        .iter()
        .map(|a| a.1.as_millis() * 4 / resolution.as_millis())
        .collect();
    assert!(
        quarters.len() >= 3,
        "12 nodes fall into at least 3 of the round's 4 quarters: {arrivals:?}"
    );
}

#[tokio::test]
async fn the_warm_up_gives_early_phase_nodes_two_scrapes_long_before_a_resolution_has_passed() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let resolution = Duration::from_secs(60);
    let names: Vec<String> = (0..1000)
        .map(|i| format!("early-{i}"))
        .filter(|name| {
            let phase = scrape::phase_of(name, resolution);
            Duration::from_millis(200) <= phase && phase <= Duration::from_secs(2)
        })
        .take(3)
        .collect();
    let mut fakes = Vec::new();
    for (i, name) in (0u32..).zip(&names) {
        let fake = kubelet(32, i, &ca, Mode::Ok).await;
        index.apply_node(node(name, fake.addr));
        fakes.push(fake);
    }
    let running = start_scraper(index, client(config(&ca)), resolution);
    // Without the warm-up the second scrape would come a whole minute later.
    let twice = eventually(Duration::from_secs(15), || {
        fakes.iter().all(|f| f.requests() >= 2)
    })
    .await;
    running.stop().await;
    assert_eq!(names.len(), 3);
    assert!(
        twice,
        "warm-up plus phased scrape: {:?}",
        fakes.iter().map(FakeKubelet::requests).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_node_that_leaves_is_forgotten_and_a_node_that_joins_is_scraped() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let staying = kubelet(23, 0, &ca, Mode::Ok).await;
    let leaving = kubelet(23, 1, &ca, Mode::Ok).await;
    let joining = kubelet(23, 2, &ca, Mode::Ok).await;
    index.apply_node(node("staying", staying.addr));
    index.apply_node(node("leaving", leaving.addr));
    let running = start_scraper(
        index.clone(),
        client(config(&ca)),
        Duration::from_millis(300),
    );
    let sink = running.sink.clone();
    assert!(eventually(Duration::from_secs(20), || sink.count("leaving") >= 1).await);
    index.delete_node("leaving");
    index.apply_node(node("joining", joining.addr));
    let changed = eventually(Duration::from_secs(20), || {
        sink.forgotten
            .lock()
            .expect("lock")
            .contains(&"leaving".to_owned())
            && sink.count("joining") >= 1
    })
    .await;
    assert!(
        changed,
        "forgotten: {:?}, order: {:?}",
        sink.forgotten.lock().expect("lock"),
        sink.order()
    );
    assert!(index.nodes().iter().all(|n| &*n.name != "leaving"));
    let metrics = running.metrics.clone();
    running.stop().await;
    let text = String::from_utf8(metrics.render()).expect("utf-8 exposition");
    assert!(text.contains("node=\"staying\""), "{text}");
    assert!(
        !text.contains("node=\"leaving\""),
        "per-node series of a node that left are removed: {text}"
    );
}

/// CPU seconds (user + system) used by this process so far, from `/proc/self/stat` (clock ticks of 10 ms).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// A measurement, not a pass/fail timing test: `cargo test --release --test scrape -- --ignored --nocapture
/// scale`. Scrapes `SCALE_NODES` in-process fake kubelets for three rounds and prints scrapes done, connections
/// opened and process CPU per scrape (fake kubelets included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn scale_measurement_of_rounds_over_many_kubelets() {
    let nodes: u32 = std::env::var("SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let resolution = Duration::from_secs(5);
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let sequence = Arc::new(AtomicUsize::new(0));
    let mut fakes = Vec::new();
    for i in 0..nodes {
        let ip = std::net::Ipv4Addr::new(
            127,
            30 + u8::try_from(i / 62_500).expect("small"),
            ((i / 250) % 250) as u8,
            (i % 250 + 1) as u8,
        );
        let fake = FakeKubelet::start(ip, &ca, Mode::Ok, sequence.clone()).await;
        index.apply_node(node(&format!("node-{i}"), fake.addr));
        fakes.push(fake);
    }
    let cpu_before = process_cpu_seconds();
    let wall = std::time::Instant::now();
    let running = start_scraper(index, client(config(&ca)), resolution);
    let sink = running.sink.clone();
    let want = 3 * nodes as usize;
    let done = eventually(resolution * 5, || sink.total() >= want).await;
    let elapsed = wall.elapsed();
    running.stop().await;
    let cpu = process_cpu_seconds() - cpu_before;
    let scrapes = sink.total();
    let accepts: usize = fakes.iter().map(FakeKubelet::accepts).sum();
    println!(
        "nodes={nodes} resolution={resolution:?} scrapes={scrapes} connections={accepts} wall={elapsed:?} \
         cpu={cpu:.2}s cpu_per_scrape={:.1}us (client + fake kubelets)",
        cpu / scrapes.max(1) as f64 * 1e6
    );
    assert!(done, "three rounds completed: {scrapes} of {want} scrapes");
    assert_eq!(accepts, nodes as usize, "one connection per kubelet");
}

#[tokio::test]
async fn decoded_batches_reach_the_sink_with_the_send_time_as_fallback_timestamp() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let body =
        "node_cpu_usage_seconds_total 2.5\nnode_memory_working_set_bytes 1024 1750705768415\n";
    let with_ts = kubelet(29, 0, &ca, Mode::Ok).await;
    let without_ts = kubelet(29, 1, &ca, Mode::Body(body)).await;
    index.apply_node(node("with-ts", with_ts.addr));
    index.apply_node(node("without-ts", without_ts.addr));
    let before_ms = resource_metrics_server::time::now_ms();
    let running = start_scraper(index, client(config(&ca)), Duration::from_millis(300));
    let sink = running.sink.clone();
    let both = eventually(Duration::from_secs(20), || {
        sink.count("with-ts") >= 1 && sink.count("without-ts") >= 1
    })
    .await;
    running.stop().await;
    let after_ms = resource_metrics_server::time::now_ms();
    assert!(both, "both nodes scraped: {:?}", sink.order());
    let batches = sink.batches.lock().expect("lock");
    let full = &batches["with-ts"][0];
    assert_eq!(
        full.node.cpu.map(|c| c.cumulative_cpu_ns),
        Some(1_234_500_000_000)
    );
    assert_eq!(full.containers.len(), 1);
    assert_eq!(full.containers[0].pod, "web-1");
    let bare = &batches["without-ts"][0];
    let cpu = bare.node.cpu.expect("node cpu decoded");
    assert!(
        (before_ms..=after_ms).contains(&cpu.timestamp_ms),
        "a sample without timestamp is stamped with the send time"
    );
    assert_eq!(
        bare.node.memory.map(|m| m.timestamp_ms),
        Some(1_750_705_768_415)
    );
}

#[tokio::test]
async fn a_malformed_body_reaches_no_sink_and_a_kubelet_error_still_does() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let malformed = kubelet(30, 0, &ca, Mode::Body("node_cpu_usage_seconds_total{ 1\n")).await;
    let flagged = kubelet(30, 1, &ca, Mode::Body("resource_scrape_error 1\n")).await;
    index.apply_node(node("malformed", malformed.addr));
    index.apply_node(node("flagged", flagged.addr));
    let running = start_scraper(index, client(config(&ca)), Duration::from_millis(300));
    let sink = running.sink.clone();
    let scraped = eventually(Duration::from_secs(20), || {
        malformed.requests() >= 2 && sink.count("flagged") >= 2
    })
    .await;
    running.stop().await;
    assert!(scraped, "both kubelets asked repeatedly");
    assert_eq!(
        sink.count("malformed"),
        0,
        "an undecodable body is a failed scrape"
    );
    let batches = sink.batches.lock().expect("lock");
    assert!(
        batches["flagged"].iter().all(|b| b.kubelet_error),
        "the flag reaches storage"
    );
}

#[tokio::test]
async fn a_node_leaving_during_its_scrape_is_forgotten_after_it_and_only_once() {
    let ca = TestCa::new("kubelet CA");
    let index = Arc::new(Index::default());
    let slow = kubelet(31, 0, &ca, Mode::Slow(Duration::from_millis(1500))).await;
    index.apply_node(node("slow", slow.addr));
    let client = client(KubeletClientConfig {
        request_timeout: Duration::from_secs(5),
        ..config(&ca)
    });
    let running = start_scraper(index.clone(), client, Duration::from_millis(200));
    assert!(
        eventually(Duration::from_secs(10), || slow.requests() >= 1).await,
        "scrape started"
    );
    index.delete_node("slow");
    let sink = running.sink.clone();
    let forgotten = eventually(Duration::from_secs(20), || {
        sink.forgotten
            .lock()
            .expect("lock")
            .contains(&"slow".to_owned())
    })
    .await;
    // Give a late result every chance to arrive after the forget, then check it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert!(forgotten, "the node is forgotten");
    let events = sink.events.lock().expect("lock").clone();
    assert_eq!(
        events.iter().filter(|e| *e == "forget:slow").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("forget:slow"),
        "nothing after the forget: {events:?}"
    );
    assert_eq!(
        events.first().map(String::as_str),
        Some("accept:slow"),
        "the in-flight scrape landed first"
    );
}
