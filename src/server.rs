//! The HTTPS listener: TLS accept loop, per-connection limits, the request pipeline (in-flight cap →
//! authentication → authorization → route) and graceful drain.
//!
//! Routes: `/livez`, `/readyz`, `/healthz` ([`Health`]), `/metrics` ([`SelfMetrics::render`]) and everything else to
//! [`Api::handle`]. HTTP types stop here: the API sees an [`ApiRequest`], auth sees [`Credentials`].
//!
//! Shutdown: when the signal fires, `/readyz` fails at once (its `shutdown` check reads the same signal); the
//! listener keeps accepting for `--shutdown-delay-duration` so endpoints and load balancers drop the pod first (the
//! apiserver's semantics), then closes; in-flight requests and open connections are drained (HTTP/1 finishes the
//! current response, HTTP/2 sends GOAWAY) for up to the grace period (max(10 s, shutdown delay)).
//!
//! This module must not compute metrics, decide authentication or authorization itself, or read storage.

mod first_byte;
mod health;
mod status;
pub mod tls;

pub use health::{Endpoint, Health, HealthResponse};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::api::{Api, ApiRequest};
use crate::auth::{self, Attributes, Authenticator, Authorizer, Credentials, Decision, UserInfo};
use crate::config::Config;
use crate::shutdown::Signal;
use crate::telemetry::{Exposition, METRICS_CONTENT_TYPE, SelfMetrics};
use status::StatusResponse;

/// Longest a client may take to complete the TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take to send a request's headers. In hyper 1.x this timer also runs while an HTTP/1
/// connection sits idle between requests, so it doubles as the keep-alive idle timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head (HTTP/1 buffer, HTTP/2 header list), in bytes. Front-proxy group headers and OIDC bearer
/// tokens can reach tens of KiB; Go's default is 1 MiB, which we do not need for GET-only traffic.
pub const MAX_HEADER_BYTES: usize = 128 * 1024;

/// Largest declared request body, in bytes. Only GETs are served and bodies are never read; a larger declared
/// body gets 413 before authentication.
pub const MAX_REQUEST_BODY_BYTES: u64 = 1024 * 1024;

/// Concurrent HTTP/2 streams per connection (the aggregator multiplexes every proxied request over a few
/// connections; `--max-requests-inflight` is the real bound).
pub const MAX_CONCURRENT_STREAMS: u32 = 250;

/// HTTP/2 keep-alive ping interval and the time allowed for its answer, to detect dead peers.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The user of requests without credentials.
const ANONYMOUS: &str = "system:anonymous";
/// The group of requests without credentials.
const UNAUTHENTICATED: &str = "system:unauthenticated";
/// Members are allowed everything without a review (as the apiserver's privileged-group authorizer).
const MASTERS: &str = "system:masters";

/// What the server needs from the rest of the process.
pub struct ServerParts {
    /// The metrics.k8s.io API.
    pub api: Arc<Api>,
    /// Turns credentials into a user.
    pub authenticator: Arc<dyn Authenticator>,
    /// Decides whether a user may do something.
    pub authorizer: Arc<dyn Authorizer>,
    /// Health checks for `/livez`, `/readyz`, `/healthz`.
    pub health: Health,
    /// Self-metrics served at `/metrics`.
    pub metrics: Arc<SelfMetrics>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The port is taken.
    #[error(
        "cannot listen on {addr}: port {port} is already in use. With hostNetwork: true the kubelet itself listens on \
         10250; choose another --secure-port (for example 4443)",
        port = addr.port()
    )]
    PortInUse {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A privileged port without the capability to bind it.
    #[error(
        "cannot listen on {addr}: permission denied. Ports below 1024 need root or CAP_NET_BIND_SERVICE; the \
         metrics-server manifests use --secure-port=10250"
    )]
    PermissionDenied {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The serving certificate or TLS settings.
    #[error(transparent)]
    Tls(#[from] tls::Error),
}

/// A bound, not yet serving, HTTPS listener (bind first to learn the port, e.g. with `--secure-port=0`).
pub struct Listener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    settings: Settings,
}

/// Request-pipeline settings taken from the [`Config`].
#[derive(Debug, Clone)]
struct Settings {
    max_requests_inflight: usize,
    always_allow: Vec<String>,
    shutdown_delay: Duration,
    shutdown_grace: Duration,
}

/// State shared by every connection.
struct Shared {
    parts: ServerParts,
    settings: Settings,
    /// `None` when `--max-requests-inflight=0` (unlimited).
    inflight: Option<Semaphore>,
}

/// Binds and serves until `shutdown` fires and connections have drained (or the grace period ran out).
///
/// # Errors
/// [`Error`] when the certificate cannot be loaded or the port cannot be bound.
pub async fn serve(config: &Config, parts: ServerParts, shutdown: Signal) -> Result<(), Error> {
    bind(config).await?.serve(parts, shutdown).await;
    Ok(())
}

/// Loads the serving certificate and binds `--bind-address:--secure-port`.
///
/// # Errors
/// [`Error`] when the certificate cannot be loaded or the port cannot be bound.
pub async fn bind(config: &Config) -> Result<Listener, Error> {
    let (tls_config, _resolver) = tls::server_config(&config.serving)?;
    let addr = config.serving.bind;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => Error::PortInUse { addr, source },
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied { addr, source },
            _ => Error::Bind { addr, source },
        })?;
    let local_addr = tcp
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let settings = Settings {
        max_requests_inflight: config.max_requests_inflight,
        always_allow: config.args.authorization_always_allow_paths.clone(),
        shutdown_delay: config.shutdown_delay,
        shutdown_grace: config.shutdown_grace,
    };
    Ok(Listener {
        tcp,
        local_addr,
        acceptor: TlsAcceptor::from(tls_config),
        settings,
    })
}

// === impl Listener ===

impl Listener {
    /// The bound address (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` fires, then drains (see the module docs). Never fails once bound: per-connection
    /// errors are logged.
    pub async fn serve(self, parts: ServerParts, shutdown: Signal) {
        let Listener {
            tcp,
            local_addr,
            acceptor,
            settings,
        } = self;
        let (delay, grace) = (settings.shutdown_delay, settings.shutdown_grace);
        let inflight = (settings.max_requests_inflight > 0)
            .then(|| Semaphore::new(settings.max_requests_inflight));
        let accepter = Accepter {
            acceptor,
            builder: Arc::new(http_builder()),
            shared: Arc::new(Shared {
                parts,
                settings,
                inflight,
            }),
            graceful: GracefulShutdown::new(),
            closing: watch::channel(false).0,
        };
        tracing::info!(addr = %local_addr, "serving HTTPS");
        accepter.accept_until(&tcp, shutdown.cancelled()).await;
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutdown started: /readyz fails; still serving during --shutdown-delay-duration"
            );
            accepter.accept_until(&tcp, tokio::time::sleep(delay)).await;
        }
        drop(tcp);
        accepter.drain(grace).await;
    }
}

/// Spawns one task per accepted connection and drains them at the end.
struct Accepter {
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    /// Every connection task holds a watcher; `shutdown` tells them to finish and waits for all to drop.
    graceful: GracefulShutdown,
    /// Set when the listener closes: connections still in their TLS handshake give up.
    closing: watch::Sender<bool>,
}

impl Accepter {
    /// Accepts connections until `stop` completes.
    async fn accept_until(&self, tcp: &TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                accepted = tcp.accept() => self.accepted(accepted).await,
            }
        }
    }

    async fn accepted(&self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        match accepted {
            Ok((stream, remote)) => {
                let conn = connection(
                    stream,
                    self.acceptor.clone(),
                    self.builder.clone(),
                    self.shared.clone(),
                    self.graceful.watcher(),
                    self.closing.subscribe(),
                );
                tokio::spawn(conn.instrument(tracing::debug_span!("conn", client = %remote)));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }

    /// Lets established connections finish their requests (HTTP/1 closes after the current response, HTTP/2 sends
    /// GOAWAY) for up to `grace`; handshakes in progress are abandoned.
    async fn drain(self, grace: Duration) {
        let Accepter {
            graceful, closing, ..
        } = self;
        closing.send_replace(true);
        tracing::info!(
            connections = graceful.count(),
            ?grace,
            "listener closed; draining connections"
        );
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections drained"),
            Err(_) => tracing::warn!(
                ?grace,
                "grace period ran out; closing the remaining connections"
            ),
        }
    }
}

/// The HTTP/1 + HTTP/2 connection builder with our limits.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    builder
}

/// One connection: TLS handshake (bounded, abandoned on close), then HTTP until done or drained.
async fn connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    watcher: Watcher,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        _ = closing.wait_for(|closed| *closed) => return,
    };
    let peer: Arc<[CertificateDer<'static>]> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(Vec::new()));
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(shared.handle(request, &peer).await) }
    });
    // hyper-util's auto builder waits for the first bytes (HTTP/2 preface detection) with no timer; bound that.
    let io = first_byte::FirstByteDeadline::new(tls, HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(conn).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

// === impl Shared ===

impl Shared {
    /// The request pipeline; logs one debug line per request.
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: &[CertificateDer<'static>],
    ) -> Response<Body> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        // Bodies are never read (GET only); dropping it lets hyper discard or close as needed.
        drop(body);
        let (response, user) = self.respond(&parts, peer).await;
        tracing::debug!(
            user = %user.as_deref().unwrap_or("-"),
            verb = %parts.method,
            path = %parts.uri.path(),
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        response
    }

    /// Answers one request; also returns the user name once known, for the log line.
    async fn respond(
        &self,
        parts: &http::request::Parts,
        peer: &[CertificateDer<'static>],
    ) -> (Response<Body>, Option<String>) {
        let path = parts.uri.path();
        let health = Endpoint::route(path);
        if declared_body_length(&parts.headers) > MAX_REQUEST_BODY_BYTES {
            return (
                status_response(status::body_too_large(MAX_REQUEST_BODY_BYTES)),
                None,
            );
        }
        // Health probes never compete with API traffic for in-flight slots.
        let _permit = match (&self.inflight, health) {
            (Some(limit), None) => match limit.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => return (status_response(status::too_many_requests()), None),
            },
            _ => None,
        };
        let credentials = Credentials {
            headers: &parts.headers,
            peer_certificates: peer,
        };
        let user = match self.parts.authenticator.authenticate(credentials).await {
            Ok(Some(user)) => user,
            Ok(None) => anonymous(),
            Err(error) => {
                if let auth::Error::Review(_) = error {
                    tracing::warn!(%error, "unable to authenticate the request");
                }
                return (status_response(status::unauthorized()), None);
            }
        };
        let query = parts.uri.query().unwrap_or("");
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let api_request = ApiRequest {
            method: parts.method.as_str(),
            path,
            query,
            accept,
        };
        let attributes = Api::attributes(api_request);
        match self.authorize(&user, &attributes).await {
            Ok(Decision::Allow) => {}
            Ok(Decision::Deny { reason }) => {
                return (
                    status_response(status::forbidden(&user, &attributes, &reason)),
                    Some(user.name),
                );
            }
            Err(error) => {
                tracing::warn!(%error, user = %user.name, "authorization review failed");
                let uri = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
                return (
                    status_response(status::internal_error(uri, &error.to_string())),
                    Some(user.name),
                );
            }
        }
        let now_ms = crate::time::now_ms();
        let response = match health {
            Some((endpoint, check)) => {
                health_response(self.parts.health.respond(endpoint, check, query, now_ms))
            }
            None if path == "/metrics" && parts.method == Method::GET => {
                metrics_response(self.parts.metrics.exposition())
            }
            None => api_response(self.parts.api.handle(api_request, now_ms)),
        };
        (response, Some(user.name))
    }

    /// Always-allowed non-resource paths, then `system:masters`, then the authorizer.
    async fn authorize(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Result<Decision, auth::Error> {
        if let Attributes::NonResource { path, .. } = attributes
            && self
                .settings
                .always_allow
                .iter()
                .any(|pattern| path_matches(pattern, path))
        {
            return Ok(Decision::Allow);
        }
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(Decision::Allow);
        }
        self.parts.authorizer.authorize(user, attributes).await
    }
}

/// `--authorization-always-allow-paths` matching: exact, or a prefix when the pattern ends with `*`.
fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

fn anonymous() -> UserInfo {
    UserInfo {
        name: ANONYMOUS.to_owned(),
        groups: vec![UNAUTHENTICATED.to_owned()],
        ..UserInfo::default()
    }
}

/// The `Content-Length` a client declared, 0 when absent or unparsable (hyper rejects malformed lengths itself).
fn declared_body_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn status_response(status: StatusResponse) -> Response<Body> {
    let mut response = text_response(status.code, "application/json", status.body);
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    for (name, value) in status.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn health_response(health: HealthResponse) -> Response<Body> {
    let mut response = text_response(
        health.code,
        "text/plain; charset=utf-8",
        health.body.into_bytes(),
    );
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn api_response(api: crate::api::ApiResponse) -> Response<Body> {
    let mut response = text_response(api.status, &api.content_type, api.body);
    for (name, value) in api.headers {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                response.headers_mut().append(name, value);
            }
            Err(_) => tracing::warn!(
                header = name,
                "the API produced an invalid header value; dropped"
            ),
        }
    }
    response
}

/// A response body: whole, or the self-metrics text written chunk by chunk as the client reads it.
type Body = Either<Full<Bytes>, StreamBody<ExpositionFrames>>;

/// The chunks of an [`Exposition`] as body frames.
type ExpositionFrames = futures::stream::Iter<
    std::iter::Map<Exposition, fn(Vec<u8>) -> Result<Frame<Bytes>, Infallible>>,
>;

/// `/metrics`: streamed, so the per-node text (≈ 7 MiB at 5,000 nodes) is never held whole.
fn metrics_response(exposition: Exposition) -> Response<Body> {
    let frame: fn(Vec<u8>) -> Result<Frame<Bytes>, Infallible> =
        |chunk| Ok(Frame::data(Bytes::from(chunk)));
    let mut response = Response::new(Either::Right(StreamBody::new(futures::stream::iter(
        exposition.map(frame),
    ))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

fn text_response(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;

    #[test]
    fn always_allow_patterns_match_exactly_or_by_prefix() {
        let cases = [
            ("/healthz", "/healthz", true),
            ("/healthz", "/healthz/ping", false),
            ("/healthz*", "/healthz/ping", true),
            ("/metrics", "/metrics", true),
            ("/metrics", "/metricsx", false),
            ("*", "/anything", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(path_matches(pattern, path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn anonymous_callers_are_system_anonymous_in_system_unauthenticated() {
        let user = anonymous();
        assert_eq!(user.name, "system:anonymous");
        assert_eq!(user.groups, vec!["system:unauthenticated".to_owned()]);
    }
}
