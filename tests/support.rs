//! Test support for scrape tests: a generated CA, fake kubelets serving `/metrics/resource` over TLS on distinct
//! 127.x.y.z addresses with fault modes, a recording `BatchSink`, and `NodeInfo` fixtures.
//!
//! Fakes count accepted connections and requests and record the headers they saw, so tests assert behaviour
//! (token sent, one connection reused) rather than timings. Every listener task is aborted when its
//! `FakeKubelet` is dropped. This file must not be used outside tests.
#![allow(dead_code)] // Each test crate that includes this module uses a different subset of it.
#![allow(clippy::expect_used)] // Test fixtures fail by panicking; `expect` says which step broke.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use resource_metrics_server::cluster::{NodeInfo, ScrapeTarget};
use resource_metrics_server::scrape::BatchSink;
use resource_metrics_server::scrape::decode::NodeBatch;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test certificate authority that signs kubelet serving certificates for loopback IPs.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: Vec<u8>,
}

/// How a fake kubelet answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a valid body.
    Ok,
    /// 200 with this body.
    Body(&'static str),
    /// 200 with the valid body gzip-compressed (when the client asked for gzip).
    Gzip,
    /// Accepts the request and never answers.
    Hang,
    /// Answers with the valid body after this delay.
    Slow(Duration),
    /// 200 with a body of this many bytes.
    Huge(usize),
    /// 200 with a gzip body that inflates to this many bytes (a small answer on the wire).
    HugeGzip(usize),
    /// This status with this body.
    Status(u16, &'static str),
}

/// What a fake kubelet saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub accepts: AtomicUsize,
    /// HTTP requests received.
    pub requests: AtomicUsize,
    /// `Authorization` header of each request (`None` when absent).
    pub authorization: Mutex<Vec<Option<String>>>,
    /// `Accept-Encoding` header of each request.
    pub accept_encoding: Mutex<Vec<Option<String>>>,
    /// Request paths.
    pub paths: Mutex<Vec<String>>,
    /// Global request order: the value of the shared sequence counter when each request arrived.
    pub sequence: Mutex<Vec<usize>>,
}

/// A running fake kubelet; its listener is aborted on drop.
pub struct FakeKubelet {
    /// The address it listens on (`127.x.y.z:port`).
    pub addr: SocketAddr,
    /// What it saw.
    pub seen: Arc<Seen>,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

/// A `BatchSink` that records what it receives.
#[derive(Debug, Default)]
pub struct RecordingSink {
    /// Node names of accepted batches, in arrival order.
    pub accepted: Mutex<Vec<String>>,
    /// The batches themselves, by node.
    pub batches: Mutex<BTreeMap<String, Vec<NodeBatch<'static>>>>,
    /// Nodes forgotten.
    pub forgotten: Mutex<Vec<String>>,
    /// Every call in order: `accept:<node>` or `forget:<node>`.
    pub events: Mutex<Vec<String>>,
}

/// A small valid kubelet body (node and one container) with sample timestamps.
pub const KUBELET_BODY: &str = "\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web-1\"} 12.5 1750705768415
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web-1\"} 1.048576e+07 1750705768415
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web-1\"} 1.7507e+09 1750705768415
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 1234.5 1750705768415
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 2.097152e+09 1750705768415
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
";

/// The rustls crypto provider is chosen explicitly everywhere, but install the process default once as well.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The fake-node loopback address for index `i` (test-hosts.md §1), offset by `base` to keep tests apart.
pub fn node_ip(base: u8, i: u32) -> Ipv4Addr {
    let [_, _, c, d] = (i + 1).to_be_bytes();
    Ipv4Addr::new(127, base, c, d)
}

/// A target for a node called `name` at `addr`, path `/metrics/resource`, Ready.
pub fn target(name: &str, addr: SocketAddr) -> ScrapeTarget {
    ScrapeTarget {
        node: Arc::from(name),
        host: addr.ip().to_string(),
        port: addr.port(),
        path: "/metrics/resource".to_owned(),
        ready: true,
    }
}

/// A node called `name` scraped at `addr`.
pub fn node(name: &str, addr: SocketAddr) -> NodeInfo {
    NodeInfo {
        name: Arc::from(name),
        labels: Arc::default(),
        target: Some(target(name, addr)),
    }
}

// === impl TestCa ===

impl TestCa {
    /// A fresh CA with the given common name.
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            pem: cert.pem().into_bytes(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A rustls server config with a certificate for `ip` signed by this CA.
    pub fn server_config(&self, ip: IpAddr) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("generate leaf key");
        let mut params = CertificateParams::new(vec![ip.to_string()]).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "fake-kubelet");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        Arc::new(config)
    }
}

// === impl FakeKubelet ===

impl FakeKubelet {
    /// Starts a fake kubelet on `ip` (ephemeral port) with a certificate from `ca`. `sequence` is shared between
    /// fakes to record the global order of requests.
    pub async fn start(
        ip: Ipv4Addr,
        ca: &TestCa,
        mode: Mode,
        sequence: Arc<AtomicUsize>,
    ) -> FakeKubelet {
        Self::start_on(SocketAddr::from((ip, 0)), ca, mode, sequence).await
    }

    /// Like [`FakeKubelet::start`], on an exact address (to restart a kubelet on the same port).
    pub async fn start_on(
        addr: SocketAddr,
        ca: &TestCa,
        mode: Mode,
        sequence: Arc<AtomicUsize>,
    ) -> FakeKubelet {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(addr.ip()));
        Self::listen(addr, Some(acceptor), mode, sequence).await
    }

    /// A fake kubelet on `ip` whose certificate names `san` instead (a certificate without the dialled IP).
    pub async fn start_with_san(ip: Ipv4Addr, san: IpAddr, ca: &TestCa, mode: Mode) -> FakeKubelet {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(san));
        let addr = SocketAddr::from((ip, 0));
        Self::listen(addr, Some(acceptor), mode, Arc::new(AtomicUsize::new(0))).await
    }

    /// A fake kubelet serving plain HTTP (the deprecated read-only-port style) on `ip`.
    pub async fn start_plain(ip: Ipv4Addr, mode: Mode) -> FakeKubelet {
        let addr = SocketAddr::from((ip, 0));
        Self::listen(addr, None, mode, Arc::new(AtomicUsize::new(0))).await
    }

    async fn listen(
        addr: SocketAddr,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        mode: Mode,
        sequence: Arc<AtomicUsize>,
    ) -> FakeKubelet {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind fake kubelet");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Seen::default());
        let mode = Arc::new(Mutex::new(mode));
        let task = tokio::spawn(serve(
            listener,
            acceptor,
            seen.clone(),
            mode.clone(),
            sequence,
        ));
        FakeKubelet {
            addr,
            seen,
            mode,
            task,
        }
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode lock") = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.seen.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    seen: Arc<Seen>,
    mode: Arc<Mutex<Mode>>,
    sequence: Arc<AtomicUsize>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        seen.accepts.fetch_add(1, Ordering::SeqCst);
        let acceptor = acceptor.clone();
        let (seen, mode, sequence) = (seen.clone(), mode.clone(), sequence.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| {
                answer(request, seen.clone(), mode.clone(), sequence.clone())
            });
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(tcp), service).await,
            };
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    seen: Arc<Seen>,
    mode: Arc<Mutex<Mode>>,
    sequence: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    seen.authorization
        .lock()
        .expect("lock")
        .push(header(http::header::AUTHORIZATION));
    let accept_encoding = header(http::header::ACCEPT_ENCODING);
    seen.accept_encoding
        .lock()
        .expect("lock")
        .push(accept_encoding.clone());
    seen.paths
        .lock()
        .expect("lock")
        .push(request.uri().path().to_owned());
    seen.sequence
        .lock()
        .expect("lock")
        .push(sequence.fetch_add(1, Ordering::SeqCst));
    let mode = mode.lock().expect("lock").clone();
    let response = match mode {
        Mode::Ok => Response::new(Full::new(Bytes::from_static(KUBELET_BODY.as_bytes()))),
        Mode::Gzip
            if accept_encoding
                .as_deref()
                .is_some_and(|v| v.contains("gzip")) =>
        {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(KUBELET_BODY.as_bytes()).expect("gzip");
            let body = encoder.finish().expect("gzip");
            Response::builder()
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        }
        Mode::Gzip => Response::new(Full::new(Bytes::from_static(KUBELET_BODY.as_bytes()))),
        Mode::Hang => {
            // Long enough to outlast any test; the task is aborted when the fake is dropped.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Full::new(Bytes::new()))
        }
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Response::new(Full::new(Bytes::from_static(KUBELET_BODY.as_bytes())))
        }
        Mode::Body(body) => Response::new(Full::new(Bytes::from_static(body.as_bytes()))),
        Mode::HugeGzip(bytes) => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&vec![b'#'; bytes]).expect("gzip");
            let body = encoder.finish().expect("gzip");
            Response::builder()
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        }
        Mode::Huge(bytes) => Response::new(Full::new(Bytes::from(vec![b'#'; bytes]))),
        Mode::Status(status, body) => Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("response"),
    };
    Ok(response)
}

// === impl RecordingSink ===

impl RecordingSink {
    /// Accepted batches so far, per node.
    pub fn count(&self, node: &str) -> usize {
        self.batches
            .lock()
            .expect("lock")
            .get(node)
            .map_or(0, Vec::len)
    }

    /// Accepted batches so far, all nodes.
    pub fn total(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }

    /// The order in which nodes were accepted.
    pub fn order(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }
}

impl BatchSink for RecordingSink {
    fn accept(&self, node: &Arc<str>, batch: NodeBatch<'_>) {
        self.accepted.lock().expect("lock").push(node.to_string());
        self.events
            .lock()
            .expect("lock")
            .push(format!("accept:{node}"));
        self.batches
            .lock()
            .expect("lock")
            .entry(node.to_string())
            .or_default()
            .push(batch.into_owned());
    }

    fn forget(&self, node: &str) {
        self.forgotten.lock().expect("lock").push(node.to_owned());
        self.events
            .lock()
            .expect("lock")
            .push(format!("forget:{node}"));
    }
}
