//! Benchmarks of the kubelet body decoder (`scrape::decode::decode`): the real 70-pod kind body, a synthetic
//! current-format node with 110 pods × 3 containers, and a synthetic 10 000-pod body. Before timing, each body is
//! decoded once under a counting global allocator and the allocations per body are printed. Measures only; asserts
//! nothing about timings. The `gunzip` group compares a fresh `flate2` gzip decoder per body with the scrape
//! workers' reused inflater, on the same bodies compressed as a kubelet sends them.

use std::alloc::System;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read as _, Write as _};

use criterion::{Criterion, Throughput, criterion_group};
use flate2::Compression;
use flate2::write::GzEncoder;
use resource_metrics_server::scrape::decode::decode;
use resource_metrics_server::scrape::gunzip::Gunzip;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KIND: &[u8] = include_bytes!("../tests/fixtures/metrics-resource-kind-2021-alpha.prom");

/// Request time for samples without a timestamp, ms since the epoch.
const NOW: i64 = 1_750_705_780_000;

/// A current-format (`[STABLE]`, start times, `resource_scrape_error`) body as a ≥1.30 kubelet prints it: families
/// sorted by name, series sorted by label values in label-name order (container, namespace, pod).
fn synthetic_body(pods: usize, containers_per_pod: usize) -> Vec<u8> {
    let mut series: Vec<(String, String, String)> = Vec::with_capacity(pods * containers_per_pod);
    for p in 0..pods {
        let namespace = format!("team-{}", p % 7);
        let pod = format!("app-{p}-7f9c8d6b5-x{p:04}");
        for c in 0..containers_per_pod {
            series.push((format!("container-{c}"), namespace.clone(), pod.clone()));
        }
    }
    series.sort();
    let mut pod_series: Vec<(String, String)> = series
        .iter()
        .map(|(_, n, p)| (n.clone(), p.clone()))
        .collect();
    pod_series.sort();
    pod_series.dedup();

    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
    };
    let ts = |i: usize| 1_750_705_760_000 + (i as i64 * 7919) % 20_000;
    family(
        &mut out,
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    for (i, (c, n, p)) in series.iter().enumerate() {
        let secs = 12.0 + i as f64 * 2.718_281_9;
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{container=\"{c}\",namespace=\"{n}\",pod=\"{p}\"}} {secs} {}",
            ts(i)
        );
    }
    family(
        &mut out,
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        "gauge",
    );
    for (i, (c, n, p)) in series.iter().enumerate() {
        let bytes = 1.0e7 + (i as f64) * 4096.0;
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{container=\"{c}\",namespace=\"{n}\",pod=\"{p}\"}} {bytes:e} {}",
            ts(i)
        );
    }
    family(
        &mut out,
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        "gauge",
    );
    for (i, (c, n, p)) in series.iter().enumerate() {
        let start = 1.750_607_841_829_759_1e9 + i as f64;
        let _ = writeln!(
            out,
            "container_start_time_seconds{{container=\"{c}\",namespace=\"{n}\",pod=\"{p}\"}} {start:e}"
        );
    }
    family(
        &mut out,
        "node_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    let _ = writeln!(
        out,
        "node_cpu_usage_seconds_total 6197.005020909 1750705774670"
    );
    family(
        &mut out,
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        "gauge",
    );
    let _ = writeln!(
        out,
        "node_memory_working_set_bytes 1.137475584e+09 1750705774670"
    );
    family(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    for (i, (n, p)) in pod_series.iter().enumerate() {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{n}\",pod=\"{p}\"}} {} {}",
            40.0 + i as f64,
            ts(i)
        );
    }
    family(
        &mut out,
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        "gauge",
    );
    for (i, (n, p)) in pod_series.iter().enumerate() {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{n}\",pod=\"{p}\"}} {:e} {}",
            3.0e7 + i as f64,
            ts(i)
        );
    }
    family(
        &mut out,
        "resource_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    out.push_str("resource_scrape_error 0\n");
    out.into_bytes()
}

/// Decodes `body` once and prints the allocations it cost.
fn report_allocations(name: &str, body: &[u8]) {
    let region = Region::new(GLOBAL);
    let batch = decode(black_box(body), NOW);
    let stats = region.change();
    let containers = batch.as_ref().map_or(0, |b| b.containers.len());
    drop(batch);
    println!(
        "allocations {name}: {} allocs + {} reallocs, {} bytes, per body of {} bytes with {containers} containers",
        stats.allocations,
        stats.reallocations,
        stats.bytes_allocated,
        body.len(),
    );
}

fn bench_decode(c: &mut Criterion) {
    let bodies = [
        ("kind-2021-alpha-70-pods", KIND.to_vec()),
        ("synthetic-30-pods-x2", synthetic_body(30, 2)),
        ("synthetic-110-pods-x3", synthetic_body(110, 3)),
        ("synthetic-10000-pods", synthetic_body(10_000, 1)),
    ];
    for (name, body) in &bodies {
        assert!(
            decode(body, NOW).is_ok_and(|b| !b.containers.is_empty()),
            "{name} decodes"
        );
        report_allocations(name, body);
    }
    let mut group = c.benchmark_group("decode");
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| decode(black_box(body), NOW)));
    }
    group.finish();
}

/// Gunzip of the kubelet bodies as they arrive (`Accept-Encoding: gzip`): a fresh `flate2` gzip decoder per body
/// (what the scraper did first) against one reused [`Gunzip`] (what each scrape worker keeps now: libdeflate for a
/// whole single member, a reused streaming inflater otherwise).
#[allow(clippy::expect_used)] // A benchmark fails by panicking when its input is broken.
fn bench_gunzip(c: &mut Criterion) {
    let bodies = [
        ("kind-2021-alpha-70-pods", KIND.to_vec()),
        ("synthetic-30-pods-x2", synthetic_body(30, 2)),
        ("synthetic-110-pods-x3", synthetic_body(110, 3)),
    ];
    let compressed: Vec<(&str, Vec<u8>, usize)> = bodies
        .iter()
        .map(|(name, body)| {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(body).expect("compress in memory");
            (
                *name,
                encoder.finish().expect("compress in memory"),
                body.len(),
            )
        })
        .collect();
    let fresh = |input: &[u8], out: &mut Vec<u8>| {
        out.clear();
        flate2::read::GzDecoder::new(input)
            .read_to_end(out)
            .expect("valid gzip");
    };
    let mut reused = Gunzip::default();
    for (name, input, len) in &compressed {
        let mut out = Vec::with_capacity(*len);
        let region = Region::new(GLOBAL);
        fresh(input, &mut out);
        let fresh_stats = region.change();
        out.clear();
        reused
            .decompress(input, &mut out, usize::MAX)
            .expect("valid gzip");
        let region = Region::new(GLOBAL);
        out.clear();
        reused
            .decompress(input, &mut out, usize::MAX)
            .expect("valid gzip");
        let reused_stats = region.change();
        println!(
            "gunzip {name} ({} -> {len} bytes): fresh decoder {} allocs / {} bytes, scrape gunzip {} allocs / {} bytes",
            input.len(),
            fresh_stats.allocations,
            fresh_stats.bytes_allocated,
            reused_stats.allocations,
            reused_stats.bytes_allocated,
        );
    }
    let mut group = c.benchmark_group("gunzip");
    for (name, input, len) in &compressed {
        group.throughput(Throughput::Bytes(*len as u64));
        let mut out = Vec::with_capacity(*len);
        group.bench_function(format!("{name}/fresh-flate2-decoder"), |b| {
            b.iter(|| fresh(black_box(input), &mut out))
        });
        group.bench_function(format!("{name}/scrape-gunzip"), |b| {
            b.iter(|| {
                out.clear();
                reused.decompress(black_box(input), &mut out, usize::MAX)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_gunzip);

/// `DECODE_BENCH_LOOP=<n>` decodes the kind body `n` times and exits, without criterion: run under
/// `perf stat -e task-clock` to get CPU time per decode on a shared machine where wall time is inflated by others.
/// `DECODE_BENCH_LOOP_BODY=30x2` loops over the synthetic 30-pod × 2-container body (the scale benchmark's shape)
/// instead.
fn main() {
    if let Some(n) = std::env::var("DECODE_BENCH_LOOP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let body = match std::env::var("DECODE_BENCH_LOOP_BODY").as_deref() {
            Ok("30x2") => synthetic_body(30, 2),
            _ => KIND.to_vec(),
        };
        for _ in 0..n {
            black_box(decode(black_box(&body), NOW)).ok();
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
