//! Helpers shared by the security and fault end-to-end tests: TLS client configs for each kind of caller, plain
//! HTTPS GETs against the server's own port (one connection per call, or many requests over one kept-alive
//! connection), waiting for metrics, and reading the server's resident memory.
//!
//! Test plumbing only; it must not start clusters or servers itself (the harness does).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2e::certs::CertifiedKey;
use e2e::harness::{Cluster, ServerProcess, eventually};
use e2e::https::{self, Body, full};
use e2e::tls;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Startup budget of the server (TLS material, first watches) on a loaded machine.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Budget for the first metrics: two scrapes at 10 s resolution, plus slack for a loaded machine.
pub const METRICS_WITHIN: Duration = Duration::from_secs(90);

/// Deadline of one request in these tests (generous: never a timing assertion, only a bound on hangs).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// Node metrics list path.
pub const NODES: &str = "/apis/metrics.k8s.io/v1beta1/nodes";

/// Pod metrics list path (all namespaces).
pub const PODS: &str = "/apis/metrics.k8s.io/v1beta1/pods";

/// A client config that does not verify the server (its certificate is self-signed in `--cert-dir`), presenting
/// `identity` when given.
pub fn client(identity: Option<&CertifiedKey>) -> Arc<rustls::ClientConfig> {
    Arc::new(tls::insecure_client_config(identity).unwrap())
}

/// Headers with `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

/// Front-proxy headers asserting `user` in `groups`.
pub fn remote_user(user: &str, groups: &[&str]) -> Vec<(String, String)> {
    std::iter::once(("X-Remote-User".to_owned(), user.to_owned()))
        .chain(
            groups
                .iter()
                .map(|g| ("X-Remote-Group".to_owned(), (*g).to_owned())),
        )
        .collect()
}

/// An answer: status code and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `Status.message` of an error body.
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `Status.reason` of an error body.
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `metadata.name` of every item of a list.
    pub fn names(&self) -> Vec<String> {
        self.json()["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `GET path` on `addr` over a new connection with `config` and `headers`.
///
/// # Panics
/// On transport failures (a test failure).
pub async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(String, String)],
) -> Answer {
    try_get(addr, config, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// [`get`] returning transport errors.
///
/// # Errors
/// [`https::HttpsError`].
pub async fn try_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(String, String)],
) -> Result<Answer, https::HttpsError> {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _, body) = https::get(addr, config, path, &headers, REQUEST_DEADLINE).await?;
    Ok(Answer {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One kept-alive HTTP/1.1 connection to the server.
pub struct Connection {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl Connection {
    /// Connects and completes the TLS handshake.
    ///
    /// # Panics
    /// On transport failures.
    pub async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = TlsConnector::from(config)
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { addr, sender }
    }

    /// `GET path` on this connection.
    ///
    /// # Panics
    /// On transport failures or when the exchange exceeds [`REQUEST_DEADLINE`].
    pub async fn get(&mut self, path: &str, headers: &[(String, String)]) -> Answer {
        let mut builder = Request::get(path).header(http::header::HOST, self.addr.to_string());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(full(Bytes::new())).unwrap();
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("GET {path} took longer than {REQUEST_DEADLINE:?}"))
            .unwrap();
        Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Headers of an administrator as the aggregator would assert it (no review: `system:masters` is allowed locally).
pub fn admin_headers() -> Vec<(String, String)> {
    remote_user(
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
    )
}

/// Waits until the node list on the server's own port holds exactly `expected` (sorted names), asking as the
/// administrator through the front-proxy certificate.
///
/// # Panics
/// When it does not happen within [`METRICS_WITHIN`] (with the server log).
pub async fn wait_for_nodes(cluster: &Cluster, server: &ServerProcess, expected: &[String]) {
    let config = client(Some(cluster.front_proxy_client()));
    let headers = admin_headers();
    let result = eventually(
        "every expected node to have metrics",
        METRICS_WITHIN,
        || {
            let config = config.clone();
            let headers = headers.clone();
            async move {
                let answer = try_get(server.addr(), config, NODES, &headers).await.ok()?;
                let mut names = answer.names();
                names.sort();
                (answer.status == 200 && names == expected).then_some(())
            }
        },
    )
    .await;
    result.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
}

/// Resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
///
/// # Panics
/// When the file cannot be read or holds no `VmRSS` line.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
