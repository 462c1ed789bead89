//! The bare-fetch floor: a keep-alive HTTPS client that fetches every fake kubelet's `/metrics/resource` once per
//! cycle with the same request headers and concurrency as the server, reads the bodies and does nothing else. Run
//! as a subprocess (`scale floor …`) so its own CPU time can be read from `/proc` like the server's.
//!
//! Two schedules:
//! - **burst**: each cycle fetches every node back to back, `concurrency` at a time, with a short pause between
//!   cycles. The cheapest way to fetch the bytes: threads never park while work is queued.
//! - **paced**: each cycle lasts one resolution and fetches the nodes in [`QUANTA_PER_CYCLE`] equal groups, one
//!   group at the start of each quantum, the way the server spreads its scrapes (DESIGN.md "load spread": one group
//!   per resolution / 60). This pays what flat load costs any client (a wake-up per group, replies that find
//!   their threads parked), so what the server spends above it is decode, storage and bookkeeping.
//!
//! It must not decode, store or serve anything: whatever the server spends above this is its own work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::model::{DEFAULT_KUBELET_PORT, node_address};
use tokio::sync::{Mutex, Notify, mpsc};

use crate::client::Conn;
use crate::probe;

/// Deadline of one kubelet exchange, as the server's default `--kubelet-request-timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between burst cycles: idle time costs no CPU, so cycles need not be a full resolution apart.
const PAUSE: Duration = Duration::from_millis(500);

/// Groups per paced cycle: the server's dispatch quanta per round (`scrape::schedule::QUANTA_PER_ROUND`).
pub const QUANTA_PER_CYCLE: u32 = 60;

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
    /// `Some(resolution)`: paced cycles of that length; `None`: burst cycles.
    pub paced: Option<Duration>,
}

/// Connection slots, one per node, opened on first use and kept alive.
type Slots = Arc<Vec<Mutex<Option<Conn>>>>;

/// Runs the floor and prints `floor cycle <wall s> <bytes> <failures>` per measured cycle and
/// `floor cpu <seconds> <cycles>` at the end.
pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let config = Arc::new(e2e::tls::insecure_client_config(None)?);
    let slots: Slots = Arc::new((0..args.nodes).map(|_| Mutex::new(None)).collect());
    let auth = format!("Bearer {}", args.token);
    let base = args.address_offset;
    let warm = cycle(&slots, &config, &auth, args.concurrency, base).await;
    println!("floor warm {:.3} {} {}", warm.0, warm.1, warm.2);
    let pool = args
        .paced
        .map(|_| Pool::start(&slots, &config, &auth, args.concurrency, base));
    let pid = std::process::id();
    let cpu_before = probe::cpu_seconds(pid)?;
    for _ in 0..args.cycles {
        let (wall, bytes, failures) = match (&pool, args.paced) {
            (Some(pool), Some(resolution)) => pool.cycle(slots.len(), resolution).await,
            _ => {
                tokio::time::sleep(PAUSE).await;
                cycle(&slots, &config, &auth, args.concurrency, base).await
            }
        };
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

/// The paced schedule's fetchers: a fixed pool of workers taking node indices from one channel, as the server's
/// scrape workers take due nodes.
struct Pool {
    jobs: mpsc::Sender<usize>,
    /// Fetches finished, body bytes and failures, over the pool's life.
    done: Arc<(AtomicUsize, AtomicUsize, AtomicUsize)>,
    finished: Arc<Notify>,
}

impl Pool {
    fn start(
        slots: &Slots,
        config: &Arc<rustls::ClientConfig>,
        auth: &str,
        concurrency: usize,
        base: u32,
    ) -> Self {
        let (jobs, rx) = mpsc::channel::<usize>(concurrency.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new((
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ));
        let finished = Arc::new(Notify::new());
        for _ in 0..concurrency.max(1) {
            let (slots, config, auth, rx, done, finished) = (
                slots.clone(),
                config.clone(),
                auth.to_owned(),
                rx.clone(),
                done.clone(),
                finished.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Some(i) = rx.lock().await.recv().await else {
                        return;
                    };
                    let Some(slot) = slots.get(i) else { continue };
                    match fetch(i, base, slot, &config, &auth).await {
                        Ok(n) => done.1.fetch_add(n, Ordering::Relaxed),
                        Err(_) => done.2.fetch_add(1, Ordering::Relaxed),
                    };
                    done.0.fetch_add(1, Ordering::Release);
                    finished.notify_one();
                }
            });
        }
        Pool {
            jobs,
            done,
            finished,
        }
    }

    /// One resolution: node group `g` of [`QUANTA_PER_CYCLE`] is handed to the workers at the start of quantum `g`.
    /// Returns the wall seconds from the first group's start to the last fetch's end (at most one resolution unless
    /// fetches fall behind), body bytes and failed fetches; the cycle itself lasts the whole resolution.
    async fn cycle(&self, nodes: usize, resolution: Duration) -> (f64, usize, usize) {
        let start = tokio::time::Instant::now();
        let quantum = resolution / QUANTA_PER_CYCLE;
        let groups = QUANTA_PER_CYCLE as usize;
        let before = (
            self.done.0.load(Ordering::Acquire),
            self.done.1.load(Ordering::Relaxed),
            self.done.2.load(Ordering::Relaxed),
        );
        for g in 0..groups {
            tokio::time::sleep_until(start + quantum * u32::try_from(g).unwrap_or(u32::MAX)).await;
            for i in nodes * g / groups..nodes * (g + 1) / groups {
                if self.jobs.send(i).await.is_err() {
                    break;
                }
            }
        }
        while self.done.0.load(Ordering::Acquire) - before.0 < nodes {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.finished.notified()).await;
        }
        let wall = start.elapsed().as_secs_f64();
        tokio::time::sleep_until(start + resolution).await;
        (
            wall,
            self.done.1.load(Ordering::Relaxed) - before.1,
            self.done.2.load(Ordering::Relaxed) - before.2,
        )
    }
}

/// One pass over every node, `concurrency` at a time: wall seconds, body bytes, failed fetches.
async fn cycle(
    slots: &Slots,
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
