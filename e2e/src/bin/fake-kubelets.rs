//! `fake-kubelets`: serves the fake kubelets of nodes `--from..--to` of `ClusterSpec::uniform(<nodes>, <pods>)`
//! in one process, so the scale benchmark can split tens of thousands of nodes across processes (about 9 000 per
//! process under the 20 000 file-descriptor limit: one listener plus one connection per node). Prints
//! `ready <count>` once every listener is bound, then the total request count every `--report-every` seconds,
//! until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use e2e::certs::Pki;
use e2e::kubelet::{FleetOptions, KubeletFleet};
use e2e::model::{ClusterSpec, Model};
use tokio::signal::unix::{SignalKind, signal};

/// Serve fake kubelets for a slice of a uniform cluster.
#[derive(Parser, Debug)]
struct Args {
    /// First node index served (inclusive).
    #[arg(long, default_value_t = 0)]
    from: u32,
    /// Last node index served (exclusive).
    #[arg(long)]
    to: u32,
    /// Pods per node (must match the control plane's `ClusterSpec::uniform`).
    #[arg(long, default_value_t = 30)]
    pods_per_node: u32,
    /// Kubelet port on every node address.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Bearer token the kubelets require; none accepts any caller.
    #[arg(long)]
    token: Option<String>,
    /// Per-pod stats lag, ms.
    #[arg(long, default_value_t = 500)]
    stats_lag_ms: i64,
    /// Seconds between request-count reports (0: never).
    #[arg(long, default_value_t = 10)]
    report_every: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.from < args.to, "--from must be below --to");
    let mut spec = ClusterSpec::uniform_range(args.from..args.to, args.pods_per_node);
    for n in &mut spec.nodes {
        n.kubelet_port = args.port;
    }
    let model = Model::new(spec)?;
    let pki = Pki::new()?;
    let cert = pki.issue_server("kubelet", &["localhost".into(), "127.0.0.1".into()])?;
    let options = FleetOptions {
        tls: Arc::new(e2e::tls::server_config(&cert, &[])?),
        required_token: args.token.clone(),
        max_stats_lag_ms: args.stats_lag_ms,
    };
    let fleet = KubeletFleet::start(&model, None, options)
        .await
        .context("binding kubelet listeners")?;
    println!("ready {}", fleet.nodes().len());

    let mut term = signal(SignalKind::terminate())?;
    let mut report = tokio::time::interval(Duration::from_secs(args.report_every.max(1)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = report.tick(), if args.report_every > 0 => println!("requests {}", fleet.total_requests()),
        }
    }
    println!("requests {}", fleet.total_requests());
    Ok(())
}
