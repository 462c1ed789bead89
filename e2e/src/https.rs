//! A minimal HTTPS/1.1 client over tokio-rustls and hyper's connection API, one connection per call: used by the
//! aggregator proxy, the availability probe, the harness's readiness wait and tests fetching kubelet bodies.
//!
//! Owns connecting and sending only; it must not pool, retry or interpret responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Boxed error used in streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every fake server answers with (full or streamed).
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Errors of one HTTPS exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// TCP connect failed (refused, unreachable).
    #[error("dial tcp {addr}: {source}")]
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("tls handshake with {addr}: {source}")]
    Handshake {
        /// Target address.
        addr: SocketAddr,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP framing failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (bad header value or path).
    #[error("building request: {0}")]
    Request(#[from] http::Error),
    /// The exchange took longer than the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Turns a full byte buffer into a [`Body`].
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Sends `request` to `addr` over TLS with `config` and returns the response head with its streaming body.
/// `server_name` is the SNI / verification name (an IP for loopback servers).
///
/// # Errors
/// [`HttpsError`] for connect, handshake, HTTP or deadline failures.
pub async fn send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    request: Request<Body>,
    deadline: Duration,
) -> Result<Response<Incoming>, HttpsError> {
    tokio::time::timeout(deadline, async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpsError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|source| HttpsError::Handshake { addr, source })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender.send_request(request).await?)
    })
    .await
    .map_err(|_| HttpsError::Timeout(deadline))?
}

/// `GET path` with extra headers, collecting the whole body.
///
/// # Errors
/// [`HttpsError`] as for [`send`], also while reading the body.
pub async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
    deadline: Duration,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), HttpsError> {
    let mut builder = Request::get(path).header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(full(Bytes::new()))?;
    let server_name = ServerName::IpAddress(addr.ip().into());
    let response = send(addr, config, server_name, request, deadline).await?;
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(deadline, body.collect())
        .await
        .map_err(|_| HttpsError::Timeout(deadline))??;
    Ok((parts.status, parts.headers, bytes.to_bytes()))
}
