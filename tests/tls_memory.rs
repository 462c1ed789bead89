//! Memory held per idle kept-alive kubelet connection: tokio-rustls's buffered client against
//! [`scrape::tls`]'s unbuffered one, as process RSS growth over `CONNECTIONS` connections that each completed one
//! HTTP exchange and stay open, as they sit in the kubelet client's pool between scrapes.
//!
//! Ignored because it opens two thousand connections per client; run it with
//! `cargo test --test tls_memory -- --ignored --nocapture`. Each client runs in a child process of its own (this
//! binary re-run on [`memory_child`]) and the server in a third, so that neither the other client's freed pages
//! nor the server's side of the connections count in a measurement. The allocator is the server binary's
//! (mimalloc, unless built with `--no-default-features`, which measures glibc malloc instead).
#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use resource_metrics_server::scrape::{http1, tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections kept open per client: enough that per-connection costs dominate allocator and page noise.
const CONNECTIONS: usize = 2_000;

/// Connections opened and closed before measuring, so that one-off costs (crypto tables, runtime, the
/// allocator's first segments, the reused HTTP buffers) are paid already.
const WARM_UP: usize = 50;

/// Response body sizes measured: a gzip-compressed 70-pod kubelet body (what kubelets send us, one TLS record), and
/// two full 16 KiB records (an uncompressed body: every buffer has seen a maximum-size record).
const BODY_BYTES: [usize; 2] = [4_400, 32 << 10];

/// Environment variables by which the parent tells a child what to be.
const ROLE: &str = "TLS_MEMORY_ROLE";
const SERVER_CERT: &str = "TLS_MEMORY_SERVER_CERT";
const SERVER_KEY: &str = "TLS_MEMORY_SERVER_KEY";
const CA_CERT: &str = "TLS_MEMORY_CA_CERT";
const SERVER_ADDR: &str = "TLS_MEMORY_SERVER_ADDR";
const BODY: &str = "TLS_MEMORY_BODY_BYTES";

/// The two clients measured.
const CLIENTS: [&str; 2] = ["tokio-rustls", "unbuffered"];

/// One request and the size of its answer's body.
struct Exchange<'a> {
    request: &'a [u8],
    body_bytes: usize,
}

/// A connection as the kubelet client pools it.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A child process killed when dropped, so a failing parent leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measured on 2026-11-27 (debug build, loopback, TLS 1.3), RSS growth per idle connection, tokio-rustls →
/// unbuffered: with mimalloc 12.9 → 4.7 KB after a 4,400-byte body and 25.3 → 4.7 KB after a 32 KiB one; with
/// glibc malloc 8.6 → 4.5 KB and 30.4 → 4.5 KB. tokio-rustls keeps its deframer buffer at the size the last read
/// left it (4 KiB beyond the last record) until the next read; the unbuffered client keeps nothing after an
/// exchange, so its cost no longer depends on the body.
#[test]
#[ignore = "opens 2 × 2,000 TLS connections in child processes; run with --ignored --nocapture"]
fn unbuffered_tls_holds_less_memory_per_idle_connection_than_tokio_rustls() {
    let (ca_pem, cert_pem, key_pem) = certificates();
    let mut server = KillOnDrop(
        child("server")
            .env(SERVER_CERT, &cert_pem)
            .env(SERVER_KEY, &key_pem)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn server"),
    );
    let stdout = server.0.stdout.take().expect("server stdout");
    let addr = marked_line(BufReader::new(stdout), "LISTENING").expect("server address");
    for body in BODY_BYTES {
        let per_connection = CLIENTS.map(|client| {
            let output = child(client)
                .env(SERVER_ADDR, &addr)
                .env(CA_CERT, &ca_pem)
                .env(BODY, body.to_string())
                .output()
                .expect("run client");
            assert!(output.status.success(), "{client} client failed");
            let line = marked_line(&output.stdout[..], "MEASURED").expect("client result");
            let kib: Vec<u64> = line
                .split_whitespace()
                .map(|v| v.parse().expect("KiB"))
                .collect();
            let [before, after] = kib[..] else {
                panic!("unexpected result line {line:?}")
            };
            let bytes = (after.saturating_sub(before) * 1024) as f64 / CONNECTIONS as f64;
            println!(
                "{body:>6}-byte body, {client:>12}: VmRSS {before} KiB → {after} KiB over {CONNECTIONS} idle \
                 connections: {bytes:.0} bytes each"
            );
            bytes
        });
        assert!(
            per_connection[1] < per_connection[0],
            "the unbuffered client holds less per idle connection: {per_connection:?}"
        );
    }
}

/// The body of each child process; does nothing when run as an ordinary test.
#[test]
#[ignore = "a child process of the memory measurement"]
fn memory_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match role.as_str() {
        "server" => runtime.block_on(serve()),
        client => runtime.block_on(measure(client)),
    }
}

// === parent ===

/// This test binary, re-run on [`memory_child`] as `role`.
fn child(role: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["memory_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// What follows `marker` on the first line of `output` holding it (libtest may have begun the line with the test's
/// name).
fn marked_line(output: impl Read, marker: &str) -> Option<String> {
    BufReader::new(output)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| Some(line.split_once(marker)?.1.trim().to_owned()))
}

/// (CA certificate, server certificate for 127.0.0.1, server key), PEM.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("sign server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

// === server child ===

/// Answers `GET /<n>` on every connection with an `n`-byte body, keeping connections open, until the parent goes
/// away (its end of our stdin closes) or kills us.
async fn serve() {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let var = |name| std::env::var(name).expect("certificate from the parent");
    let chain = CertificateDer::pem_slice_iter(var(SERVER_CERT).as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_slice(var(SERVER_KEY).as_bytes()).expect("server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    println!("LISTENING {}", listener.local_addr().expect("local addr"));
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
                if request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let response = response(&request);
                    request.clear();
                    if tls.write_all(&response).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// The answer to `request` (`GET /<n> ...`): 200 with an `n`-byte body.
fn response(request: &[u8]) -> Vec<u8> {
    let bytes: usize = std::str::from_utf8(request)
        .ok()
        .and_then(|r| r.strip_prefix("GET /")?.split(' ').next()?.parse().ok())
        .expect("GET /<n>");
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bytes}\r\n\r\n")
            .into_bytes();
    response.resize(response.len() + bytes, b'#');
    response
}

// === client children ===

/// Opens `CONNECTIONS` connections with `client`, one exchange each, keeps them, and prints VmRSS before and after.
async fn measure(client: &str) {
    let body_bytes: usize = std::env::var(BODY)
        .expect("body size from the parent")
        .parse()
        .expect("body size");
    let request = format!("GET /{body_bytes} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let exchange = Exchange {
        request: request.as_bytes(),
        body_bytes,
    };
    let addr: SocketAddr = std::env::var(SERVER_ADDR)
        .expect("server address from the parent")
        .parse()
        .expect("socket address");
    let ca = std::env::var(CA_CERT).expect("CA from the parent");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection a full handshake, as the first one to each of thousands of kubelets is.
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let (mut scratch, mut body) = (Vec::new(), Vec::new());
    for _ in 0..WARM_UP {
        drop(open(client, addr, &config, &exchange, &mut scratch, &mut body).await);
    }
    let mut kept: Vec<Box<dyn Stream>> = Vec::with_capacity(CONNECTIONS);
    let before = vm_rss_kib();
    for _ in 0..CONNECTIONS {
        kept.push(open(client, addr, &config, &exchange, &mut scratch, &mut body).await);
    }
    let after = vm_rss_kib();
    println!("MEASURED {before} {after}");
    drop(kept);
}

/// A connection by `client` that completed one exchange and may be kept alive.
async fn open(
    client: &str,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    exchange: &Exchange<'_>,
    scratch: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("127.0.0.1").expect("IP server name");
    let mut stream: Box<dyn Stream> = match client {
        "tokio-rustls" => Box::new(
            tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .expect("tokio-rustls handshake"),
        ),
        "unbuffered" => Box::new(
            tls::connect(config.clone(), name, tcp)
                .await
                .expect("unbuffered handshake"),
        ),
        other => panic!("unknown client {other}"),
    };
    let head = http1::get(
        &mut stream,
        exchange.request,
        scratch,
        body,
        exchange.body_bytes,
    )
    .await
    .expect("exchange");
    assert!(head.status == 200 && head.keep_alive && body.len() == exchange.body_bytes);
    stream
}

/// This process's resident set, KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}
