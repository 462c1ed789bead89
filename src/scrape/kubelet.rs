//! `KubeletClient`: one HTTPS `GET https://host:port/path` per node scrape over a kept-alive connection, with a
//! bearer token, an optional client certificate, gzip, a per-request deadline and a hard body cap.
//!
//! Connections are kept per node (the scraper never overlaps two scrapes of one node, so one connection per kubelet
//! is enough) in a small pool keyed by node name; idle ones are dropped by [`KubeletClient::prune_idle`]. The
//! exchange itself is [`super::http1`], run inline on the scrape worker with its reusable [`BodyBuffer`], over
//! [`super::tls`]'s unbuffered TLS stream, so an idle connection is only a socket and its TLS state. A gzip answer
//! is inflated into one buffer per thread (not per worker) and handed to the caller's closure without an await in
//! between, so the inflated body and the inflater stay in that core's cache from one node to the next. Every failure
//! is classified (connect, TLS, HTTP, timeout) and names the address dialled, which is what operators debugging
//! x509 and 401/403 problems need. This module knows nothing of scheduling or decoding.

use foldhash::HashMap;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Error;
use super::gunzip::{Gunzip, GunzipError};
use super::http1::{self, HttpError};
use super::tls;
use crate::cluster::ScrapeTarget;

/// Default `--kubelet-max-body-bytes`-style cap: a 110-pod kubelet body is ~100 KiB, so 64 MiB only stops a
/// misbehaving endpoint from exhausting memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// How often a token file is re-read: projected service-account tokens rotate (client-go re-reads every minute).
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// How much of a non-200 body is kept in the error: enough for the kubelet's `Forbidden (user=…, verb=…)` line.
const ERROR_BODY_BYTES: usize = 200;

/// A thread's inflated body is released after an answer larger than this (one huge body must not pin memory).
const RETAINED_INFLATED_BYTES: usize = 4 << 20;

thread_local! {
    /// This thread's inflater and inflated body, reused by every scrape that runs on the thread (see the module
    /// docs). Borrowed only for the synchronous inflate-and-use step of [`KubeletClient::fetch`].
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater::default());
}

/// An inflater and its output buffer (see [`Gunzip::decompress_reusing`]: its length is that of the longest body
/// inflated into it, so that the next body's output need not be zeroed first).
#[derive(Debug, Default)]
struct Inflater {
    gunzip: Gunzip,
    body: Vec<u8>,
}

/// `User-Agent` sent to kubelets, so their logs show who is asking.
const USER_AGENT_VALUE: &str = concat!("resource-metrics-server/", env!("CARGO_PKG_VERSION"));

/// Where the bearer token sent to kubelets comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// No `Authorization` header (client certificate only, or anonymous).
    None,
    /// A fixed token (from a kubeconfig).
    Static(String),
    /// A token file re-read every minute (the in-cluster service-account token).
    File(PathBuf),
}

/// How kubelet serving certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Verify against these CA certificates (DER): `--kubelet-certificate-authority` or the cluster CA.
    Cas(Vec<CertificateDer<'static>>),
    /// Accept any kubelet serving certificate (`--kubelet-insecure-tls`). For test clusters only: a man in the
    /// middle could read the bearer token.
    InsecureSkipVerify,
    /// Plain HTTP without credentials (`--deprecated-kubelet-completely-insecure`, usually with port 10255).
    PlainHttp,
}

/// A client certificate presented to kubelets.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Certificate chain, leaf first, PEM.
    pub cert_pem: Vec<u8>,
    /// The leaf's private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ClientIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// Everything needed to build a [`KubeletClient`]; no `kube` types.
#[derive(Debug, Clone)]
pub struct KubeletClientConfig {
    /// How kubelet serving certificates are checked (or plain HTTP).
    pub trust: ServerTrust,
    /// PEM client certificate chain and PEM private key presented to kubelets (ignored for plain HTTP).
    pub client_identity: Option<ClientIdentity>,
    /// The bearer token (never sent over plain HTTP).
    pub token: TokenSource,
    /// Deadline of one whole scrape (connect, TLS, request, body): `--kubelet-request-timeout`.
    pub request_timeout: Duration,
    /// Hard cap on the (decompressed) body, in bytes; larger bodies fail with `body_too_large`.
    pub max_body_bytes: usize,
    /// Pooled connections unused for longer than this are closed by [`KubeletClient::prune_idle`].
    pub idle_timeout: Duration,
    /// At most this many idle connections are kept; beyond it a connection is closed after its scrape. Keeps the
    /// server under its file-descriptor limit when it faces more kubelets than it may hold sockets (each idle
    /// connection is one descriptor). `usize::MAX` keeps one per kubelet.
    pub max_idle_connections: usize,
}

/// Why a [`KubeletClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The CA bundle holds a block that is not a valid certificate.
    #[error("invalid kubelet CA certificate: {0}")]
    InvalidCa(String),
    /// No CA is configured and verification is on.
    #[error(
        "no CA to verify kubelet serving certificates: set --kubelet-certificate-authority, give the kubeconfig a \
         CA, or (test clusters only) --kubelet-insecure-tls"
    )]
    NoTrustAnchors,
    /// The client certificate or key does not parse or does not match.
    #[error("invalid kubelet client certificate or key: {0}")]
    InvalidClientIdentity(String),
    /// rustls rejected the configuration.
    #[error("kubelet TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// An HTTPS client for kubelet resource-metrics endpoints. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct KubeletClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for plain HTTP.
    tls: Option<Arc<ClientConfig>>,
    token: Token,
    request_timeout: Duration,
    max_body_bytes: usize,
    idle_timeout: Duration,
    max_idle_connections: usize,
    pool: Mutex<HashMap<Arc<str>, Pooled>>,
}

/// A kept-alive connection's byte stream: TLS over TCP, or plain TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One idle kept-alive connection to a node's kubelet.
struct Pooled {
    host: String,
    port: u16,
    stream: Box<dyn Stream>,
    last_used: Instant,
}

/// A connection checked out for one scrape; closed when dropped unless it goes back to the pool.
struct Checkout {
    /// Host and port dialled, kept with the connection so a changed target is noticed without re-allocating.
    host: String,
    port: u16,
    stream: Box<dyn Stream>,
    reused: bool,
}

struct Token {
    source: TokenSource,
    /// (when read, header). A small file read under a std mutex at most once a minute; never held across `.await`.
    cached: Mutex<Option<(Instant, Option<HeaderValue>)>>,
}

/// Accepts any server certificate but still checks handshake signatures (`--kubelet-insecure-tls`; test only).
///
/// Public so the crate's integration tests reuse it instead of keeping their own copy.
#[derive(Debug)]
pub struct AcceptAnyServerCert(Arc<CryptoProvider>);

/// A scrape worker's reusable buffers: the body as received (compressed or not), the read scratch and the request
/// head. Kept across scrapes so a steady state allocates nothing per body.
#[derive(Debug, Default)]
pub struct BodyBuffer {
    wire: Vec<u8>,
    scratch: Vec<u8>,
    request: Vec<u8>,
}

// === impl KubeletClient ===

impl KubeletClient {
    /// Builds the TLS configuration and an empty pool. Does no I/O beyond what is already in `config`.
    ///
    /// # Errors
    /// [`BuildError`] when the CA bundle, client identity or TLS settings are unusable.
    pub fn new(config: KubeletClientConfig) -> Result<Self, BuildError> {
        let (tls, token) = match &config.trust {
            // metrics-server's completely-insecure mode is anonymous: never send a token in clear text.
            ServerTrust::PlainHttp => (None, TokenSource::None),
            _ => (Some(Arc::new(tls_config(&config)?)), config.token),
        };
        Ok(KubeletClient {
            inner: Arc::new(Inner {
                tls,
                token: Token {
                    source: token,
                    cached: Mutex::new(None),
                },
                request_timeout: config.request_timeout,
                max_body_bytes: config.max_body_bytes,
                idle_timeout: config.idle_timeout,
                max_idle_connections: config.max_idle_connections,
                pool: Mutex::new(HashMap::default()),
            }),
        })
    }

    /// Fetches `target`'s resource metrics within the request timeout and returns what `use_body` makes of the
    /// (decompressed) body.
    ///
    /// `buffer` is the caller's reusable buffer. `use_body` runs synchronously on the body, which lives only for the
    /// call (see the module docs). On success the connection goes back to the pool.
    ///
    /// # Errors
    /// [`Error`] naming the address dialled: timeout, connect, TLS, HTTP, non-200 status (with the start of the
    /// body), body over the cap, or a corrupt gzip stream.
    pub async fn fetch<T>(
        &self,
        target: &ScrapeTarget,
        buffer: &mut BodyBuffer,
        use_body: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let gzip = match tokio::time::timeout(
            self.inner.request_timeout,
            self.fetch_inner(target, buffer),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Timeout {
                    address: address(target),
                    elapsed: started.elapsed(),
                });
            }
        };
        if !gzip {
            return Ok(use_body(&buffer.wire));
        }
        let limit = self.inner.max_body_bytes;
        let inflate = |inflater: &mut Inflater| {
            let inflated =
                inflater
                    .gunzip
                    .decompress_reusing(&buffer.wire, &mut inflater.body, limit);
            let result = match inflated {
                Ok(n) => Ok(use_body(inflater.body.get(..n).unwrap_or_default())),
                Err(error) => Err(gunzip_error(target, error, limit)),
            };
            if inflater.body.capacity() > RETAINED_INFLATED_BYTES {
                inflater.body = Vec::new();
            }
            result
        };
        INFLATER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut inflater) => inflate(&mut inflater),
            // `use_body` fetched again on this thread (nothing does today): inflate into a buffer of its own.
            Err(_) => inflate(&mut Inflater::default()),
        })
    }

    /// Closes the pooled connection of `node`, if any (the node left).
    pub fn forget(&self, node: &str) {
        drop(self.pool().remove(node));
    }

    /// Closes pooled connections idle for longer than the idle timeout; returns how many remain.
    pub fn prune_idle(&self) -> usize {
        let mut pool = self.pool();
        let idle_timeout = self.inner.idle_timeout;
        pool.retain(|_, p| p.last_used.elapsed() <= idle_timeout);
        pool.len()
    }

    /// The exchange: leaves the body as received in `buffer.wire` and returns whether it is gzip-encoded.
    async fn fetch_inner(
        &self,
        target: &ScrapeTarget,
        buffer: &mut BodyBuffer,
    ) -> Result<bool, Error> {
        self.request(target, &mut buffer.request)?;
        let limit = self.inner.max_body_bytes;
        let mut conn = match self.checkout(target) {
            Some(conn) => conn,
            None => self.connect(target).await?,
        };
        let BodyBuffer {
            wire,
            scratch,
            request,
            ..
        } = buffer;
        let exchanged = match http1::get(&mut conn.stream, request, scratch, wire, limit).await {
            // A kept-alive connection may have been closed by the kubelet just before we used it: retry once on a
            // fresh connection, within the same deadline.
            Err(HttpError::Stale(_)) if conn.reused => {
                conn = self.connect(target).await?;
                http1::get(&mut conn.stream, request, scratch, wire, limit).await
            }
            other => other,
        };
        let head = exchanged.map_err(|error| match error {
            HttpError::BodyTooLarge(_) => Error::BodyTooLarge {
                address: address(target),
                limit,
            },
            source => Error::Http {
                address: address(target),
                source,
            },
        })?;
        if head.status != 200 {
            return Err(status_error(target, head.status, head.gzip, &buffer.wire));
        }
        if head.keep_alive {
            self.checkin(target, conn);
        }
        Ok(head.gzip)
    }

    /// Writes the request head for `target` into `out`.
    fn request(&self, target: &ScrapeTarget, out: &mut Vec<u8>) -> Result<(), Error> {
        // Header injection and invalid request targets are refused, as an HTTP library would.
        let visible = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
        if !visible(&target.path) || !target.path.starts_with('/') || !visible(&target.host) {
            return Err(Error::InvalidTarget {
                address: address(target),
            });
        }
        out.clear();
        let mut line = |parts: &[&[u8]]| {
            parts.iter().for_each(|part| out.extend_from_slice(part));
            out.extend_from_slice(b"\r\n");
        };
        line(&[b"GET ", target.path.as_bytes(), b" HTTP/1.1"]);
        line(&[b"Host: ", address(target).as_bytes()]);
        line(&[b"User-Agent: ", USER_AGENT_VALUE.as_bytes()]);
        line(&[b"Accept: text/plain;version=0.0.4"]);
        line(&[b"Accept-Encoding: gzip"]);
        if let Some(token) = self.inner.token.header(Instant::now()) {
            line(&[b"Authorization: ", token.as_bytes()]);
        }
        line(&[]);
        Ok(())
    }

    async fn connect(&self, target: &ScrapeTarget) -> Result<Checkout, Error> {
        let addr = || address(target);
        let connect_error = |source| Error::Connect {
            address: addr(),
            source,
        };
        // An IP address (the usual node address) is dialled directly; only a DNS name needs a resolver thread.
        let tcp = match target.host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, target.port)).await,
            Err(_) => TcpStream::connect((target.host.as_str(), target.port)).await,
        }
        .map_err(connect_error)?;
        // Small request/response exchanges: do not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.inner.tls {
            None => Box::new(tcp),
            Some(config) => {
                let server_name = ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::InvalidTarget { address: addr() })?;
                let tls = tls::connect(config.clone(), server_name, tcp)
                    .await
                    .map_err(|source| Error::Tls {
                        address: addr(),
                        source,
                    })?;
                Box::new(tls)
            }
        };
        Ok(Checkout {
            host: target.host.clone(),
            port: target.port,
            stream,
            reused: false,
        })
    }

    fn checkout(&self, target: &ScrapeTarget) -> Option<Checkout> {
        let pooled = self.pool().remove(&*target.node)?;
        if pooled.host != target.host || pooled.port != target.port {
            return None;
        }
        Some(Checkout {
            host: pooled.host,
            port: pooled.port,
            stream: pooled.stream,
            reused: true,
        })
    }

    fn checkin(&self, target: &ScrapeTarget, conn: Checkout) {
        let mut pool = self.pool();
        if pool.len() >= self.inner.max_idle_connections && !pool.contains_key(&*target.node) {
            // Over the idle-connection budget: `conn` is dropped here, which closes it.
            return;
        }
        let pooled = Pooled {
            host: conn.host,
            port: conn.port,
            stream: conn.stream,
            last_used: Instant::now(),
        };
        pool.insert(target.node.clone(), pooled);
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Pooled>> {
        // Every pool operation is a single insert/remove/retain: a poisoned pool is still consistent.
        self.inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .finish_non_exhaustive()
    }
}

// === impl Token ===

impl Token {
    /// The `Authorization` value at `now` (re-reading a token file at most once per [`TOKEN_REFRESH`]).
    fn header(&self, now: Instant) -> Option<HeaderValue> {
        let path = match &self.source {
            TokenSource::None => return None,
            TokenSource::Static(token) => return bearer(token),
            TokenSource::File(path) => path,
        };
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read_at, header)) = cached.as_ref()
            && now.saturating_duration_since(*read_at) < TOKEN_REFRESH
        {
            return header.clone();
        }
        let header = match std::fs::read_to_string(path) {
            Ok(token) => bearer(token.trim()),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the kubelet bearer token file");
                // Keep the last good token rather than scraping anonymously.
                cached.as_ref().and_then(|(_, h)| h.clone())
            }
        };
        *cached = Some((now, header.clone()));
        header
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    if token.is_empty() {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

// === impl AcceptAnyServerCert ===

impl AcceptAnyServerCert {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        AcceptAnyServerCert(provider)
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses a PEM bundle into DER certificates (for [`ServerTrust::Cas`]).
///
/// # Errors
/// [`BuildError::InvalidCa`] when a block does not parse, or when there is no certificate at all.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::InvalidCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(BuildError::InvalidCa(
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    Ok(certs)
}

/// `host:port`, with IPv6 literals bracketed (Go's `net.JoinHostPort`).
pub fn address(target: &ScrapeTarget) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

fn tls_config(config: &KubeletClientConfig) -> Result<ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.trust {
        ServerTrust::InsecureSkipVerify | ServerTrust::PlainHttp => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider))),
        ServerTrust::Cas(cas) => {
            let mut roots = RootCertStore::empty();
            for cert in cas {
                roots
                    .add(cert.clone())
                    .map_err(|e| BuildError::InvalidCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(BuildError::NoTrustAnchors);
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut tls = match &config.client_identity {
        Some(ClientIdentity { cert_pem, key_pem }) => {
            let invalid =
                |e: &dyn std::fmt::Display| BuildError::InvalidClientIdentity(e.to_string());
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// The scrape error for a body that would not inflate.
fn gunzip_error(target: &ScrapeTarget, error: GunzipError, limit: usize) -> Error {
    match error {
        GunzipError::TooLarge(_) => Error::BodyTooLarge {
            address: address(target),
            limit,
        },
        error @ GunzipError::Invalid(_) => Error::Decompress {
            address: address(target),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        },
    }
}

/// The error for a non-200 answer, with the start of its body: the kubelet's reason (401/403 messages matter to
/// operators). Best effort: an undecodable body gives what could be decoded.
fn status_error(target: &ScrapeTarget, status: u16, gzip: bool, wire: &[u8]) -> Error {
    let mut inflated = Vec::new();
    let raw = if gzip {
        // A rare path: a fresh inflater, capped at the snippet's length.
        let _ = Gunzip::default().decompress(wire, &mut inflated, ERROR_BODY_BYTES);
        &inflated[..]
    } else {
        wire
    };
    let snippet = &raw[..raw.len().min(ERROR_BODY_BYTES)];
    let body = String::from_utf8_lossy(snippet).trim().to_owned();
    Error::Status {
        address: address(target),
        status,
        body,
    }
}

// === impl BodyBuffer ===

impl BodyBuffer {
    /// The body of the last exchange as received (still compressed when it was gzip-encoded).
    pub fn received(&self) -> &[u8] {
        &self.wire
    }

    /// Releases the buffers when either grew past `bytes` (one huge answer must not pin memory).
    pub fn shrink_past(&mut self, bytes: usize) {
        if self.wire.capacity() > bytes {
            self.wire = Vec::new();
        }
        if self.scratch.capacity() > bytes {
            self.scratch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

    use super::*;

    fn target(host: &str, port: u16) -> ScrapeTarget {
        ScrapeTarget {
            node: Arc::from("n"),
            host: host.to_owned(),
            port,
            path: "/metrics/resource".to_owned(),
            ready: true,
        }
    }

    #[test]
    fn addresses_join_host_and_port_like_go() {
        struct Case {
            name: &'static str,
            host: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "IPv4",
                host: "10.0.0.1",
                want: "10.0.0.1:10250",
            },
            Case {
                name: "IPv6 is bracketed",
                host: "fd00::1",
                want: "[fd00::1]:10250",
            },
            Case {
                name: "DNS name",
                host: "node-a.example",
                want: "node-a.example:10250",
            },
        ];
        for case in cases {
            assert_eq!(
                address(&target(case.host, 10250)),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_pem_bundle_without_certificates_is_rejected() {
        assert!(matches!(
            certificates_from_pem(b"not pem"),
            Err(BuildError::InvalidCa(_))
        ));
    }

    #[test]
    fn a_token_file_is_re_read_after_a_minute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let token = Token {
            source: TokenSource::File(path.clone()),
            cached: Mutex::new(None),
        };
        let t0 = Instant::now();
        let at = |offset: Duration| {
            token
                .header(t0 + offset)
                .map(|h| h.to_str().expect("ascii").to_owned())
        };
        assert_eq!(at(Duration::ZERO).as_deref(), Some("Bearer first"));
        std::fs::write(&path, "second\n").expect("write");
        let within = at(Duration::from_secs(59));
        assert_eq!(
            within.as_deref(),
            Some("Bearer first"),
            "cached within the minute"
        );
        let after = at(TOKEN_REFRESH);
        assert_eq!(
            after.as_deref(),
            Some("Bearer second"),
            "re-read after a minute"
        );
        std::fs::remove_file(&path).expect("remove");
        let vanished = at(TOKEN_REFRESH * 2);
        assert_eq!(
            vanished.as_deref(),
            Some("Bearer second"),
            "a vanished file keeps the last token"
        );
    }
}
