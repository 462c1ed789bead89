//! Fake kubelets: one TLS listener per model node on the node's own loopback address, serving
//! `GET /metrics/resource` from the [`Model`], recording per node the `Authorization` header seen and the request
//! count, with fault modes switchable at runtime.
//!
//! Built to scale to thousands of nodes in one process: one task per listener owning a `JoinSet` of its
//! connections (dropping the fleet aborts listeners, which aborts their connections), a hand-written HTTP/1.1
//! keep-alive loop instead of a full server stack (full control over hangs, resets and broken bodies, little
//! memory per connection), and a few atomics per node. It must not know about the control plane.

mod body;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use body::{go_float, render, render_scrape_error};

use crate::model::{Model, now_ms};

/// Largest request head accepted; kubelet clients send a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a TLS handshake may take before the connection is dropped (a stuck client must not pin a task).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before retrying a failed re-bind after a `Refuse` fault ends.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// Chunk written repeatedly for huge bodies: valid-looking lines so only the size is wrong.
const HUGE_CHUNK_LINE: &str = "container_memory_working_set_bytes{container=\"filler\",namespace=\"huge\",pod=\"huge\"} 1 1\n";

/// Errors starting a fleet.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A listener could not bind its node's address.
    #[error("binding kubelet {node} on {addr}: {source}")]
    Bind {
        /// Node name.
        node: String,
        /// Address tried.
        addr: SocketAddr,
        /// The bind error (`AddrInUse` when another test holds it).
        #[source]
        source: io::Error,
    },
    /// The model rejected the port update.
    #[error("recording kubelet port: {0}")]
    Model(#[from] crate::model::ModelError),
}

/// How a fake kubelet misbehaves. Switch per node with [`KubeletFleet::set_fault`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Serve correct bodies.
    #[default]
    None,
    /// Close the listener and every open connection: connections are refused until the fault is cleared.
    Refuse,
    /// Accept and read requests but never answer.
    Hang,
    /// Accept TCP connections but never complete the TLS handshake (a wedged kubelet process).
    HangBeforeTls,
    /// Answer correctly after this delay.
    Slow(Duration),
    /// Answer with this HTTP status and a short plain-text body (500 for an internal error, 401/403 for auth).
    Status(u16),
    /// Answer 200 with bytes that are not Prometheus text.
    Garbage,
    /// Answer 200 with a body of this many bytes (e.g. 64 MiB and more), streamed.
    Huge(u64),
    /// Reset the TCP connection (RST) after reading the request.
    Reset,
    /// Serve correct values with no sample timestamps.
    MissingTimestamps,
    /// Serve only `resource_scrape_error 1`.
    ScrapeError,
}

/// Settings shared by every kubelet of a fleet.
#[derive(Clone)]
pub struct FleetOptions {
    /// Serving TLS config (one certificate for the whole fleet).
    pub tls: Arc<rustls::ServerConfig>,
    /// When set, requests without `Authorization: Bearer <token>` get 401.
    pub required_token: Option<String>,
    /// Each pod's stats time lags the request by up to this much, ms (runtime housekeeping); 0 for none.
    pub max_stats_lag_ms: i64,
}

/// One fake kubelet's observable state.
pub struct KubeletNode {
    name: String,
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    requests: AtomicU64,
    last_authorization: Mutex<Option<String>>,
}

/// The fake kubelets of a model; dropping it stops every listener and connection.
pub struct KubeletFleet {
    shared: Arc<Shared>,
    inner: Mutex<FleetInner>,
}

struct FleetInner {
    nodes: Vec<Arc<KubeletNode>>,
    tasks: JoinSet<()>,
}

struct Shared {
    model: Model,
    acceptor: TlsAcceptor,
    options: FleetOptions,
}

/// One parsed request head.
struct RequestHead {
    path: String,
    authorization: Option<String>,
    gzip: bool,
    close: bool,
}

// === impl KubeletFleet ===

impl KubeletFleet {
    /// Binds one listener per node in `model` (`nodes: None`) or per named node, on the node's address and port. A
    /// node with port 0 gets an ephemeral port, written back into the model's node status.
    ///
    /// # Errors
    /// [`KubeletError::Bind`] when an address is taken (no listener is left running).
    pub async fn start(
        model: &Model,
        nodes: Option<&[String]>,
        options: FleetOptions,
    ) -> Result<Self, KubeletError> {
        let shared = Arc::new(Shared {
            model: model.clone(),
            acceptor: TlsAcceptor::from(options.tls.clone()),
            options,
        });
        let fleet = Self {
            shared,
            inner: Mutex::new(FleetInner {
                nodes: Vec::new(),
                tasks: JoinSet::new(),
            }),
        };
        let wanted = model
            .nodes()
            .into_iter()
            .filter(|n| nodes.is_none_or(|names| names.iter().any(|x| *x == n.spec.name)));
        for node in wanted {
            fleet.start_node(&node.spec.name).await?;
        }
        Ok(fleet)
    }

    /// Starts the kubelet of a node added to the model after the fleet started (its address and port from the
    /// model; port 0 binds an ephemeral port and records it in the model).
    ///
    /// # Errors
    /// [`KubeletError::Bind`]; [`KubeletError::Model`] for a node the model does not have.
    pub async fn start_node(&self, name: &str) -> Result<Arc<KubeletNode>, KubeletError> {
        let model = &self.shared.model;
        let node = model
            .node(name)
            .ok_or_else(|| crate::model::ModelError::NodeNotFound(name.to_owned()))?;
        let ip = node.spec.address.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let requested = SocketAddr::from((ip, node.spec.kubelet_port));
        let bind_error = |source| KubeletError::Bind {
            node: name.to_owned(),
            addr: requested,
            source,
        };
        let listener = TcpListener::bind(requested).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        if addr.port() != node.spec.kubelet_port {
            model.set_kubelet_port(name, addr.port())?;
        }
        let handle = Arc::new(KubeletNode {
            name: name.to_owned(),
            addr,
            fault: watch::Sender::new(Fault::None),
            requests: AtomicU64::new(0),
            last_authorization: Mutex::new(None),
        });
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .tasks
            .spawn(run_listener(handle.clone(), self.shared.clone(), listener));
        inner.nodes.push(handle.clone());
        Ok(handle)
    }

    /// Every kubelet, in start order.
    pub fn nodes(&self) -> Vec<Arc<KubeletNode>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .clone()
    }

    /// The kubelet of node `name`.
    pub fn node(&self, name: &str) -> Option<Arc<KubeletNode>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .iter()
            .find(|n| n.name == name)
            .cloned()
    }

    /// Switches node `name` to `fault`; returns false for an unknown node.
    pub fn set_fault(&self, name: &str, fault: Fault) -> bool {
        self.node(name).map(|n| n.set_fault(fault)).is_some()
    }

    /// Requests served by node `name` (0 for an unknown node).
    pub fn requests(&self, name: &str) -> u64 {
        self.node(name).map_or(0, |n| n.requests())
    }

    /// Requests served by all nodes.
    pub fn total_requests(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .iter()
            .map(|n| n.requests())
            .sum()
    }

    /// The last `Authorization` header node `name` received.
    pub fn last_authorization(&self, name: &str) -> Option<String> {
        self.node(name).and_then(|n| n.last_authorization())
    }
}

// === impl KubeletNode ===

impl KubeletNode {
    /// Node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Address and port the kubelet listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches this kubelet to `fault`.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }

    /// Requests received (any path, any outcome).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The last `Authorization` header received, if any request carried one.
    pub fn last_authorization(&self) -> Option<String> {
        self.last_authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn run_listener(node: Arc<KubeletNode>, shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    let mut faults = node.fault.subscribe();
    let mut connections = JoinSet::new();
    loop {
        if *faults.borrow_and_update() == Fault::Refuse {
            listener = None;
            connections.abort_all();
        } else if listener.is_none() {
            match TcpListener::bind(node.addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(REBIND_PAUSE).await,
            }
            continue;
        }
        tokio::select! {
            accepted = accept(listener.as_ref()) => {
                if let Ok((tcp, _)) = accepted {
                    connections.spawn(serve_connection(node.clone(), shared.clone(), tcp));
                }
            }
            changed = faults.changed() => if changed.is_err() { return },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve_connection(node: Arc<KubeletNode>, shared: Arc<Shared>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    if node.fault() == Fault::HangBeforeTls {
        // Hold the socket open, reading nothing useful, until the client gives up.
        let mut tcp = tcp;
        let mut sink = [0u8; 512];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let Ok(Ok(mut tls)) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(tcp)).await
    else {
        return;
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head = match read_head(&mut tls, &mut buf).await {
            Ok(Some(head)) => head,
            _ => return,
        };
        node.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(auth) = &head.authorization {
            *node
                .last_authorization
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(auth.clone());
        }
        let fault = node.fault();
        let outcome = match fault {
            Fault::Hang => {
                // Never answer; return when the client gives up.
                let mut sink = [0u8; 512];
                while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Fault::Reset => {
                let _ = tls.get_ref().0.set_zero_linger();
                return;
            }
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                respond(&mut tls, &shared, &node, &head, &Fault::None).await
            }
            other => respond(&mut tls, &shared, &node, &head, &other).await,
        };
        if outcome.is_err() || head.close {
            let _ = tls.shutdown().await;
            return;
        }
    }
}

/// Reads one request head (up to the blank line) into `buf`; `None` on a clean EOF between requests.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<Option<RequestHead>> {
    buf.clear();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let _method = parts.next();
    let path = parts.next().unwrap_or("/").to_owned();
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut head = RequestHead {
        path,
        authorization: None,
        gzip: false,
        close: http10,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => head.authorization = Some(value.to_owned()),
            "accept-encoding" => head.gzip = value.split(',').any(|e| e.trim().starts_with("gzip")),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Ok(Some(head))
}

async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    shared: &Shared,
    node: &KubeletNode,
    head: &RequestHead,
    fault: &Fault,
) -> io::Result<()> {
    if let Some(token) = &shared.options.required_token {
        let ok = head
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            == Some(token.as_str());
        if !ok {
            return write_response(
                stream,
                401,
                "text/plain; charset=utf-8",
                b"Unauthorized\n",
                false,
            )
            .await;
        }
    }
    let path = head.path.split('?').next().unwrap_or_default();
    if path != "/metrics/resource" {
        return write_response(
            stream,
            404,
            "text/plain; charset=utf-8",
            b"404 page not found\n",
            false,
        )
        .await;
    }
    const PROM: &str = "text/plain; version=0.0.4; charset=utf-8";
    match fault {
        Fault::Status(code) => {
            let body =
                format!("Internal Error: failed to get stats (fake kubelet status {code})\n");
            write_response(
                stream,
                *code,
                "text/plain; charset=utf-8",
                body.as_bytes(),
                false,
            )
            .await
        }
        Fault::Garbage => {
            let body = b"\x00\xff\xfe{{{ this is not prometheus text\nnode_cpu_usage_seconds_total{ 12 abc\n\x7f";
            write_response(stream, 200, PROM, body, false).await
        }
        Fault::Huge(bytes) => write_huge(stream, *bytes).await,
        Fault::ScrapeError => {
            let mut body = String::new();
            render_scrape_error(&mut body);
            write_response(stream, 200, PROM, body.as_bytes(), false).await
        }
        _ => {
            let timestamps = *fault != Fault::MissingTimestamps;
            let mut body = String::with_capacity(4096);
            match shared
                .model
                .node_stats(&node.name, now_ms(), shared.options.max_stats_lag_ms)
            {
                Some(stats) => render(&stats, timestamps, &mut body),
                None => render_scrape_error(&mut body),
            }
            if head.gzip {
                let compressed = gzip(body.as_bytes())?;
                write_response(stream, 200, PROM, &compressed, true).await
            } else {
                write_response(stream, 200, PROM, body.as_bytes(), false).await
            }
        }
    }
}

/// The 10-byte header Go's `gzip.Writer` writes with an empty `Header` at `DefaultCompression`: no name, comment
/// or modification time, XFL 0, OS 255 (unknown).
const GO_GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

thread_local! {
    /// One deflate compressor per fleet thread: its state is a few hundred KiB, too much to build per response.
    static DEFLATE: std::cell::RefCell<Option<libdeflater::Compressor>> =
        const { std::cell::RefCell::new(None) };
}

/// Gzip at the default level (6), as a kubelet answers: its handler is client_golang's `promhttp`, whose writer
/// pool holds `gzip.NewWriter` (Go's `DefaultCompression`), framed with the header Go writes.
///
/// The deflate stream is libdeflate's at that level, not Go's: one dynamic-Huffman block per body either way, of
/// the same size within a few percent (`gzip_is_go_framed_and_as_small_as_the_default_level`). libdeflate costs
/// the fleet a fraction of what miniz_oxide did, and the fleet shares the benchmark's cores with the server, as
/// real kubelets (on their own nodes) never do.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let size = u32::try_from(data.len()).map_err(|_| io::Error::other("body over 4 GiB"))?;
    DEFLATE.with_borrow_mut(|compressor| {
        let compressor = compressor.get_or_insert_with(|| {
            libdeflater::Compressor::new(libdeflater::CompressionLvl::default())
        });
        let bound = compressor.deflate_compress_bound(data.len());
        let mut out = Vec::with_capacity(GO_GZIP_HEADER.len() + bound + 8);
        out.extend_from_slice(&GO_GZIP_HEADER);
        let start = out.len();
        out.resize(start + bound, 0);
        let written = compressor
            .deflate_compress(data, &mut out[start..])
            .map_err(io::Error::other)?;
        out.truncate(start + written);
        out.extend_from_slice(&libdeflater::crc32(data).to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        Ok(out)
    })
}

async fn write_response<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
    gzipped: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let encoding = if gzipped {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    // Go's net/http (the kubelet) buffers 2,048 bytes of a handler's output: a body that fits is sent with a
    // Content-Length, a longer one with chunked transfer coding, one chunk per buffer flush.
    if body.len() <= GO_CHUNKING_BUFFER {
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        return stream.flush().await;
    }
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{encoding}Transfer-Encoding: chunked\r\n\r\n"
    );
    let mut wire = Vec::with_capacity(head.len() + body.len() + body.len() / 256 + 16);
    wire.extend_from_slice(head.as_bytes());
    for chunk in body.chunks(GO_CHUNKING_BUFFER) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&wire).await?;
    stream.flush().await
}

/// Go's `net/http` `bufferBeforeChunkingSize`: larger bodies without a declared length are sent chunked.
const GO_CHUNKING_BUFFER: usize = 2048;

async fn write_huge<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: u64,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {bytes}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = HUGE_CHUNK_LINE.repeat(64 * 1024 / HUGE_CHUNK_LINE.len());
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk.as_bytes()[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Read as _;

    use super::*;
    use crate::model::{ClusterSpec, Model, node_name};

    /// A benchmark-sized body: 30 pods × 1 container (the uniform cluster's shape) on one node.
    fn body() -> String {
        let now_ms = 1_700_000_000_000;
        let model = Model::new_at(ClusterSpec::uniform(1, 30), now_ms).unwrap();
        let stats = model.node_stats(&node_name(0), now_ms + 15_000, 0).unwrap();
        let mut out = String::new();
        body::render(&stats, true, &mut out);
        out
    }

    #[test]
    fn gzip_is_go_framed_and_as_small_as_the_default_level() {
        let body = body();
        let ours = gzip(body.as_bytes()).unwrap();
        assert_eq!(ours[..10], GO_GZIP_HEADER);
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&ours[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, body);
        // The same body at zlib's (and Go's) default level 6: within 10 % of its size, so the server inflates a
        // stream like the one a kubelet sends, not a stored or barely compressed one.
        let mut reference =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut reference, body.as_bytes()).unwrap();
        let reference = reference.finish().unwrap();
        let ratio = ours.len() as f64 / reference.len() as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{} bytes against {} at the default level (body {} bytes)",
            ours.len(),
            reference.len(),
            body.len()
        );
        // A second body on the same thread reuses the compressor and is as good.
        assert_eq!(gzip(body.as_bytes()).unwrap(), ours);
    }
}
