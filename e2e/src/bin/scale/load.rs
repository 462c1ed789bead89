//! Clients of the server's metrics API for the benchmark: authenticated GETs as the aggregator would send them
//! (front-proxy client certificate + `X-Remote-User`/`X-Remote-Group`), full pod lists, and an open-loop stream of
//! HPA-style namespaced selector lists at a fixed rate.
//!
//! Measures latency and counts items; it must not judge results against targets (the report does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::mpsc;

use crate::client::Conn;

/// Deadline of one API request (a full list of 600,000 pods on a loaded debug build included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Most connections the HPA stream opens; above that, requests wait for a free connection.
const MAX_CONNECTIONS: usize = 64;

/// Identity the aggregator asserts for the benchmark's requests (`system:masters` is authorised locally).
const HEADERS: [(&str, &str); 3] = [
    ("Accept", "application/json"),
    ("X-Remote-User", "kubernetes-admin"),
    ("X-Remote-Group", "system:masters"),
];

/// A list body with its items left unparsed.
#[derive(Deserialize)]
struct List {
    items: Vec<IgnoredAny>,
}

/// The server's address and a client config presenting the front-proxy certificate.
#[derive(Clone)]
pub struct Api {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS client config.
    pub config: Arc<rustls::ClientConfig>,
}

/// One timed GET: status, items (when the body is a list), body bytes, wall time.
pub struct Timed {
    /// HTTP status.
    pub status: u16,
    /// Items of a list body (0 otherwise).
    pub items: usize,
    /// Body length, bytes.
    pub bytes: usize,
    /// From sending the request to the last body byte.
    pub wall: Duration,
    /// The body (only for non-list paths such as `/metrics`).
    pub body: bytes::Bytes,
}

impl Api {
    /// Opens a connection to the server.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Conn::open(self.addr, self.config.clone(), REQUEST_TIMEOUT).await
    }

    /// `GET path` on a fresh connection (the server closes idle ones); only the exchange is timed.
    pub async fn fetch(&self, path: &str) -> anyhow::Result<Timed> {
        let mut conn = self.connect().await?;
        self.get(&mut conn, path).await
    }

    /// `GET path` on `conn`, timed; list bodies are counted.
    pub async fn get(&self, conn: &mut Conn, path: &str) -> anyhow::Result<Timed> {
        let start = Instant::now();
        let (status, body, bytes) = conn.get(path, &HEADERS, true, REQUEST_TIMEOUT).await?;
        let wall = start.elapsed();
        let items = if status == 200 && path.starts_with("/apis/") {
            serde_json::from_slice::<List>(&body).map_or(0, |l| l.items.len())
        } else {
            0
        };
        Ok(Timed {
            status,
            items,
            bytes,
            wall,
            body,
        })
    }
}

/// Outcome of an HPA stream.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Latency of each successful request, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or answered non-200.
    pub errors: usize,
    /// Items in the first answer (to show the selector matched what it should).
    pub first_items: usize,
    /// Wall time of the whole stream.
    pub wall: Duration,
}

impl Stream {
    /// Quantile `q` of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// Sends `total` GETs cycling over `paths`, one every `1 / rate` seconds (open loop: a slow answer does not delay
/// the next send unless all [`MAX_CONNECTIONS`] are busy).
pub async fn stream(
    api: &Api,
    paths: &[String],
    rate: u32,
    total: usize,
) -> anyhow::Result<Stream> {
    let (pool_tx, mut pool_rx) = mpsc::channel::<Conn>(MAX_CONNECTIONS);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<(Duration, usize)>>();
    let mut opened = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let conn = match pool_rx.try_recv() {
            Ok(conn) => conn,
            Err(_) if opened < MAX_CONNECTIONS => {
                opened += 1;
                api.connect().await?
            }
            Err(_) => tokio::time::timeout(REQUEST_TIMEOUT, pool_rx.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| {
                    anyhow::anyhow!("no connection came free within {REQUEST_TIMEOUT:?}")
                })?,
        };
        let (api, path, pool_tx, done_tx) = (
            api.clone(),
            paths[i % paths.len()].clone(),
            pool_tx.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let mut conn = conn;
            let outcome = match api.get(&mut conn, &path).await {
                Ok(t) if t.status == 200 => {
                    let _ = pool_tx.send(conn).await;
                    Some((t.wall, t.items))
                }
                Ok(_) => {
                    let _ = pool_tx.send(conn).await;
                    None
                }
                // A failed exchange leaves the connection unusable: replace it.
                Err(_) => {
                    if let Ok(fresh) = api.connect().await {
                        let _ = pool_tx.send(fresh).await;
                    }
                    None
                }
            };
            let _ = done_tx.send(outcome);
        });
    }
    drop(done_tx);
    let mut out = Stream::default();
    let mut first = true;
    while let Some(outcome) = done_rx.recv().await {
        match outcome {
            Some((wall, items)) => {
                if first {
                    out.first_items = items;
                    first = false;
                }
                out.latencies.push(wall);
            }
            None => out.errors += 1,
        }
    }
    out.wall = start.elapsed();
    out.latencies.sort_unstable();
    Ok(out)
}
