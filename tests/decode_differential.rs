//! Differential test of `scrape::decode::decode` against prometheus-parse 0.2.5 (a dev-only oracle): on every
//! fixture and on deterministic pseudo-random bodies, the oracle's samples are run through a plain map-based
//! reading of the decode rules and compared field by field with the decoder's batch.
//!
//! prometheus-parse does not unescape label values, splits label sets on `,` and `=`, ignores unparseable lines and
//! accepts negative timestamps; the generator therefore only emits bodies inside what both accept (no escapes,
//! commas, equals signs or empty label sets in label values, non-negative integer timestamps). The decoder's
//! stricter rules are covered by its unit tests.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Tests may panic on broken invariants.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prometheus_parse::{Sample, Scrape, Value};
use resource_metrics_server::scrape::decode::{
    ContainerSample, CpuSample, GaugeSample, NodeBatch, NodeSample, decode,
};

/// Request time for samples without a timestamp, ms since the epoch.
const NOW: i64 = 1_700_000_000_000;

/// Fixtures outside what the oracle reads correctly, with the reason; the decoder's unit tests cover them.
const ORACLE_BLIND: [(&str, &str); 3] = [
    (
        "derived-label-escapes.prom",
        "prometheus-parse does not unescape label values",
    ),
    (
        "derived-malformed-negative-timestamp.prom",
        "prometheus-parse accepts negative timestamps",
    ),
    (
        "derived-malformed-openmetrics.prom",
        "prometheus-parse falls back to the default time on float timestamps",
    ),
];

/// Every `tests/fixtures/*.prom` file, by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "prom"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("fixture readable"))
        })
        .collect();
    out.sort();
    out
}

/// Parses with the oracle; samples without a timestamp get `NOW`.
fn oracle_samples(body: &str) -> Vec<Sample> {
    // prometheus-parse takes the default time as a chrono value; obtain one through the oracle itself.
    let probe = Scrape::parse(std::iter::once(Ok(format!("probe 1 {NOW}")))).expect("probe parses");
    let now = probe.samples[0].timestamp;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse_at(lines, now).expect("oracle parses").samples
}

fn value(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("unexpected oracle value {other:?}"),
    }
}

/// A finite, non-negative value scaled and rounded, strictly below 2^63.
fn unit(v: f64, scale: f64) -> Option<u64> {
    let scaled = (v * scale).round();
    (v.is_finite() && v >= 0.0 && scaled < 9_223_372_036_854_775_808.0).then_some(scaled as u64)
}

#[derive(Default)]
struct Fields {
    cpu: Option<CpuSample>,
    memory: Option<GaugeSample>,
    swap: Option<GaugeSample>,
    start_time_ms: Option<i64>,
}

/// The decode rules, written as plainly as possible over the oracle's samples.
fn expected(samples: &[Sample]) -> NodeBatch<'static> {
    let mut node = NodeSample::default();
    let mut containers: BTreeMap<(String, String, String), Fields> = BTreeMap::new();
    let (mut resource_error, mut scrape_error, mut rejected) = (false, false, 0u32);
    for s in samples {
        let v = value(s);
        let ts = s.timestamp.timestamp_millis();
        let key = || {
            let get = |name: &str| {
                s.labels
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            Some((get("namespace")?, get("pod")?, get("container")?))
        };
        let cpu = unit(v, 1e9).map(|ns| CpuSample {
            cumulative_cpu_ns: ns,
            timestamp_ms: ts,
        });
        let gauge = unit(v, 1.0).map(|bytes| GaugeSample {
            bytes,
            timestamp_ms: ts,
        });
        let start = unit(v, 1e3).map(|ms| i64::try_from(ms).unwrap());
        let mut container = |set: &mut dyn FnMut(&mut Fields) -> bool| match key() {
            Some(k) => {
                let mut fields = containers.remove(&k).unwrap_or_default();
                let ok = set(&mut fields);
                let present = fields.cpu.is_some()
                    || fields.memory.is_some()
                    || fields.swap.is_some()
                    || fields.start_time_ms.is_some();
                if present {
                    containers.insert(k, fields);
                }
                ok
            }
            None => false,
        };
        let ok = match s.metric.as_str() {
            "node_cpu_usage_seconds_total" | "node_cpu_usage_seconds" => {
                cpu.map(|c| node.cpu = Some(c)).is_some()
            }
            "node_memory_working_set_bytes" => gauge.map(|g| node.memory = Some(g)).is_some(),
            "node_swap_usage_bytes" => gauge.map(|g| node.swap = Some(g)).is_some(),
            "container_cpu_usage_seconds_total" | "container_cpu_usage_seconds" => {
                container(&mut |f| cpu.map(|c| f.cpu = Some(c)).is_some())
            }
            "container_memory_working_set_bytes" => {
                container(&mut |f| gauge.map(|g| f.memory = Some(g)).is_some())
            }
            "container_swap_usage_bytes" => {
                container(&mut |f| gauge.map(|g| f.swap = Some(g)).is_some())
            }
            "container_start_time_seconds" => {
                container(&mut |f| start.map(|m| f.start_time_ms = Some(m)).is_some())
            }
            "resource_scrape_error" | "scrape_error" => {
                let flag = if s.metric == "scrape_error" {
                    &mut scrape_error
                } else {
                    &mut resource_error
                };
                if v == 1.0 || v == 0.0 {
                    *flag = v == 1.0;
                } else {
                    rejected += 1;
                }
                true
            }
            _ => true,
        };
        if !ok {
            rejected += 1;
        }
    }
    NodeBatch {
        node,
        containers: containers
            .into_iter()
            .map(|((namespace, pod, container), f)| ContainerSample {
                namespace: namespace.into(),
                pod: pod.into(),
                container: container.into(),
                cpu: f.cpu,
                memory: f.memory,
                swap: f.swap,
                start_time_ms: f.start_time_ms,
            })
            .collect(),
        kubelet_error: resource_error || scrape_error,
        rejected_series: rejected,
    }
}

fn assert_same<'a>(name: &str, body: &'a [u8]) -> NodeBatch<'a> {
    let got = decode(body, NOW).unwrap_or_else(|e| panic!("{name}: decoder refused the body: {e}"));
    let want = expected(&oracle_samples(
        std::str::from_utf8(body).expect("UTF-8 body"),
    ));
    assert_eq!(got.node, want.node, "{name}: node");
    assert_eq!(
        got.kubelet_error, want.kubelet_error,
        "{name}: kubelet_error"
    );
    assert_eq!(
        got.rejected_series, want.rejected_series,
        "{name}: rejected_series"
    );
    assert_eq!(
        got.containers.len(),
        want.containers.len(),
        "{name}: container count"
    );
    for (g, w) in got.containers.iter().zip(&want.containers) {
        assert_eq!(
            g, w,
            "{name}: container {}/{}/{}",
            w.namespace, w.pod, w.container
        );
    }
    got
}

#[test]
fn decoder_matches_the_oracle_on_every_fixture() {
    let fixtures = fixtures();
    let mut compared = 0;
    for (name, body) in &fixtures {
        if let Some((_, why)) = ORACLE_BLIND.iter().find(|(blind, _)| blind == name) {
            // Still decoded, so a panic would show; the exact result is asserted by the unit tests.
            let _ = decode(body, NOW);
            eprintln!("{name}: not compared ({why})");
            continue;
        }
        assert_same(name, body);
        compared += 1;
    }
    assert!(compared >= 10, "compared {compared} fixtures");
    for real in [
        "metrics-resource-kind-2021-alpha.prom",
        "metrics-resource-eks-2025-stable.prom",
    ] {
        assert!(
            fixtures.iter().any(|(name, _)| name == real),
            "{real} present"
        );
    }
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn name(rng: &mut Rng, prefix: &str) -> String {
    let alphabet = ["a", "b", "z", "0", "9", "-", ".", "_", "é", "x"];
    let mut out = prefix.to_owned();
    for _ in 0..rng.below(6) {
        out.push_str(rng.pick(&alphabet));
    }
    out
}

/// A value as Go's `'g'` formatting (or a hand-written kubelet) might print it, sometimes invalid for our rules.
fn go_value(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => rng.pick(&["NaN", "+Inf", "-Inf", "Inf"]).to_owned(),
        1 => format!("-{}", rng.below(1000)),
        2 => "1.8446743709127774e+19".to_owned(),
        3 => format!("{}.{:09}", rng.below(100_000), rng.below(1_000_000_000)),
        4 => format!(
            "{}.{}e+0{}",
            1 + rng.below(9),
            rng.below(1_000_000),
            rng.below(10)
        ),
        5 => format!("{}e-0{}", rng.below(1000), rng.below(4)),
        6 => "1.7506078418297591e+09".to_owned(),
        7 => "0".to_owned(),
        _ => format!("{}", rng.below(5_000_000_000)),
    }
}

fn labels(rng: &mut Rng, key: &(String, String, String)) -> String {
    let mut parts = vec![
        format!("container=\"{}\"", key.0),
        format!("namespace=\"{}\"", key.1),
        format!("pod=\"{}\"", key.2),
    ];
    if rng.chance(5) {
        parts.remove(rng.below(3));
    }
    if rng.chance(20) {
        parts.push(format!("id=\"/kubepods/{}\"", name(rng, "p")));
    }
    if rng.chance(30) {
        rng.shuffle(&mut parts);
    }
    format!("{{{}}}", parts.join(","))
}

fn generated_body(seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut containers: Vec<(String, String, String)> = (0..rng.below(25))
        .map(|_| {
            (
                name(&mut rng, "c"),
                name(&mut rng, "ns"),
                name(&mut rng, "pod"),
            )
        })
        .collect();
    containers.sort();
    containers.dedup();
    let with_help = rng.chance(60);
    let eol = if rng.chance(20) { "\r\n" } else { "\n" };
    let families = [
        "container_cpu_usage_seconds_total",
        "container_cpu_usage_seconds",
        "container_memory_working_set_bytes",
        "container_start_time_seconds",
        "container_swap_usage_bytes",
        "container_swap_limit_bytes",
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
        "node_swap_usage_bytes",
        "pod_cpu_usage_seconds_total",
        "resource_scrape_error",
        "scrape_error",
        "some_future_family",
    ];
    let mut lines: Vec<String> = Vec::new();
    for family in families {
        if rng.chance(25) {
            continue;
        }
        if with_help {
            lines.push(format!(
                "# HELP {family} [{}] text, with = and \"quotes\"",
                rng.pick(&["ALPHA", "STABLE"])
            ));
            lines.push(format!(
                "# TYPE {family} {}",
                rng.pick(&["counter", "gauge"])
            ));
        }
        let timestamp = |rng: &mut Rng| {
            if rng.chance(70) {
                format!(" {}", 1_600_000_000_000 + rng.below(200_000_000_000))
            } else {
                String::new()
            }
        };
        if family.starts_with("container_") || family == "pod_cpu_usage_seconds_total" {
            let mut series: Vec<&(String, String, String)> =
                containers.iter().filter(|_| rng.chance(85)).collect();
            if rng.chance(30) {
                rng.shuffle(&mut series);
            }
            for key in series {
                let repeat = if rng.chance(5) { 2 } else { 1 };
                for _ in 0..repeat {
                    let (labels, value, ts) = (
                        labels(&mut rng, key),
                        go_value(&mut rng),
                        timestamp(&mut rng),
                    );
                    lines.push(format!("{family}{labels} {value}{ts}"));
                }
            }
        } else if family.ends_with("scrape_error") {
            lines.push(format!("{family} {}", rng.pick(&["0", "0", "1", "2"])));
        } else {
            let (value, ts) = (go_value(&mut rng), timestamp(&mut rng));
            lines.push(format!("{family} {value}{ts}"));
        }
        if rng.chance(10) {
            lines.push(String::new());
        }
    }
    if rng.chance(20) {
        // Families in any order must decode the same way as the kubelet's name order.
        rng.shuffle(&mut lines);
    }
    let mut body = String::new();
    for line in lines {
        let _ = write!(body, "{line}{eol}");
    }
    body
}

#[test]
fn decoder_matches_the_oracle_on_generated_bodies() {
    for seed in 0..600 {
        let body = generated_body(seed);
        assert_same(
            &format!("generated body seed {seed}:\n{body}"),
            body.as_bytes(),
        );
    }
}
