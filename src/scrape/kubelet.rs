//! `KubeletClient`: one HTTPS `GET https://host:port/path` per node scrape over a kept-alive connection, with a
//! bearer token, an optional client certificate, gzip, a per-request deadline and a hard body cap.
//!
//! Connections are kept per node (the scraper never overlaps two scrapes of one node, so one connection per kubelet
//! is enough) in a small pool keyed by node name; idle ones are dropped by [`KubeletClient::prune_idle`]. We drive
//! hyper's HTTP/1.1 client connection directly rather than a generic pooled client so that every failure can be
//! classified (connect, TLS, HTTP, timeout) and name the address dialled, which is what operators debugging x509
//! and 401/403 problems need. This module knows nothing of scheduling or decoding.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, HOST, USER_AGENT,
};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Error;
use crate::cluster::ScrapeTarget;

/// Default `--kubelet-max-body-bytes`-style cap: a 110-pod kubelet body is ~100 KiB, so 64 MiB only stops a
/// misbehaving endpoint from exhausting memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// How often a token file is re-read: projected service-account tokens rotate (client-go re-reads every minute).
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// How much of a non-200 body is kept in the error: enough for the kubelet's `Forbidden (user=…, verb=…)` line.
const ERROR_BODY_BYTES: usize = 200;

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
    tls: Option<tokio_rustls::TlsConnector>,
    token: Token,
    request_timeout: Duration,
    max_body_bytes: usize,
    idle_timeout: Duration,
    max_idle_connections: usize,
    pool: Mutex<HashMap<Arc<str>, Pooled>>,
}

/// One idle kept-alive connection to a node's kubelet.
struct Pooled {
    host: String,
    port: u16,
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::AbortHandle,
    last_used: Instant,
}

/// A connection checked out for one scrape; the connection task is aborted unless it goes back to the pool.
struct Checkout {
    /// Host and port dialled, kept with the connection so a changed target is noticed without re-allocating.
    host: String,
    port: u16,
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: Driver,
    reused: bool,
}

/// The task driving one connection; aborted on drop unless disarmed (the connection went back to the pool).
struct Driver(Option<tokio::task::AbortHandle>);

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

/// A writer that refuses to grow `buf` past `limit` bytes.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    exceeded: bool,
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
            _ => {
                let tls = tls_config(&config)?;
                (
                    Some(tokio_rustls::TlsConnector::from(Arc::new(tls))),
                    config.token,
                )
            }
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
                pool: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Fetches `target`'s resource metrics into `body` (cleared first; decompressed), within the request timeout.
    ///
    /// `body` is the caller's reusable buffer. On success the connection goes back to the pool.
    ///
    /// # Errors
    /// [`Error`] naming the address dialled: timeout, connect, TLS, HTTP, non-200 status (with the start of the
    /// body), body over the cap, or a corrupt gzip stream.
    pub async fn fetch(&self, target: &ScrapeTarget, body: &mut Vec<u8>) -> Result<(), Error> {
        let started = Instant::now();
        match tokio::time::timeout(self.inner.request_timeout, self.fetch_inner(target, body)).await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                address: address(target),
                elapsed: started.elapsed(),
            }),
        }
    }

    /// Closes the pooled connection of `node`, if any (the node left).
    pub fn forget(&self, node: &str) {
        if let Some(pooled) = self.pool().remove(node) {
            pooled.driver.abort();
        }
    }

    /// Closes pooled connections idle for longer than the idle timeout; returns how many remain.
    pub fn prune_idle(&self) -> usize {
        let mut pool = self.pool();
        let idle_timeout = self.inner.idle_timeout;
        pool.retain(|_, p| {
            let keep = p.last_used.elapsed() <= idle_timeout && !p.sender.is_closed();
            if !keep {
                p.driver.abort();
            }
            keep
        });
        pool.len()
    }

    async fn fetch_inner(&self, target: &ScrapeTarget, body: &mut Vec<u8>) -> Result<(), Error> {
        let mut conn = match self.checkout(target) {
            Some(conn) => conn,
            None => self.connect(target).await?,
        };
        let response = match self.send(target, &mut conn).await {
            // A kept-alive connection may have been closed by the kubelet just before we used it: retry once on a
            // fresh connection, within the same deadline.
            Err(Error::Http { .. }) if conn.reused => {
                conn = self.connect(target).await?;
                self.send(target, &mut conn).await?
            }
            other => other?,
        };
        let status = response.status();
        let gzip = response
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if status != StatusCode::OK {
            return Err(self
                .status_error(target, status, gzip, response.into_body())
                .await);
        }
        if !gzip && declared.is_some_and(|len| len > self.inner.max_body_bytes as u64) {
            return Err(Error::BodyTooLarge {
                address: address(target),
                limit: self.inner.max_body_bytes,
            });
        }
        read_body(
            response.into_body(),
            gzip,
            body,
            self.inner.max_body_bytes,
            target,
        )
        .await?;
        self.checkin(target, conn);
        Ok(())
    }

    async fn send(
        &self,
        target: &ScrapeTarget,
        conn: &mut Checkout,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let request = self.request(target)?;
        let http = |source| Error::Http {
            address: address(target),
            source,
        };
        conn.sender.ready().await.map_err(http)?;
        conn.sender.send_request(request).await.map_err(http)
    }

    fn request(&self, target: &ScrapeTarget) -> Result<Request<Empty<Bytes>>, Error> {
        let mut builder = Request::get(target.path.as_str())
            .header(HOST, address(target))
            .header(ACCEPT, "text/plain;version=0.0.4")
            .header(ACCEPT_ENCODING, "gzip")
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(token) = self.inner.token.header(Instant::now()) {
            builder = builder.header(AUTHORIZATION, token);
        }
        builder
            .body(Empty::new())
            .map_err(|_| Error::InvalidTarget {
                address: address(target),
            })
    }

    async fn connect(&self, target: &ScrapeTarget) -> Result<Checkout, Error> {
        let addr = || address(target);
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| Error::Connect {
                address: addr(),
                source,
            })?;
        // Small request/response exchanges: do not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &self.inner.tls else {
            return handshake(target, tcp).await;
        };
        let server_name = ServerName::try_from(target.host.clone())
            .map_err(|_| Error::InvalidTarget { address: addr() })?;
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|source| Error::Tls {
                address: addr(),
                source,
            })?;
        handshake(target, tls).await
    }

    fn checkout(&self, target: &ScrapeTarget) -> Option<Checkout> {
        let pooled = self.pool().remove(&*target.node)?;
        if pooled.host != target.host || pooled.port != target.port || pooled.sender.is_closed() {
            pooled.driver.abort();
            return None;
        }
        Some(Checkout {
            host: pooled.host,
            port: pooled.port,
            sender: pooled.sender,
            driver: Driver(Some(pooled.driver)),
            reused: true,
        })
    }

    fn checkin(&self, target: &ScrapeTarget, conn: Checkout) {
        let mut pool = self.pool();
        if pool.len() >= self.inner.max_idle_connections && !pool.contains_key(&*target.node) {
            // Over the idle-connection budget: `conn` is dropped here, which closes it.
            return;
        }
        let Checkout {
            host,
            port,
            sender,
            mut driver,
            ..
        } = conn;
        let Some(driver) = driver.0.take() else {
            return;
        };
        let pooled = Pooled {
            host,
            port,
            sender,
            driver,
            last_used: Instant::now(),
        };
        if let Some(old) = pool.insert(target.node.clone(), pooled) {
            old.driver.abort();
        }
    }

    async fn status_error(
        &self,
        target: &ScrapeTarget,
        status: StatusCode,
        gzip: bool,
        incoming: hyper::body::Incoming,
    ) -> Error {
        // Best effort: the start of the body carries the kubelet's reason (401/403 messages matter to operators).
        let mut snippet = Vec::new();
        let _ = read_body(incoming, gzip, &mut snippet, ERROR_BODY_BYTES, target).await;
        snippet.truncate(ERROR_BODY_BYTES);
        let body = String::from_utf8_lossy(&snippet).trim().to_owned();
        Error::Status {
            address: address(target),
            status: status.as_u16(),
            body,
        }
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

// === impl Driver ===

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
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

/// Where body bytes go: straight into the capped buffer, or through a gzip decoder into it.
enum BodySink<'b, 'a> {
    Plain(&'b mut Capped<'a>),
    Gzip(Box<flate2::write::GzDecoder<&'b mut Capped<'a>>>),
}

impl BodySink<'_, '_> {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            BodySink::Plain(capped) => capped.write_all(data),
            BodySink::Gzip(decoder) => decoder.write_all(data),
        }
    }
}

// === impl Capped ===

impl Write for Capped<'_> {
    /// Takes as much as fits (so a truncated prefix is kept, e.g. for error snippets), then fails.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.buf.len());
        if room == 0 && !data.is_empty() {
            self.exceeded = true;
            return Err(std::io::Error::other("body exceeds the cap"));
        }
        let taken = room.min(data.len());
        self.buf.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

/// The HTTP/1.1 handshake over an established stream; the connection is driven by its own task.
async fn handshake<S>(target: &ScrapeTarget, stream: S) -> Result<Checkout, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| Error::Http {
            address: address(target),
            source,
        })?;
    let node = target.node.clone();
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::trace!(node = %node, %error, "kubelet connection closed");
        }
    })
    .abort_handle();
    Ok(Checkout {
        host: target.host.clone(),
        port: target.port,
        sender,
        driver: Driver(Some(driver)),
        reused: false,
    })
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

/// Reads a response body into `out` (cleared first), gunzipping when `gzip`, failing past `limit` bytes.
async fn read_body(
    mut incoming: hyper::body::Incoming,
    gzip: bool,
    out: &mut Vec<u8>,
    limit: usize,
    target: &ScrapeTarget,
) -> Result<(), Error> {
    out.clear();
    let mut wire_bytes = 0usize;
    let mut capped = Capped {
        buf: out,
        limit,
        exceeded: false,
    };
    let mut sink = if gzip {
        BodySink::Gzip(Box::new(flate2::write::GzDecoder::new(&mut capped)))
    } else {
        BodySink::Plain(&mut capped)
    };
    let too_large = || Error::BodyTooLarge {
        address: address(target),
        limit,
    };
    let mut result = Ok(());
    let mut wire_exceeded = false;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|source| Error::Http {
            address: address(target),
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        result = sink.write_all(&data);
        // Also bound the compressed stream: a gzip body that inflates to nothing must not stream forever.
        wire_bytes += data.len();
        if result.is_err() || wire_bytes > limit {
            wire_exceeded = wire_bytes > limit;
            break;
        }
    }
    if result.is_ok()
        && let BodySink::Gzip(decoder) = &mut sink
    {
        result = decoder.try_finish();
    }
    drop(sink);
    match result {
        _ if wire_exceeded => Err(too_large()),
        Ok(()) => Ok(()),
        Err(_) if capped.exceeded => Err(too_large()),
        Err(source) => Err(Error::Decompress {
            address: address(target),
            source,
        }),
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
    fn the_capped_writer_refuses_to_grow_past_its_limit() {
        let mut buf = Vec::new();
        let mut capped = Capped {
            buf: &mut buf,
            limit: 4,
            exceeded: false,
        };
        capped.write_all(b"abc").expect("under the limit fits");
        assert!(capped.write_all(b"def").is_err());
        assert!(capped.exceeded);
        assert_eq!(buf, b"abcd", "the prefix up to the limit is kept");
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
