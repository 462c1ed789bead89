//! Telemetry: the tracing subscriber (text or JSON, `-v` levels) and the server's own Prometheus metrics.
//!
//! [`SelfMetrics`] is the one place the metrics engine is named; other modules record through its methods and never
//! see an engine type. It keeps metrics-server's six `metrics_server_*` families (same names, labels and buckets) so
//! dashboards carry over, plus our own `resource_metrics_server_*` families. Metrics live in a registry owned by
//! the `SelfMetrics` value (no global registry), created by `runtime` and passed down.
//!
//! This module must not serve HTTP (the `server` module calls [`SelfMetrics::render`]).

mod self_metrics;

pub use self_metrics::{
    CHUNK_BYTES as METRICS_CHUNK_BYTES, CONTENT_TYPE as METRICS_CONTENT_TYPE, Exposition,
    SelfMetrics, tick_buckets,
};

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A global subscriber was already set (e.g. `init` called twice).
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Installs the global tracing subscriber, writing to stderr in `format`.
///
/// `RUST_LOG`, when set and valid, replaces the level derived from `verbosity` (see [`filter_directives`]).
///
/// # Errors
/// [`Error::Install`] when a global subscriber is already installed.
pub fn init(format: LogFormat, verbosity: u8) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: container logs (`kubectl logs`) and files get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|e| Error::Install(e.to_string()))
}

/// The `EnvFilter` directives for a klog-style `-v` level.
///
/// 0–1: `info` everywhere. 2–4: debug for this crate (per-request and per-scrape lines), info for libraries.
/// 5 and above: trace for this crate and debug for libraries; library trace output (every TLS record and HTTP/2
/// frame) would drown the server's own lines, so it is only reachable through `RUST_LOG`.
pub fn filter_directives(verbosity: u8) -> &'static str {
    match verbosity {
        0..=1 => "info",
        2..=4 => "info,resource_metrics_server=debug",
        _ => "debug,resource_metrics_server=trace",
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels_map_to_filters() {
        let cases = [
            (0, "info"),
            (1, "info"),
            (2, "info,resource_metrics_server=debug"),
            (5, "debug,resource_metrics_server=trace"),
        ];
        for (v, want) in cases {
            assert_eq!(filter_directives(v), want, "-v={v}");
            assert!(
                EnvFilter::try_new(want).is_ok(),
                "-v={v} gives a valid filter"
            );
        }
    }
}
