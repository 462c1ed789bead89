//! `scale`: the scale benchmark. Starts fake kubelets (in `scale kubelets` subprocesses, about 9,000 nodes each
//! under the 20,000 file-descriptor limit), the fake control plane holding every node and pod, and the real server
//! binary (`$RMS_BIN`, else `resource-metrics-server` next to this binary); waits until every node is served, then
//! measures over whole resolutions the server's CPU time and RSS from `/proc`, its scrape rounds from its own
//! `/metrics`, full pod lists and an HPA-style stream of namespaced selector lists; finally runs the bare-fetch
//! floor (`scale floor`, a client that only fetches kubelet bodies) for the CPU ratio, and prints one table.
//!
//! ```text
//! cargo run --release -p e2e --bin scale -- --nodes 5000 --pods-per-node 30 --containers 2 --resolution 15s
//! cargo run --release -p e2e --bin scale -- --sweep 1000,5000,10000
//! scale --smoke        # 200 nodes, one 10 s cycle: CI's check that the harness works
//! ```
//!
//! Loopback only, bounded in count and time; every process it starts is killed when the run ends, fails or is
//! interrupted (children are killed on drop). It never judges timings in tests: the smoke test checks coverage.

/// mimalloc, as the server: the floor (a `scale floor` subprocess) then allocates as the server does, and the fake
/// kubelets, which share the benchmark's cores with the server, spend less on glibc's free-list consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod floor;
mod load;
mod probe;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use e2e::certs::Pki;
use e2e::harness::{Cluster, ClusterOptions, SERVER_BIN_ENV, SERVER_BIN_NAME};
use e2e::kubelet::{FleetOptions, KubeletFleet};
use e2e::model::{ClusterSpec, Model};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::load::Api;
use crate::probe::SelfMetrics;

/// Nodes served by one `scale kubelets` process (two descriptors per node, 20,000 per process).
const NODES_PER_KUBELET_PROCESS: u32 = 9_000;

/// Pods per HPA-style group (one `hpa=h-<g>` label value, all in one namespace).
const PODS_PER_GROUP: u64 = 10;

/// Namespaces the groups are spread over.
const NAMESPACES: u64 = 50;

/// Address index of the smoke run's node 0 (the harness's in-process fleets use 10,000 … 15,010,000; the address
/// mapping supports indices below 15,875,000).
const SMOKE_ADDRESS_OFFSET: u32 = 15_200_000;

/// Scrape concurrency of the floor client (the server's default `max_concurrency`).
const FLOOR_CONCURRENCY: usize = 64;

/// Run the scale benchmark (see the module docs).
#[derive(Parser, Debug, Clone)]
#[command(name = "scale")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Nodes of the cluster.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Pods per node.
    #[arg(long, default_value_t = 30)]
    pods_per_node: u32,
    /// Containers per pod.
    #[arg(long, default_value_t = 2)]
    containers: u32,
    /// `--metric-resolution` of the server (at least 10s).
    #[arg(long, default_value = "15s", value_parser = parse_seconds)]
    resolution: Duration,
    /// Resolutions measured after warm-up.
    #[arg(long, default_value_t = 4)]
    cycles: u32,
    /// `scale kubelets` processes: a number or `auto` (one per 9,000 nodes).
    #[arg(long, default_value = "auto")]
    kubelet_procs: String,
    /// Nice value of the `scale kubelets` processes (run through `nice -n`; 0 runs them directly). Real kubelets
    /// run on their own nodes; here they share the server's cores, and at the default priority their response
    /// bursts (gzip of every body of a dispatch group) delay the server's API threads, which no deployment sees.
    #[arg(long, default_value_t = 10)]
    kubelet_nice: u8,
    /// Run these node counts one after another and print how cost grows (overrides --nodes).
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<u32>,
    /// CI smoke run: 200 nodes, one 10 s cycle, a short, slow HPA stream.
    #[arg(long)]
    smoke: bool,
    /// HPA-style lists per second.
    #[arg(long, default_value_t = 500)]
    hpa_rate: u32,
    /// Seconds of HPA-style lists.
    #[arg(long, default_value_t = 10)]
    hpa_seconds: u32,
    /// Distinct HPA-style selectors cycled through.
    #[arg(long, default_value_t = 500)]
    hpas: u32,
    /// Full pod lists timed.
    #[arg(long, default_value_t = 3)]
    pod_lists: u32,
    /// Hard limit on one run, seconds.
    #[arg(long, default_value_t = 1_800)]
    timeout: u64,
    /// Extra server flags (repeatable), e.g. `--server-arg=--v=2`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Skip the bare-fetch floor.
    #[arg(long)]
    no_floor: bool,
    /// Loopback address index of node 0 (node `i` listens on `node_address(offset + i)`); the smoke run uses a
    /// block no other test uses, so it can run beside a benchmark.
    #[arg(long, default_value_t = 0)]
    address_offset: u32,
    /// Run this command with `{pid}` replaced by the server's pid during the measured cycles (e.g. a profiler).
    #[arg(long)]
    profile_cmd: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
enum Mode {
    /// Serve fake kubelets for nodes `from..to` of the benchmark's cluster (internal).
    Kubelets {
        /// First node index (inclusive).
        #[arg(long)]
        from: u32,
        /// Last node index (exclusive).
        #[arg(long)]
        to: u32,
        /// Pods per node.
        #[arg(long)]
        pods_per_node: u32,
        /// Containers per pod.
        #[arg(long)]
        containers: u32,
        /// Bearer token required.
        #[arg(long)]
        token: String,
        /// Address index of node 0.
        #[arg(long, default_value_t = 0)]
        address_offset: u32,
    },
    /// Run the bare-fetch floor against nodes `0..nodes` (internal).
    Floor {
        /// Nodes to fetch.
        #[arg(long)]
        nodes: u32,
        /// Measured cycles.
        #[arg(long)]
        cycles: u32,
        /// Bearer token.
        #[arg(long)]
        token: String,
        /// Address index of node 0.
        #[arg(long, default_value_t = 0)]
        address_offset: u32,
        /// Pace each cycle over this many seconds (the server's schedule) instead of fetching in a burst.
        #[arg(long)]
        paced_seconds: Option<u64>,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    n.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s}: {e} (want whole seconds like 15s)"))
}

/// The benchmark's cluster, nodes `range`: [`ClusterSpec::uniform_range`] with `containers` containers per pod and
/// pods regrouped into HPA-style groups of [`PODS_PER_GROUP`] (label `hpa=h-<g>`, namespace `ns-<g % 50>`), so a
/// namespaced selector list matches ten pods as an HPA's would. Every process building it agrees on every value.
fn cluster_spec(
    range: std::ops::Range<u32>,
    pods_per_node: u32,
    containers: u32,
    address_offset: u32,
) -> ClusterSpec {
    let first = u64::from(range.start);
    let mut spec = ClusterSpec::uniform_range(range, pods_per_node);
    spec.address_base = spec.address_base.saturating_add(address_offset);
    let per_node = u64::from(pods_per_node.max(1));
    for (k, pod) in spec.pods.iter_mut().enumerate() {
        let global = first * per_node + k as u64;
        let group = global / PODS_PER_GROUP;
        pod.namespace = format!("ns-{}", group % NAMESPACES);
        pod.labels.insert("hpa".into(), format!("h-{group}"));
        if let Some(main) = pod.containers.first().cloned() {
            for c in 1..containers {
                let mut extra = main.clone();
                extra.name = format!("sidecar-{c}");
                extra.cpu_millicores = 1 + (main.cpu_millicores * u64::from(c)) % 97;
                extra.working_set_bytes = (8 + (main.working_set_bytes >> 20) % 64) << 20;
                pod.containers.push(extra);
            }
        }
    }
    spec
}

/// The HPA-style list paths: `hpas` groups spread over the cluster, each `namespaces/ns-<g % 50>/pods` with
/// `labelSelector=hpa=h-<g>`.
fn hpa_paths(nodes: u32, pods_per_node: u32, hpas: u32) -> Vec<String> {
    let groups = (u64::from(nodes) * u64::from(pods_per_node)).div_ceil(PODS_PER_GROUP);
    let hpas = u64::from(hpas).clamp(1, groups.max(1));
    (0..hpas)
        .map(|k| {
            let g = k * groups / hpas;
            format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/ns-{}/pods?labelSelector=hpa%3Dh-{g}",
                g % NAMESPACES
            )
        })
        .collect()
}

/// Everything measured in one run.
#[derive(Debug, Default, Clone)]
struct Report {
    nodes: u32,
    pods: u64,
    containers: u32,
    resolution: Duration,
    cycles: u32,
    kubelet_procs: u32,
    kubelet_nice: u8,
    warm_up: Duration,
    window: Duration,
    cpu_seconds: f64,
    rss_avg_mib: f64,
    rss_max_mib: f64,
    hwm_mib: f64,
    rounds: f64,
    round_avg: f64,
    scrape_p50: Option<f64>,
    scrape_p99: Option<f64>,
    scrapes_ok: f64,
    scrapes_failed: f64,
    nodes_served: usize,
    nodes_scraped_last_cycle: usize,
    pods_listed: usize,
    pod_list_walls: Vec<Duration>,
    pod_list_cpu: Vec<f64>,
    pod_list_bytes: usize,
    hpa: load::Stream,
    hpa_requests: usize,
    hpa_cpu: f64,
    /// The floor fetching in bursts, and paced as the server paces its scrapes (see `floor`).
    floor_burst: Option<FloorRun>,
    floor_paced: Option<FloorRun>,
    load_before: String,
    load_after: String,
}

impl Report {
    fn cpu_per_cycle(&self) -> f64 {
        self.cpu_seconds / f64::from(self.cycles.max(1))
    }

    /// Our CPU per cycle ÷ a floor's.
    fn ratio(&self, floor: &FloorRun) -> f64 {
        self.cpu_per_cycle() / floor.per_cycle().max(1e-9)
    }

    fn cores(&self) -> f64 {
        self.cpu_seconds / self.window.as_secs_f64().max(1e-9)
    }

    /// Server CPU seconds the scrape loop alone spends in `wall`, at the rate measured over the cycles: what is
    /// subtracted from a request phase's CPU to attribute the rest to the requests.
    fn background_cpu(&self, wall: Duration) -> f64 {
        self.cpu_seconds / self.window.as_secs_f64().max(1e-9) * wall.as_secs_f64()
    }

    fn median(values: &[Duration]) -> Duration {
        let mut v = values.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    /// The table of one run, markdown.
    fn table(&self) -> String {
        let mut t = String::new();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let _ = writeln!(
            t,
            "\n### {} nodes × {} pods/node × {} containers ({} pods), resolution {}s, {} measured cycles, {} kubelet process(es) at nice {}\n",
            self.nodes,
            self.pods / u64::from(self.nodes.max(1)),
            self.containers,
            self.pods,
            self.resolution.as_secs(),
            self.cycles,
            self.kubelet_procs,
            self.kubelet_nice
        );
        let _ = writeln!(t, "| measure | value | target | verdict |");
        let _ = writeln!(t, "|---|---|---|---|");
        let row = |t: &mut String, m: &str, v: String, target: &str, verdict: &str| {
            let _ = writeln!(t, "| {m} | {v} | {target} | {verdict} |");
        };
        row(
            &mut t,
            "nodes served (metrics API node list)",
            format!("{}/{}", self.nodes_served, self.nodes),
            "all",
            met(self.nodes_served == self.nodes as usize),
        );
        row(
            &mut t,
            "nodes scraped in the last cycle",
            format!("{}/{}", self.nodes_scraped_last_cycle, self.nodes),
            "all",
            met(self.nodes_scraped_last_cycle == self.nodes as usize),
        );
        row(
            &mut t,
            "pods listed",
            format!("{}/{}", self.pods_listed, self.pods),
            "all",
            met(self.pods_listed as u64 == self.pods),
        );
        row(
            &mut t,
            "server CPU, average over the window",
            format!(
                "{:.4} core ({:.2} s CPU in {:.1} s)",
                self.cores(),
                self.cpu_seconds,
                self.window.as_secs_f64()
            ),
            "≤ 0.05 core",
            met(self.cores() <= 0.05),
        );
        row(
            &mut t,
            "server CPU per cycle",
            format!(
                "{:.3} s ({:.1} µs/node)",
                self.cpu_per_cycle(),
                self.cpu_per_cycle() * 1e6 / f64::from(self.nodes.max(1))
            ),
            "–",
            "–",
        );
        // The target compares like with like: the paced floor fetches on the server's schedule.
        let floors = [
            ("paced", &self.floor_paced, true),
            ("burst", &self.floor_burst, false),
        ];
        for (name, floor, target) in floors {
            let Some(floor) = floor else {
                row(
                    &mut t,
                    &format!("bare-fetch floor, {name}"),
                    "not run".into(),
                    "–",
                    "–",
                );
                continue;
            };
            row(
                &mut t,
                &format!("bare-fetch floor CPU per cycle, {name}"),
                format!(
                    "{:.3} s (cycle wall {})",
                    floor.per_cycle(),
                    floor
                        .walls
                        .iter()
                        .map(|w| format!("{w:.2} s"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "–",
                "–",
            );
            let ratio = self.ratio(floor);
            let (goal, verdict) = if target {
                ("≤ 2×", met(ratio <= 2.0))
            } else {
                ("–", "–")
            };
            row(
                &mut t,
                &format!("our CPU ÷ {name} floor CPU per cycle"),
                format!("{ratio:.2}×"),
                goal,
                verdict,
            );
        }
        row(
            &mut t,
            "server RSS (avg / max in window / peak VmHWM)",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                self.rss_avg_mib, self.rss_max_mib, self.hwm_mib
            ),
            "≤ 150 MiB",
            met(self.rss_max_mib <= 150.0),
        );
        row(
            &mut t,
            "scrape round (tick, spread over the resolution by design)",
            format!("{:.2} s avg over {} rounds", self.round_avg, self.rounds),
            "–",
            "–",
        );
        let scrape = |q: Option<f64>| {
            q.map_or("–".into(), |v| {
                if v.is_finite() {
                    format!("≤ {:.1} ms", v * 1e3)
                } else {
                    "> 10 s".into()
                }
            })
        };
        row(
            &mut t,
            "per-node scrape latency p50 / p99 (histogram bucket bound)",
            format!("{} / {}", scrape(self.scrape_p50), scrape(self.scrape_p99)),
            "–",
            "–",
        );
        row(
            &mut t,
            "scrapes ok / failed in window",
            format!("{} / {}", self.scrapes_ok, self.scrapes_failed),
            "no failures",
            met(self.scrapes_failed == 0.0),
        );
        let list_cpu =
            self.pod_list_cpu.iter().sum::<f64>() / self.pod_list_cpu.len().max(1) as f64;
        let list_median = Self::median(&self.pod_list_walls);
        row(
            &mut t,
            "list all PodMetrics (median wall; server CPU per list)",
            format!(
                "{} wall, {:.0} ms CPU net of scraping ({:.0} ms gross), {:.1} MB JSON ({} lists: {})",
                ms(list_median),
                (list_cpu - self.background_cpu(list_median)).max(0.0) * 1e3,
                list_cpu * 1e3,
                self.pod_list_bytes as f64 / 1e6,
                self.pod_list_walls.len(),
                self.pod_list_walls
                    .iter()
                    .map(|d| ms(*d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "≤ 300 ms",
            met(list_median <= Duration::from_millis(300)),
        );
        let achieved = self.hpa.latencies.len() as f64 / self.hpa.wall.as_secs_f64().max(1e-9);
        row(
            &mut t,
            "HPA-style namespaced selector list p50 / p99 / max",
            format!(
                "{} / {} / {} ({} ok, {} errors, {:.0} req/s achieved, {} pods per answer, {:.0} µs server CPU/request net of scraping, {:.0} µs gross)",
                ms(self.hpa.quantile(0.5)),
                ms(self.hpa.quantile(0.99)),
                ms(self.hpa.quantile(1.0)),
                self.hpa.latencies.len(),
                self.hpa.errors,
                achieved,
                self.hpa.first_items,
                (self.hpa_cpu - self.background_cpu(self.hpa.wall)).max(0.0) * 1e6
                    / self.hpa_requests.max(1) as f64,
                self.hpa_cpu * 1e6 / self.hpa_requests.max(1) as f64
            ),
            "p99 ≤ 2 ms at 500 req/s",
            met(self.hpa.quantile(0.99) <= Duration::from_millis(2) && self.hpa.errors == 0),
        );
        row(
            &mut t,
            "warm-up until every node served",
            format!("{:.1} s", self.warm_up.as_secs_f64()),
            "–",
            "–",
        );
        row(
            &mut t,
            "load average before / after",
            format!("{} / {}", self.load_before, self.load_after),
            "–",
            "(2 cores, shared)",
        );
        t
    }
}

/// Children killed when dropped (`kill_on_drop`), plus the server's pid for `/proc`.
struct Processes {
    kubelets: Vec<Child>,
    server: Option<Child>,
}

fn this_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the scale binary")
}

fn server_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(SERVER_BIN_ENV) {
        Some(p) => PathBuf::from(p),
        None => this_binary()?
            .parent()
            .map(|d| d.join(SERVER_BIN_NAME))
            .ok_or_else(|| anyhow::anyhow!("the scale binary has no directory"))?,
    };
    anyhow::ensure!(
        path.exists(),
        "server binary not found at {} (build it or set {SERVER_BIN_ENV})",
        path.display()
    );
    Ok(path)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Spawns `scale kubelets` for each slice and waits for every `ready` line.
async fn spawn_kubelets(args: &Args, nodes: u32, token: &str) -> anyhow::Result<Vec<Child>> {
    let procs = match args.kubelet_procs.as_str() {
        "auto" => nodes.div_ceil(NODES_PER_KUBELET_PROCESS).max(1),
        n => n
            .parse::<u32>()
            .context("--kubelet-procs")?
            .clamp(1, nodes.max(1)),
    };
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for p in 0..procs {
        let from = nodes * p / procs;
        let to = nodes * (p + 1) / procs;
        let mut command = if args.kubelet_nice == 0 {
            Command::new(this_binary()?)
        } else {
            let mut nice = Command::new("nice");
            nice.args(["-n", &args.kubelet_nice.to_string()])
                .arg(this_binary()?);
            nice
        };
        let mut child = command
            .args([
                "kubelets",
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
            ])
            .args(["--pods-per-node", &args.pods_per_node.to_string()])
            .args(["--address-offset", &args.address_offset.to_string()])
            .args([
                "--containers",
                &args.containers.to_string(),
                "--token",
                token,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning scale kubelets")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from scale kubelets"))?;
        readers.push(BufReader::new(stdout).lines());
        children.push(child);
    }
    let within = Duration::from_secs(120 + u64::from(nodes) / 50);
    for lines in &mut readers {
        let ready = tokio::time::timeout(within, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ready ") {
                    return true;
                }
            }
            false
        })
        .await;
        anyhow::ensure!(
            matches!(ready, Ok(true)),
            "a kubelet process did not become ready within {within:?}"
        );
    }
    Ok(children)
}

/// Spawns the server with the harness's flags plus the resolution and `extra`; waits for `/readyz`.
async fn spawn_server(
    cluster: &Cluster,
    args: &Args,
    log: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let mut extra = vec![format!(
        "--metric-resolution={}s",
        args.resolution.as_secs()
    )];
    if args.resolution < Duration::from_secs(12) {
        // The server wants the kubelet timeout at most 0.9 × resolution; its default is 10 s.
        extra.push("--kubelet-request-timeout=5s".into());
    }
    extra.extend(args.server_args.iter().cloned());
    let name = |flag: &str| flag.split('=').next().unwrap_or_default().to_owned();
    // Later extra flags win over earlier ones.
    let names: Vec<String> = extra.iter().map(|e| name(e)).collect();
    let extra: Vec<String> = extra
        .iter()
        .enumerate()
        .filter(|(i, e)| !names[i + 1..].contains(&name(e)))
        .map(|(_, e)| e.clone())
        .collect();
    // The server rejects repeated flags: an extra flag replaces the harness's flag of the same name.
    let mut flags: Vec<String> = cluster
        .server_args(port)
        .into_iter()
        .filter(|f| !extra.iter().any(|e| name(e) == name(f)))
        .collect();
    flags.extend(extra);
    let file = std::fs::File::create(log)?;
    let child = Command::new(server_binary()?)
        .args(&flags)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .context("spawning the server")?;
    Ok((child, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

async fn wait_ready(api: &Api, child: &mut Child, log: &std::path::Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "server exited with {status}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(t) = api.fetch("/readyz").await
            && t.status == 200
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "server not ready within 120 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs one size end to end.
async fn run_once(args: &Args, nodes: u32) -> anyhow::Result<Report> {
    let mut report = Report {
        nodes,
        pods: u64::from(nodes) * u64::from(args.pods_per_node),
        containers: args.containers,
        resolution: args.resolution,
        cycles: args.cycles,
        load_before: probe::load_average(),
        ..Report::default()
    };
    eprintln!("[scale] {nodes} nodes: building the model and the fake control plane");
    let spec = cluster_spec(
        0..nodes,
        args.pods_per_node,
        args.containers,
        args.address_offset,
    );
    let cluster = Cluster::start_with(
        spec,
        ClusterOptions {
            start_kubelets: false,
            probe_interval: Duration::from_secs(30),
            ..ClusterOptions::default()
        },
    )
    .await?;
    let mut procs = Processes {
        kubelets: spawn_kubelets(args, nodes, cluster.server_token()).await?,
        server: None,
    };
    report.kubelet_procs = u32::try_from(procs.kubelets.len()).unwrap_or(u32::MAX);
    report.kubelet_nice = args.kubelet_nice;
    eprintln!(
        "[scale] {} kubelet process(es) ready; starting the server",
        procs.kubelets.len()
    );

    let log = cluster.dir().join("server.log");
    let (server, addr) = spawn_server(&cluster, args, &log).await?;
    let server = procs.server.insert(server);
    let pid = server
        .id()
        .ok_or_else(|| anyhow::anyhow!("server has no pid"))?;
    let api = Api {
        addr,
        config: Arc::new(e2e::tls::insecure_client_config(Some(
            cluster.front_proxy_client(),
        ))?),
    };
    wait_ready(&api, server, &log).await?;
    let started = Instant::now();

    // Warm-up: every node served (two scrapes each), bounded.
    let warm_deadline = args.resolution * 4 + Duration::from_secs(120 + u64::from(nodes) / 100);
    loop {
        let t = api.fetch("/apis/metrics.k8s.io/v1beta1/nodes").await?;
        if t.items == nodes as usize {
            break;
        }
        if let Some(status) = server.try_wait()? {
            anyhow::bail!(
                "server exited with {status}; log:\n{}",
                std::fs::read_to_string(&log)?
            );
        }
        anyhow::ensure!(
            started.elapsed() < warm_deadline,
            "only {}/{nodes} nodes served after {warm_deadline:?}; log tail:\n{}",
            t.items,
            tail(&log)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    report.warm_up = started.elapsed();
    eprintln!(
        "[scale] all {nodes} nodes served after {:.1} s; measuring {} cycles",
        report.warm_up.as_secs_f64(),
        args.cycles
    );

    // Measured window: CPU and RSS from /proc, rounds and scrapes from /metrics (read outside the window).
    let before = SelfMetrics::parse(&String::from_utf8_lossy(&api.fetch("/metrics").await?.body));
    let profiler = match &args.profile_cmd {
        Some(cmd) => Some(
            Command::new("sh")
                .args(["-c", &cmd.replace("{pid}", &pid.to_string())])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("spawning the profile command")?,
        ),
        None => None,
    };
    let cpu0 = probe::cpu_seconds(pid)?;
    let t0 = Instant::now();
    let window = args.resolution * args.cycles;
    let (mut rss_sum, mut rss_n) = (0.0_f64, 0.0_f64);
    while t0.elapsed() < window {
        let rss = probe::status_mib(pid, "VmRSS")?;
        rss_sum += rss;
        rss_n += 1.0;
        report.rss_max_mib = report.rss_max_mib.max(rss);
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(t0.elapsed()))).await;
    }
    report.cpu_seconds = probe::cpu_seconds(pid)? - cpu0;
    report.window = t0.elapsed();
    let end_unix = unix_now();
    if let Some(mut p) = profiler {
        // Let a profiler with its own duration finish; bounded.
        let _ = tokio::time::timeout(Duration::from_secs(30), p.wait()).await;
    }
    report.rss_avg_mib = rss_sum / rss_n.max(1.0);
    report.hwm_mib = probe::status_mib(pid, "VmHWM")?;
    let after = SelfMetrics::parse(&String::from_utf8_lossy(&api.fetch("/metrics").await?.body));
    report.rounds = after.tick_count - before.tick_count;
    report.round_avg = (after.tick_sum - before.tick_sum) / report.rounds.max(1.0);
    report.scrape_p50 = after.request_quantile(&before, 0.5);
    report.scrape_p99 = after.request_quantile(&before, 0.99);
    report.scrapes_ok = after.requests_ok - before.requests_ok;
    report.scrapes_failed = after.requests_failed - before.requests_failed;
    let cycle_start = end_unix - args.resolution.as_secs_f64() * 1.1;
    report.nodes_scraped_last_cycle = after
        .last_request
        .values()
        .filter(|t| **t >= cycle_start)
        .count();
    report.nodes_served = api.fetch("/apis/metrics.k8s.io/v1beta1/nodes").await?.items;

    // Full pod lists, one at a time, with the server's CPU per list.
    eprintln!("[scale] timing {} full pod lists", args.pod_lists);
    for _ in 0..args.pod_lists.max(1) {
        let cpu = probe::cpu_seconds(pid)?;
        let t = api.fetch("/apis/metrics.k8s.io/v1beta1/pods").await?;
        report.pod_list_cpu.push(probe::cpu_seconds(pid)? - cpu);
        anyhow::ensure!(t.status == 200, "pod list answered {}", t.status);
        report.pods_listed = t.items;
        report.pod_list_bytes = t.bytes;
        report.pod_list_walls.push(t.wall);
    }

    // HPA-style stream.
    let paths = hpa_paths(nodes, args.pods_per_node, args.hpas);
    report.hpa_requests = (args.hpa_rate * args.hpa_seconds) as usize;
    eprintln!(
        "[scale] {} HPA-style lists at {} req/s over {} selectors",
        report.hpa_requests,
        args.hpa_rate,
        paths.len()
    );
    let cpu = probe::cpu_seconds(pid)?;
    report.hpa = load::stream(&api, &paths, args.hpa_rate, report.hpa_requests).await?;
    report.hpa_cpu = probe::cpu_seconds(pid)? - cpu;

    // Stop the server, then the floor against the same kubelets.
    if let Some(mut s) = procs.server.take() {
        let _ = s.kill().await;
    }
    if !args.no_floor {
        eprintln!("[scale] running the bare-fetch floor in bursts");
        report.floor_burst = Some(
            run_floor(
                nodes,
                args.cycles,
                cluster.server_token(),
                args.address_offset,
                None,
            )
            .await?,
        );
        eprintln!(
            "[scale] running the bare-fetch floor paced over {} resolutions",
            args.cycles
        );
        report.floor_paced = Some(
            run_floor(
                nodes,
                args.cycles,
                cluster.server_token(),
                args.address_offset,
                Some(args.resolution),
            )
            .await?,
        );
    }
    report.load_after = probe::load_average();
    drop(procs);
    Ok(report)
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One run of the floor: CPU seconds over its measured cycles and each cycle's wall seconds.
#[derive(Debug, Clone)]
struct FloorRun {
    cpu: f64,
    walls: Vec<f64>,
}

impl FloorRun {
    fn per_cycle(&self) -> f64 {
        self.cpu / self.walls.len().max(1) as f64
    }
}

/// Runs `scale floor`, in bursts or paced over `paced` (a resolution) per cycle.
async fn run_floor(
    nodes: u32,
    cycles: u32,
    token: &str,
    address_offset: u32,
    paced: Option<Duration>,
) -> anyhow::Result<FloorRun> {
    let mut child = Command::new(this_binary()?)
        .args([
            "floor",
            "--nodes",
            &nodes.to_string(),
            "--cycles",
            &cycles.max(1).to_string(),
        ])
        .args(["--token", token])
        .args(["--address-offset", &address_offset.to_string()])
        .args(paced.map(|p| format!("--paced-seconds={}", p.as_secs())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning scale floor")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from scale floor"))?;
    let mut lines = BufReader::new(stdout).lines();
    let within = Duration::from_secs(60 + u64::from(nodes) / 20 * u64::from(cycles.max(1)))
        + paced.unwrap_or_default() * cycles.max(1);
    tokio::time::timeout(within, async {
        let mut walls = Vec::new();
        while let Some(line) = lines.next_line().await? {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["floor", "cycle", wall, _bytes, failures] => {
                    anyhow::ensure!(*failures == "0", "floor fetches failed: {line}");
                    walls.push(wall.parse()?);
                }
                ["floor", "cpu", cpu, ..] => {
                    return Ok(FloorRun {
                        cpu: cpu.parse()?,
                        walls,
                    });
                }
                _ => {}
            }
        }
        anyhow::bail!("scale floor ended without a result")
    })
    .await
    .with_context(|| format!("scale floor did not finish within {within:?}"))?
}

/// `scale kubelets`: serve a slice of the benchmark's cluster until SIGINT/SIGTERM.
async fn serve_kubelets(spec: ClusterSpec, token: String) -> anyhow::Result<()> {
    anyhow::ensure!(!spec.nodes.is_empty(), "--from must be below --to");
    let model = Model::new(spec)?;
    let pki = Pki::new()?;
    let cert = pki.issue_server("kubelet", &["localhost".into(), "127.0.0.1".into()])?;
    let options = FleetOptions {
        tls: Arc::new(e2e::tls::server_config(&cert, &[])?),
        required_token: Some(token),
        max_stats_lag_ms: 500,
    };
    let fleet = KubeletFleet::start(&model, None, options)
        .await
        .context("binding kubelet listeners")?;
    println!("ready {}", fleet.nodes().len());
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

fn apply_smoke(args: &mut Args) {
    args.nodes = 200;
    args.cycles = 1;
    args.resolution = Duration::from_secs(10);
    args.hpa_rate = 50;
    args.hpa_seconds = 2;
    args.hpas = 20;
    args.pod_lists = 1;
    args.timeout = 120;
    args.sweep.clear();
    // Above the blocks the harness picks for in-process fleets (10,000 … 15,010,000): collides with nothing.
    args.address_offset = SMOKE_ADDRESS_OFFSET;
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let sizes = if args.sweep.is_empty() {
        vec![args.nodes]
    } else {
        args.sweep.clone()
    };
    let mut reports = Vec::new();
    for nodes in sizes {
        let run = tokio::time::timeout(Duration::from_secs(args.timeout), run_once(&args, nodes));
        let report = run
            .await
            .with_context(|| format!("{nodes}-node run exceeded --timeout {} s", args.timeout))??;
        println!("{}", report.table());
        reports.push(report);
    }
    if reports.len() > 1 {
        println!("{}", sweep_table(&reports));
    }
    for r in &reports {
        println!(
            "SCALE nodes={} served={} scraped_last_cycle={} pods_listed={}/{}",
            r.nodes, r.nodes_served, r.nodes_scraped_last_cycle, r.pods_listed, r.pods
        );
    }
    Ok(())
}

fn sweep_table(reports: &[Report]) -> String {
    let mut t = String::from(
        "\n### Node sweep\n\n| nodes | pods | served | CPU core avg | CPU/cycle | µs CPU/node/cycle | floor CPU/cycle paced / burst | ratio paced / burst | RSS max MiB | MiB/1k nodes | pod list median | HPA p99 | load after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let floors = |f: &dyn Fn(&FloorRun) -> String| match (&r.floor_paced, &r.floor_burst) {
            (Some(p), Some(b)) => format!("{} / {}", f(p), f(b)),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {}/{} | {:.4} | {:.3} s | {:.1} | {} | {} | {:.1} | {:.1} | {:.0} ms | {:.1} ms | {} |",
            r.nodes,
            r.pods,
            r.nodes_served,
            r.nodes,
            r.cores(),
            r.cpu_per_cycle(),
            r.cpu_per_cycle() * 1e6 / f64::from(r.nodes.max(1)),
            floors(&|f| format!("{:.3} s", f.per_cycle())),
            floors(&|f| format!("{:.2}×", r.ratio(f))),
            r.rss_max_mib,
            r.rss_max_mib * 1000.0 / f64::from(r.nodes.max(1)),
            Report::median(&r.pod_list_walls).as_secs_f64() * 1e3,
            r.hpa.quantile(0.99).as_secs_f64() * 1e3,
            r.load_after
        );
    }
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    match args.mode.clone() {
        Some(Mode::Kubelets {
            from,
            to,
            pods_per_node,
            containers,
            token,
            address_offset,
        }) => {
            let spec = cluster_spec(from..to, pods_per_node, containers, address_offset);
            serve_kubelets(spec, token).await
        }
        Some(Mode::Floor {
            nodes,
            cycles,
            token,
            address_offset,
            paced_seconds,
        }) => {
            floor::run(floor::FloorArgs {
                nodes,
                cycles,
                concurrency: FLOOR_CONCURRENCY,
                token,
                address_offset,
                paced: paced_seconds.map(Duration::from_secs),
            })
            .await
        }
        None => {
            if args.smoke {
                apply_smoke(&mut args);
            }
            let mut term = signal(SignalKind::terminate())?;
            // Dropping the benchmark future kills every child (kill_on_drop).
            tokio::select! {
                result = bench(args) => result,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; every started process was killed"),
                _ = term.recv() => anyhow::bail!("terminated; every started process was killed"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_process_builds_the_same_slice_of_the_cluster() {
        let whole = cluster_spec(0..10, 30, 2, 0);
        let slice = cluster_spec(4..7, 30, 2, 0);
        let from_whole: Vec<_> = whole.pods[4 * 30..7 * 30].to_vec();
        assert_eq!(slice.pods.len(), from_whole.len());
        for (a, b) in slice.pods.iter().zip(&from_whole) {
            assert_eq!(
                (&a.namespace, &a.name, &a.labels),
                (&b.namespace, &b.name, &b.labels)
            );
            assert_eq!(a.containers, b.containers);
        }
        assert_eq!(whole.pods[0].containers.len(), 2);
    }

    #[test]
    fn each_hpa_selector_matches_one_group_of_ten_pods_in_its_namespace() {
        let spec = cluster_spec(0..20, 30, 1, 0);
        for path in hpa_paths(20, 30, 7) {
            let (ns, group) = path
                .trim_start_matches("/apis/metrics.k8s.io/v1beta1/namespaces/")
                .split_once("/pods?labelSelector=hpa%3D")
                .unwrap();
            let matching = spec
                .pods
                .iter()
                .filter(|p| {
                    p.namespace == ns && p.labels.get("hpa").map(String::as_str) == Some(group)
                })
                .count();
            assert_eq!(matching, 10, "{path}");
        }
    }
}
