//! Integration tests of the HTTPS server: the real listener on 127.0.0.1:0 with fake cluster, storage,
//! authenticator and authorizer, talked to by hand-built rustls + hyper clients.
//!
//! Fakes live here (never behind a flag). Nothing asserts timings; waits are bounded polls.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use resource_metrics_server::api::{Api, MetricsSource, NodeUsage, PodUsage};
use resource_metrics_server::auth::{
    Attributes, Authenticator, Authorizer, Credentials, Decision, Error, UserInfo,
};
use resource_metrics_server::cluster::{ClusterView, NodeInfo, PodInfo};
use resource_metrics_server::config::{Config, parse_args};
use resource_metrics_server::scrape::Heartbeat;
use resource_metrics_server::scrape::kubelet::AcceptAnyServerCert;
use resource_metrics_server::server::{self, Health, ServerParts};
use resource_metrics_server::shutdown::{self, Trigger};
use resource_metrics_server::telemetry::SelfMetrics;
use resource_metrics_server::time::TimestampMs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------------------------------
// Fakes

struct SyncedCluster;

impl ClusterView for SyncedCluster {
    fn is_synced(&self) -> bool {
        true
    }
    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        Vec::new()
    }
    fn node(&self, _name: &str) -> Option<Arc<NodeInfo>> {
        None
    }
    fn pods(&self, _namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        Vec::new()
    }
    fn pod(&self, _namespace: &str, _name: &str) -> Option<Arc<PodInfo>> {
        None
    }
}

struct ReadyStorage;

impl MetricsSource for ReadyStorage {
    fn node_usage(&self, _node: &str, _now_ms: TimestampMs) -> Option<NodeUsage> {
        None
    }
    fn pod_usage(&self, _namespace: &str, _pod: &str, _now_ms: TimestampMs) -> Option<PodUsage> {
        None
    }
    fn is_ready(&self, _now_ms: TimestampMs) -> bool {
        true
    }
}

/// Bearer `good` → alice, `admin` → a system:masters member, `review-fails` → bob, anything else → 401; a TLS
/// client certificate → `cert-user`; nothing → anonymous. `X-Slow: 1` parks the request until released.
struct FakeAuthenticator {
    entered: Notify,
    gate: Semaphore,
    peer_chain_len: AtomicUsize,
}

impl Authenticator for FakeAuthenticator {
    fn authenticate<'a>(
        &'a self,
        credentials: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Error>> {
        Box::pin(async move {
            if credentials.headers.contains_key("x-slow") {
                self.entered.notify_one();
                let permit = self.gate.acquire().await.expect("gate never closes");
                permit.forget();
            }
            self.peer_chain_len
                .store(credentials.peer_certificates.len(), Ordering::Relaxed);
            if !credentials.peer_certificates.is_empty() {
                return Ok(Some(user("cert-user", &[])));
            }
            let auth = credentials
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            match auth.as_deref() {
                None => Ok(None),
                Some("Bearer good") => Ok(Some(user("alice", &["system:authenticated"]))),
                Some("Bearer admin") => Ok(Some(user("root", &["system:masters"]))),
                Some("Bearer review-fails") => Ok(Some(user("bob", &[]))),
                Some(_) => Err(Error::Unauthorized),
            }
        })
    }
}

impl Default for FakeAuthenticator {
    fn default() -> Self {
        FakeAuthenticator {
            entered: Notify::new(),
            gate: Semaphore::new(0),
            peer_chain_len: AtomicUsize::new(0),
        }
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    }
}

/// alice and cert-user may do anything; bob's review fails; everyone else is denied with a reason.
struct FakeAuthorizer;

impl Authorizer for FakeAuthorizer {
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        _attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, Error>> {
        Box::pin(async move {
            match user.name.as_str() {
                "alice" | "cert-user" => Ok(Decision::Allow),
                "bob" => Err(Error::Review("connection refused".to_owned())),
                _ => Ok(Decision::Deny {
                    reason: String::new(),
                }),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server and client helpers

struct Running {
    addr: SocketAddr,
    trigger: Trigger,
    served: tokio::task::JoinHandle<()>,
    authn: Arc<FakeAuthenticator>,
    _dir: tempfile::TempDir,
    cert_dir: PathBuf,
}

async fn start(extra: &[String]) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("certs");
    let mut argv = vec![
        "resource-metrics-server".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        "--secure-port=0".to_owned(),
        format!("--cert-dir={}", cert_dir.display()),
        "--metric-resolution=15s".to_owned(),
    ];
    argv.extend(extra.iter().cloned());
    let (args, _) = parse_args(argv).expect("flags parse");
    let config = Config::try_from(args).expect("valid config");
    let (trigger, signal) = shutdown::channel();
    let cluster: Arc<dyn ClusterView> = Arc::new(SyncedCluster);
    let storage: Arc<dyn MetricsSource> = Arc::new(ReadyStorage);
    let authn = Arc::new(FakeAuthenticator::default());
    let parts = ServerParts {
        api: Arc::new(Api::new(cluster.clone(), storage.clone())),
        authenticator: authn.clone(),
        authorizer: Arc::new(FakeAuthorizer),
        health: Health::new(
            cluster,
            storage,
            Arc::new(Heartbeat::default()),
            config.resolution,
            signal.clone(),
        ),
        metrics: Arc::new(SelfMetrics::new()),
    };
    let listener = server::bind(&config).await.expect("bind");
    let addr = listener.local_addr();
    let served = tokio::spawn(listener.serve(parts, signal));
    Running {
        addr,
        trigger,
        served,
        authn,
        _dir: dir,
        cert_dir,
    }
}

struct ClientOptions {
    versions: &'static [&'static SupportedProtocolVersion],
    alpn: &'static [&'static [u8]],
    roots: Option<rustls::RootCertStore>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            versions: rustls::ALL_VERSIONS,
            alpn: &[b"http/1.1"],
            roots: None,
            client_cert: None,
        }
    }
}

async fn tls_connect(
    addr: SocketAddr,
    options: ClientOptions,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(options.versions)
        .expect("versions");
    let builder = match options.roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider))),
    };
    let mut config = match options.client_cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http1(tls: TlsStream<TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    sender
}

struct Answer {
    status: u16,
    content_type: String,
    headers: http::HeaderMap,
    body: String,
}

fn request(path: &str, headers: &[(&str, &str)]) -> http::Request<Empty<Bytes>> {
    let mut builder = http::Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).expect("request")
}

async fn read(response: http::Response<hyper::body::Incoming>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        content_type,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get_on(sender: &mut Sender, path: &str, headers: &[(&str, &str)]) -> Answer {
    sender
        .ready()
        .await
        .expect("connection ready for the next request");
    let response = sender
        .send_request(request(path, headers))
        .await
        .expect("response");
    read(response).await
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let tls = tls_connect(addr, ClientOptions::default())
        .await
        .expect("TLS");
    let mut sender = http1(tls).await;
    get_on(&mut sender, path, headers).await
}

fn leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server sent certificates")[0]
        .clone()
        .into_owned()
}

fn write_pair(dir: &Path, host: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let (cert_pem, key_pem) = server::tls::generate_self_signed(host).expect("generate");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    // Replace atomically, as a Secret volume update does, so a half-written pair is never observed.
    for (path, pem) in [(&key, &key_pem), (&cert, &cert_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, pem).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .expect("a cert")
        .expect("PEM");
    (cert, key, der)
}

static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

const READYZ_VERBOSE: &str = "[+]ping ok
[+]log ok
[+]poststarthook/max-in-flight-filter ok
[+]poststarthook/storage-object-count-tracker-hook ok
[+]metric-storage-ready ok
[+]metric-informer-sync ok
[+]metadata-informer-sync ok
[+]shutdown ok
readyz check passed
";

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn https_round_trip_verifies_the_generated_certificate_over_http1_and_h2() {
    let server = start(&[]).await;
    let pem = std::fs::read(server.cert_dir.join("apiserver.crt"))
        .expect("generated cert written to --cert-dir");
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .expect("PEM");
    assert_eq!(chain.len(), 2, "serving certificate and its CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(chain[1].clone()).expect("CA");

    let options = ClientOptions {
        roots: Some(roots.clone()),
        ..ClientOptions::default()
    };
    let tls = tls_connect(server.addr, options)
        .await
        .expect("handshake verifies against the generated CA");
    let mut sender = http1(tls).await;
    let answer = get_on(&mut sender, "/readyz?verbose", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, READYZ_VERBOSE));
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");

    let options = ClientOptions {
        roots: Some(roots),
        alpn: &[b"h2", b"http/1.1"],
        ..ClientOptions::default()
    };
    let tls = tls_connect(server.addr, options)
        .await
        .expect("h2 handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN selects h2"
    );
    let (mut h2, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .expect("h2");
    tokio::spawn(conn);
    let uri = format!("https://localhost:{}/livez", server.addr.port());
    let answer = read(
        h2.send_request(http::Request::get(uri).body(Empty::new()).expect("req"))
            .await
            .expect("h2 response"),
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn tls_below_1_2_is_refused() {
    let server = start(&[]).await;
    // A TLS 1.1 ClientHello (legacy version 0x0302, no supported_versions extension; two GCM suites the server
    // knows and two CBC suites), as an old client would send.
    let mut hello = vec![0x03, 0x02];
    hello.extend([7u8; 32]);
    hello.extend([
        0x00, 0x00, 0x08, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13, 0x00, 0x2f, 0x01, 0x00,
    ]);
    // signature_algorithms (which rustls requires before looking at the version): ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
    hello.extend([
        0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01,
    ]);
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(hello.len()).expect("short")];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        0x03,
        0x02,
        0x00,
        u8::try_from(handshake.len()).expect("short"),
    ];
    record.extend(handshake);
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&record).await.expect("send hello");
    let mut answer = [0u8; 7];
    tcp.read_exact(&mut answer)
        .await
        .expect("an alert comes back");
    assert_eq!(
        answer[0], 0x15,
        "an alert record, not a ServerHello: {answer:?}"
    );
    assert_eq!(answer[6], 70, "alert protocol_version: {answer:?}");

    let server13 = start(&["--tls-min-version=VersionTLS13".to_owned()]).await;
    let tls12_only = ClientOptions {
        versions: TLS12_ONLY,
        ..ClientOptions::default()
    };
    assert!(
        tls_connect(server13.addr, tls12_only).await.is_err(),
        "TLS 1.2 refused when the minimum is 1.3"
    );
    let tls12_only = ClientOptions {
        versions: TLS12_ONLY,
        ..ClientOptions::default()
    };
    assert!(
        tls_connect(server.addr, tls12_only).await.is_ok(),
        "TLS 1.2 accepted by default"
    );
}

#[tokio::test]
async fn authentication_and_authorization_failures_are_status_bodies() {
    let server = start(&[]).await;
    struct Case {
        name: &'static str,
        path: &'static str,
        token: Option<&'static str>,
        status: u16,
        body: &'static str,
    }
    let cases = [
        Case {
            name: "invalid token",
            path: "/metrics",
            token: Some("Bearer wrong"),
            status: 401,
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        },
        Case {
            name: "anonymous on /metrics",
            path: "/metrics",
            token: None,
            status: 403,
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/metrics\"","reason":"Forbidden","details":{},"code":403}"#,
        },
        Case {
            name: "review failure",
            path: "/metrics",
            token: Some("Bearer review-fails"),
            status: 500,
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal Server Error: \"/metrics\": review request failed: connection refused","reason":"InternalError","code":500}"#,
        },
        Case {
            name: "anonymous on an always-allowed path",
            path: "/livez",
            token: None,
            status: 200,
            body: "ok",
        },
        Case {
            name: "anonymous on a health sub-path that is not always allowed",
            path: "/readyz/ping",
            token: None,
            status: 403,
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/readyz/ping\"","reason":"Forbidden","details":{},"code":403}"#,
        },
        Case {
            name: "system:masters skips the review",
            path: "/readyz/ping",
            token: Some("Bearer admin"),
            status: 200,
            body: "ok",
        },
    ];
    for case in cases {
        let headers: Vec<(&str, &str)> = case
            .token
            .map(|t| ("authorization", t))
            .into_iter()
            .collect();
        let answer = get(server.addr, case.path, &headers).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (case.status, case.body),
            "{}",
            case.name
        );
        if case.status != 200 {
            assert_eq!(answer.content_type, "application/json", "{}", case.name);
        }
    }
}

#[tokio::test]
async fn self_metrics_are_served_to_authorized_users_in_text_format() {
    let server = start(&[]).await;
    let answer = get(server.addr, "/metrics", &[("authorization", "Bearer good")]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "text/plain; version=0.0.4");
    assert!(
        answer
            .body
            .contains("# TYPE metrics_server_api_metric_freshness_seconds histogram"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn other_paths_are_answered_by_the_api() {
    let server = start(&[]).await;
    let path = "/apis/metrics.k8s.io/v1beta1/nodes";
    let answer = get(
        server.addr,
        path,
        &[
            ("authorization", "Bearer good"),
            ("accept", "application/json"),
        ],
    )
    .await;
    let api = Api::new(Arc::new(SyncedCluster), Arc::new(ReadyStorage));
    let direct = api.handle(
        resource_metrics_server::api::ApiRequest {
            method: "GET",
            path,
            query: "",
            accept: "application/json",
        },
        resource_metrics_server::time::now_ms(),
    );
    assert_eq!(answer.status, direct.status);
    assert_eq!(answer.content_type, direct.content_type);
}

#[tokio::test]
async fn the_client_certificate_chain_reaches_the_authenticator() {
    let server = start(&[]).await;
    let (cert_pem, key_pem) = server::tls::generate_self_signed("client").expect("client cert");
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let options = ClientOptions {
        client_cert: Some((chain, key)),
        ..ClientOptions::default()
    };
    let tls = tls_connect(server.addr, options)
        .await
        .expect("any client chain is accepted at the handshake");
    let mut sender = http1(tls).await;
    let answer = get_on(&mut sender, "/metrics", &[]).await;
    assert_eq!(answer.status, 200, "cert-user is allowed: {}", answer.body);
    assert_eq!(
        server.authn.peer_chain_len.load(Ordering::Relaxed),
        2,
        "leaf and CA as the client sent them"
    );
}

#[tokio::test]
async fn in_flight_cap_answers_429_but_never_starves_health() {
    let server = start(&["--max-requests-inflight=1".to_owned()]).await;
    let addr = server.addr;
    let slow = tokio::spawn(async move {
        get(
            addr,
            "/metrics",
            &[("authorization", "Bearer good"), ("x-slow", "1")],
        )
        .await
    });
    server.authn.entered.notified().await;
    let throttled = get(addr, "/metrics", &[("authorization", "Bearer good")]).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(
        throttled.body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#
    );
    assert_eq!(
        throttled
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let health = get(addr, "/readyz", &[]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "ok"),
        "health is exempt from the cap"
    );
    server.authn.gate.add_permits(1);
    assert_eq!(slow.await.expect("slow request").status, 200);
    let after = get(addr, "/metrics", &[("authorization", "Bearer good")]).await;
    assert_eq!(after.status, 200, "the slot is released");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_handshakes_while_old_connections_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, first) = write_pair(dir.path(), "first");
    let server = start(&[
        format!("--tls-cert-file={}", cert.display()),
        format!("--tls-private-key-file={}", key.display()),
    ])
    .await;
    let old = tls_connect(server.addr, ClientOptions::default())
        .await
        .expect("TLS");
    assert_eq!(leaf(&old), first);
    let mut old_sender = http1(old).await;
    assert_eq!(get_on(&mut old_sender, "/livez", &[]).await.status, 200);

    let (_, _, second) = write_pair(dir.path(), "second");
    let mut seen = first.clone();
    for _ in 0..60 {
        let tls = tls_connect(server.addr, ClientOptions::default())
            .await
            .expect("TLS during reload");
        seen = leaf(&tls);
        if seen == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen == second,
        "new handshakes see the replaced certificate"
    );
    assert_eq!(
        get_on(&mut old_sender, "/livez", &[]).await.status,
        200,
        "the old connection still works"
    );
}

#[tokio::test]
async fn shutdown_fails_readyz_then_drains_in_flight_requests() {
    let server = start(&[]).await;
    let addr = server.addr;
    let slow = tokio::spawn(async move { get(addr, "/livez", &[("x-slow", "1")]).await });
    server.authn.entered.notified().await;
    // A kept-alive connection, opened before shutdown.
    let mut idle = http1(
        tls_connect(addr, ClientOptions::default())
            .await
            .expect("TLS"),
    )
    .await;
    assert_eq!(get_on(&mut idle, "/readyz", &[]).await.status, 200);

    server.trigger.fire();
    // The listener closes promptly (no --shutdown-delay-duration); the in-flight request is still parked.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "new connections are refused once shutdown starts");
    assert!(
        !server.served.is_finished(),
        "serve waits for the in-flight request"
    );

    server.authn.gate.add_permits(1);
    let answer = slow.await.expect("slow request");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ok"),
        "the in-flight request completes"
    );
    tokio::time::timeout(Duration::from_secs(20), server.served)
        .await
        .expect("serve returns after draining")
        .expect("no panic");
}

#[tokio::test]
async fn readyz_fails_during_the_shutdown_delay_while_requests_are_still_served() {
    let server = start(&["--shutdown-delay-duration=30s".to_owned()]).await;
    server.trigger.fire();
    let answer = get(server.addr, "/readyz?verbose", &[]).await;
    assert_eq!(answer.status, 500);
    assert!(
        answer
            .body
            .contains("[-]shutdown failed: reason withheld\n"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.ends_with("readyz check failed\n"),
        "{}",
        answer.body
    );
    assert_eq!(
        get(server.addr, "/livez", &[]).await.status,
        200,
        "still serving during the delay"
    );
    server.served.abort();
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let argv = [
        "rms".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.path().display()),
    ];
    let config = Config::try_from(parse_args(argv).expect("flags").0).expect("config");
    let error = match server::bind(&config).await {
        Err(e) => e,
        Ok(_) => panic!("the port is taken"),
    };
    let message = error.to_string();
    assert!(
        matches!(error, server::Error::PortInUse { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("port {port} is already in use")),
        "{message}"
    );
    assert!(message.contains("hostNetwork"), "{message}");
}

#[test]
fn fakes_implement_the_traits() {
    fn is_view<T: ClusterView>() {}
    fn is_source<T: MetricsSource>() {}
    fn is_authn<T: Authenticator>() {}
    fn is_authz<T: Authorizer>() {}
    is_view::<SyncedCluster>();
    is_source::<ReadyStorage>();
    is_authn::<FakeAuthenticator>();
    is_authz::<FakeAuthorizer>();
}

/// Prints throughput figures for the report; ignored by default and asserts nothing about time.
/// Run: `cargo test --release --test server -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test"]
async fn measure_keepalive_requests_and_handshakes() {
    let server = start(&[]).await;
    let mut sender = http1(
        tls_connect(server.addr, ClientOptions::default())
            .await
            .expect("TLS"),
    )
    .await;
    let requests = 5_000u32;
    let started = std::time::Instant::now();
    for _ in 0..requests {
        assert_eq!(get_on(&mut sender, "/livez", &[]).await.status, 200);
    }
    let elapsed = started.elapsed();
    println!(
        "keep-alive GET /livez: {requests} requests in {elapsed:?} = {:.0} req/s, {:.1} µs each",
        f64::from(requests) / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / f64::from(requests)
    );
    let handshakes = 300u32;
    let started = std::time::Instant::now();
    for _ in 0..handshakes {
        let mut s = http1(
            tls_connect(server.addr, ClientOptions::default())
                .await
                .expect("TLS"),
        )
        .await;
        assert_eq!(get_on(&mut s, "/livez", &[]).await.status, 200);
    }
    let elapsed = started.elapsed();
    println!(
        "new connection + TLS handshake + GET /livez: {handshakes} in {elapsed:?} = {:.2} ms each",
        elapsed.as_secs_f64() * 1e3 / f64::from(handshakes)
    );
}
