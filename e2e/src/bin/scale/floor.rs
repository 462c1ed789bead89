//! The bare-fetch floor: a keep-alive HTTPS client that fetches every fake kubelet's `/metrics/resource` once per
//! cycle with the same request headers and concurrency as the server, reads the bodies and does nothing else. Run
//! as a subprocess (`scale floor …`) so its own CPU time can be read from `/proc` like the server's.
//!
//! It must not decode, store or serve anything: whatever the server spends above this is its own work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::model::{DEFAULT_KUBELET_PORT, node_address};
use tokio::sync::Mutex;

use crate::client::Conn;
use crate::probe;

/// Deadline of one kubelet exchange, as the server's default `--kubelet-request-timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between measured cycles: idle time costs no CPU, so cycles need not be a full resolution apart.
const PAUSE: Duration = Duration::from_millis(500);

/// Settings of one floor run.
pub struct FloorArgs {
    /// Nodes `0..nodes` of the uniform cluster.
    pub nodes: u32,
    /// Measured cycles after one warm-up cycle (which opens the connections).
    pub cycles: u32,
    /// Fetches in flight.
    pub concurrency: usize,
    /// Bearer token the kubelets require.
    pub token: String,
    /// Address index of node 0.
    pub address_offset: u32,
}

/// Runs the floor and prints `floor cycle <wall s> <bytes> <failures>` per measured cycle and
/// `floor cpu <seconds> <cycles>` at the end.
pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let config = Arc::new(e2e::tls::insecure_client_config(None)?);
    let slots: Arc<Vec<Mutex<Option<Conn>>>> =
        Arc::new((0..args.nodes).map(|_| Mutex::new(None)).collect());
    let auth = format!("Bearer {}", args.token);
    let base = args.address_offset;
    let warm = cycle(&slots, &config, &auth, args.concurrency, base).await;
    println!("floor warm {:.3} {} {}", warm.0, warm.1, warm.2);
    let pid = std::process::id();
    let cpu_before = probe::cpu_seconds(pid)?;
    for _ in 0..args.cycles {
        tokio::time::sleep(PAUSE).await;
        let (wall, bytes, failures) = cycle(&slots, &config, &auth, args.concurrency, base).await;
        println!("floor cycle {wall:.3} {bytes} {failures}");
    }
    let cpu = probe::cpu_seconds(pid)? - cpu_before;
    println!(
        "floor cpu {cpu:.3} {} {:.1}",
        args.cycles,
        probe::status_mib(pid, "VmHWM").unwrap_or(0.0)
    );
    Ok(())
}

/// One pass over every node: wall seconds, body bytes, failed fetches.
async fn cycle(
    slots: &Arc<Vec<Mutex<Option<Conn>>>>,
    config: &Arc<rustls::ClientConfig>,
    auth: &str,
    concurrency: usize,
    base: u32,
) -> (f64, usize, usize) {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (slots, config, next, auth) =
            (slots.clone(), config.clone(), next.clone(), auth.to_owned());
        workers.spawn(async move {
            let (mut bytes, mut failures) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                match fetch(i, base, slot, &config, &auth).await {
                    Ok(n) => bytes += n,
                    Err(_) => failures += 1,
                }
            }
            (bytes, failures)
        });
    }
    let (mut bytes, mut failures) = (0, 0);
    while let Some(done) = workers.join_next().await {
        if let Ok((b, f)) = done {
            bytes += b;
            failures += f;
        }
    }
    (start.elapsed().as_secs_f64(), bytes, failures)
}

async fn fetch(
    index: usize,
    base: u32,
    slot: &Mutex<Option<Conn>>,
    config: &Arc<rustls::ClientConfig>,
    auth: &str,
) -> anyhow::Result<usize> {
    let mut guard = slot.lock().await;
    if guard.is_none() {
        let ip = node_address(base.saturating_add(u32::try_from(index)?));
        let addr = SocketAddr::from((ip, DEFAULT_KUBELET_PORT));
        *guard = Some(Conn::open(addr, config.clone(), REQUEST_TIMEOUT).await?);
    }
    let conn = guard
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("connection slot emptied"))?;
    let headers = [
        ("Accept", "text/plain;version=0.0.4"),
        ("Accept-Encoding", "gzip"),
        ("Authorization", auth),
    ];
    match conn
        .get("/metrics/resource", &headers, false, REQUEST_TIMEOUT)
        .await
    {
        Ok((200, _, n)) => Ok(n),
        Ok((status, _, _)) => anyhow::bail!("status {status}"),
        Err(e) => {
            *guard = None;
            Err(e)
        }
    }
}
