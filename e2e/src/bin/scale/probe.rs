//! Reading a process's cost from `/proc` (CPU time, resident memory) and the server's own `/metrics` text
//! (round durations, per-node scrape latency and recency).
//!
//! Pure reading and parsing; it must not start or stop anything.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every mainstream Linux build).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) of process `pid`, all threads, seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse::<f64>()?)
    };
    // `rest` starts at field 3, so field n is at index n - 3.
    Ok((tick(11)? + tick(12)?) / TICKS_PER_SECOND)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn status_mib(pid: u32, key: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .ok_or_else(|| anyhow::anyhow!("no {key} in /proc/{pid}/status"))?;
    let kib: f64 = line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .take(3)
                .map(str::to_owned)
                .reduce(|a, b| format!("{a} {b}"))
        })
        .unwrap_or_else(|| "?".into())
}

/// What the benchmark needs from one `/metrics` scrape of the server.
#[derive(Debug, Default, Clone)]
pub struct SelfMetrics {
    /// `metrics_server_manager_tick_duration_seconds` sum and count.
    pub tick_sum: f64,
    /// Number of rounds observed.
    pub tick_count: f64,
    /// `metrics_server_kubelet_request_duration_seconds` buckets summed over nodes: upper bound → cumulative count.
    pub request_buckets: BTreeMap<OrderedF64, f64>,
    /// Per node: `metrics_server_kubelet_last_request_time_seconds`.
    pub last_request: BTreeMap<String, f64>,
    /// `metrics_server_kubelet_request_total{success="true"}`.
    pub requests_ok: f64,
    /// `metrics_server_kubelet_request_total{success="false"}`.
    pub requests_failed: f64,
}

/// An `f64` bucket bound usable as a map key (bounds are finite or +Inf, never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderedF64(pub f64);

impl Eq for OrderedF64 {}

impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl SelfMetrics {
    /// Parses Prometheus text, keeping only the series named above.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "metrics_server_manager_tick_duration_seconds_sum" => out.tick_sum = value,
                "metrics_server_manager_tick_duration_seconds_count" => out.tick_count = value,
                "metrics_server_kubelet_request_duration_seconds_bucket" => {
                    if let Some(le) = label(labels, "le") {
                        let bound = if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap_or(f64::INFINITY)
                        };
                        *out.request_buckets.entry(OrderedF64(bound)).or_default() += value;
                    }
                }
                "metrics_server_kubelet_last_request_time_seconds" => {
                    if let Some(node) = label(labels, "node") {
                        out.last_request.insert(node.to_owned(), value);
                    }
                }
                "metrics_server_kubelet_request_total" => match label(labels, "success") {
                    Some("true") => out.requests_ok = value,
                    Some("false") => out.requests_failed = value,
                    _ => {}
                },
                _ => {}
            }
        }
        out
    }

    /// Quantile `q` of per-node request durations observed between `before` and `self`, as the upper bound of
    /// the bucket holding it, seconds (`None` without observations).
    pub fn request_quantile(&self, before: &Self, q: f64) -> Option<f64> {
        let deltas: Vec<(f64, f64)> = self
            .request_buckets
            .iter()
            .map(|(b, c)| {
                (
                    b.0,
                    c - before.request_buckets.get(b).copied().unwrap_or(0.0),
                )
            })
            .collect();
        let total = deltas.last()?.1;
        if total <= 0.0 {
            return None;
        }
        deltas
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(b, _)| *b)
    }
}

/// The value of label `key` in `a="x",b="y"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let labels = labels.trim_end_matches('}');
    labels.split("\",").find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim_start_matches(',') == key).then(|| v.trim_matches('"'))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn self_metrics_are_parsed_from_prometheus_text() {
        let text = "# HELP x\n\
            metrics_server_manager_tick_duration_seconds_sum 31.5\n\
            metrics_server_manager_tick_duration_seconds_count 2\n\
            metrics_server_kubelet_request_duration_seconds_bucket{node=\"node-1\",le=\"0.005\"} 3\n\
            metrics_server_kubelet_request_duration_seconds_bucket{node=\"node-1\",le=\"+Inf\"} 4\n\
            metrics_server_kubelet_request_duration_seconds_bucket{node=\"node-2\",le=\"0.005\"} 1\n\
            metrics_server_kubelet_request_duration_seconds_bucket{node=\"node-2\",le=\"+Inf\"} 4\n\
            metrics_server_kubelet_last_request_time_seconds{node=\"node-2\"} 1.7e9\n\
            metrics_server_kubelet_request_total{success=\"true\"} 8\n";
        let m = SelfMetrics::parse(text);
        assert_eq!(m.tick_count, 2.0);
        assert_eq!(m.tick_sum, 31.5);
        assert_eq!(m.requests_ok, 8.0);
        assert_eq!(m.last_request.get("node-2"), Some(&1.7e9));
        let empty = SelfMetrics::default();
        assert_eq!(m.request_quantile(&empty, 0.5), Some(0.005));
        assert_eq!(m.request_quantile(&empty, 0.99), Some(f64::INFINITY));
    }

    #[test]
    fn cpu_and_memory_of_this_process_are_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(status_mib(pid, "VmRSS").unwrap() > 0.0);
    }
}
