//! Kept-alive HTTPS/1.1 connections for the scale benchmark's own clients (API load, pod lists, the bare-fetch
//! floor): connect once, send many requests, read bodies frame by frame.
//!
//! Owns connections and timing of single exchanges only; it must not interpret bodies beyond counting bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use e2e::https::{Body, full};
use http::Request;
use http_body_util::BodyExt as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One kept-alive HTTPS/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Body>,
}

impl Conn {
    /// Connects to `addr` (TLS with `config`, SNI = the IP) within `deadline`.
    pub async fn open(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(deadline, async {
            let tcp = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let _ = tcp.set_nodelay(true);
            let tls = TlsConnector::from(config)
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Self { addr, sender })
        })
        .await
        .with_context(|| format!("connecting to {addr}: timed out after {deadline:?}"))?
    }

    /// `GET path` with `headers`; returns the status and the body (collected when `keep` is true, else only
    /// counted: the returned `Bytes` is empty and the count is the body length).
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        keep: bool,
        deadline: Duration,
    ) -> anyhow::Result<(u16, Bytes, usize)> {
        let mut builder = Request::get(path).header(http::header::HOST, self.addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(full(Bytes::new()))?;
        tokio::time::timeout(deadline, async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            if keep {
                let bytes = body.collect().await?.to_bytes();
                let len = bytes.len();
                return Ok((status, bytes, len));
            }
            let mut len = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    len += data.len();
                }
            }
            Ok((status, Bytes::new(), len))
        })
        .await
        .with_context(|| format!("GET {path} on {}: timed out after {deadline:?}", self.addr))?
    }
}
