//! Storage benchmarks: storing a full 5,000-node round (5,000 `accept` calls of 30 pods × 2 containers) into
//! storage that already holds the previous rounds (the steady state: what the server does every cycle), and
//! reading one node, one pod and all 150,000 pods through `MetricsSource`, in node order and in the
//! (namespace, name) order a PodMetrics list asks in.
//!
//! Before criterion runs, `main` prints the live heap and RSS growth of storage after the first two rounds and
//! after two more (steady state), and the CPU time and allocations of the first round, the second round and a
//! steady-state round. The heap figures come from counting every allocation (`stats_alloc` is this bench's global
//! allocator, which adds the same small cost to every allocation in every figure).
//!
//! Run: `cargo bench --bench storage -- --measurement-time 3 --warm-up-time 1`. Synthetic batches only; no clock
//! is read by storage (timestamps are fixed offsets), no network.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use resource_metrics_server::api::MetricsSource;
use resource_metrics_server::scrape::BatchSink;
use resource_metrics_server::scrape::decode::{
    ContainerSample, CpuSample, GaugeSample, NodeBatch, NodeSample,
};
use resource_metrics_server::storage::{Storage, StorageConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, Stats, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NODES: usize = 5_000;
const PODS_PER_NODE: usize = 30;
const CONTAINERS: [&str; 2] = ["app", "sidecar"];
const NAMESPACES: usize = 100;
const RESOLUTION_MS: i64 = 15_000;
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

/// Node `n`'s batch at round `round`: each node at its own phase within the resolution.
fn node_batch(n: usize, round: i64) -> (Arc<str>, NodeBatch<'static>) {
    let ts = T0 + round * RESOLUTION_MS + (n as i64 * 3) % RESOLUTION_MS;
    let cpu_ns = |rate_millicores: u64| (round as u64 + 1) * rate_millicores * 15_000_000;
    let mut containers = Vec::with_capacity(PODS_PER_NODE * CONTAINERS.len());
    for p in 0..PODS_PER_NODE {
        let global = n * PODS_PER_NODE + p;
        for (c, name) in CONTAINERS.iter().enumerate() {
            containers.push(ContainerSample {
                namespace: format!("namespace-{:03}", global % NAMESPACES).into(),
                pod: format!("deployment-{n}-{p}-7d9f8b6c5d-x2k4q").into(),
                container: (*name).into(),
                cpu: Some(CpuSample {
                    cumulative_cpu_ns: cpu_ns(100 + c as u64),
                    timestamp_ms: ts,
                }),
                memory: Some(GaugeSample {
                    bytes: 64 << 20,
                    timestamp_ms: ts,
                }),
                swap: None,
                start_time_ms: Some(T0 - 86_400_000),
            });
        }
    }
    containers.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    let node = NodeSample {
        cpu: Some(CpuSample {
            cumulative_cpu_ns: cpu_ns(4_000),
            timestamp_ms: ts,
        }),
        memory: Some(GaugeSample {
            bytes: 8 << 30,
            timestamp_ms: ts,
        }),
        swap: None,
    };
    let name: Arc<str> = Arc::from(format!("node-{n:05}"));
    (
        name,
        NodeBatch {
            node,
            containers,
            kubelet_error: false,
            rejected_series: 0,
        },
    )
}

/// One round of batches for all nodes.
fn round(round: i64) -> Vec<(Arc<str>, NodeBatch<'static>)> {
    (0..NODES).map(|n| node_batch(n, round)).collect()
}

/// Shifts every timestamp and counter of `batches` forward by `rounds` resolutions.
fn shifted(
    batches: &[(Arc<str>, NodeBatch<'static>)],
    rounds: i64,
) -> Vec<(Arc<str>, NodeBatch<'static>)> {
    let dt = rounds * RESOLUTION_MS;
    let dcpu = rounds as u64 * 1_500_000_000;
    let shift_cpu = |s: &mut Option<CpuSample>| {
        if let Some(s) = s {
            s.timestamp_ms += dt;
            s.cumulative_cpu_ns += dcpu;
        }
    };
    let shift_gauge = |s: &mut Option<GaugeSample>| {
        if let Some(s) = s {
            s.timestamp_ms += dt;
        }
    };
    let mut out = batches.to_vec();
    for (_, batch) in &mut out {
        shift_cpu(&mut batch.node.cpu);
        shift_gauge(&mut batch.node.memory);
        for c in &mut batch.containers {
            shift_cpu(&mut c.cpu);
            shift_gauge(&mut c.memory);
        }
    }
    out
}

fn storage() -> Storage {
    Storage::new(StorageConfig {
        resolution: Duration::from_millis(RESOLUTION_MS as u64),
        staleness: Duration::from_millis(2 * RESOLUTION_MS as u64 + 10_000),
    })
}

fn store(storage: &Storage, batches: Vec<(Arc<str>, NodeBatch<'static>)>) {
    for (node, batch) in batches {
        storage.accept(&node, batch);
    }
}

fn bench_store(c: &mut Criterion) {
    let template = round(0);
    let s = storage();
    store(&s, shifted(&template, 0));
    store(&s, shifted(&template, 1));
    let mut next_round = 2;
    let mut group = c.benchmark_group("storage/store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("round_5000_nodes_30_pods_2_containers", |b| {
        b.iter_batched(
            || {
                next_round += 1;
                shifted(&template, next_round)
            },
            |batches| store(&s, batches),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Every pod's (namespace, name), in node order (each node's pods together).
fn pods_by_node(template: &[(Arc<str>, NodeBatch<'static>)]) -> Vec<(String, String)> {
    template
        .iter()
        .flat_map(|(_, batch)| batch.containers.iter().step_by(CONTAINERS.len()))
        .map(|c| (c.namespace.to_string(), c.pod.to_string()))
        .collect()
}

/// The same pods sorted by (namespace, name): the order of a PodMetrics list, which visits nodes at random.
fn pods_by_name(template: &[(Arc<str>, NodeBatch<'static>)]) -> Vec<(String, String)> {
    let mut pods = pods_by_node(template);
    pods.sort();
    pods
}

/// Reads every pod in `pods`; returns how many were served.
fn read_all(s: &Storage, pods: &[(String, String)], now: i64) -> usize {
    pods.iter()
        .filter(|(ns, pod)| s.pod_usage(ns, pod, now).is_some())
        .count()
}

fn bench_reads(c: &mut Criterion) {
    let template = round(0);
    let s = storage();
    store(&s, shifted(&template, 0));
    store(&s, shifted(&template, 1));
    let now = T0 + 2 * RESOLUTION_MS;
    let pods = pods_by_node(&template);
    let sorted = pods_by_name(&template);
    assert_eq!(
        read_all(&s, &pods, now),
        NODES * PODS_PER_NODE,
        "every pod is served after two rounds"
    );
    let (ns, pod) = &pods[pods.len() / 2];

    let mut group = c.benchmark_group("storage/read");
    group.bench_function("node_usage_one_node", |b| {
        b.iter(|| s.node_usage(black_box("node-02500"), now))
    });
    group.bench_function("pod_usage_one_pod", |b| {
        b.iter(|| s.pod_usage(black_box(ns), black_box(pod), now))
    });
    group.throughput(Throughput::Elements(pods.len() as u64));
    group.sample_size(10);
    group.bench_function("pod_usage_all_150000_pods", |b| {
        b.iter(|| read_all(&s, &pods, now))
    });
    group.bench_function("pod_usage_all_150000_pods_by_name", |b| {
        b.iter(|| read_all(&s, &sorted, now))
    });
    group.bench_function("point_counts", |b| b.iter(|| s.point_counts(now)));
    group.bench_function("is_ready", |b| b.iter(|| s.is_ready(now)));
    group.finish();
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`, 4 KiB pages), or 0 if unavailable.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Bytes still allocated (requested sizes, without allocator overhead) and allocations still live since a
/// region started. (`stats_alloc` already counts a realloc's growth or shrinkage in `bytes_allocated` or
/// `bytes_deallocated`.)
fn live(stats: Stats) -> (i64, i64) {
    let bytes = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    let allocations = stats.allocations as i64 - stats.deallocations as i64;
    (bytes, allocations)
}

/// Prints the memory held by storage after the first two rounds and after two more (the steady state): live heap
/// (exact, from the counting allocator) and RSS growth (glibc, includes freed but retained memory).
fn report_memory() {
    let pods = (NODES * PODS_PER_NODE) as i64;
    let containers = pods * CONTAINERS.len() as i64;
    let rss_before = rss_bytes();
    let region = Region::new(GLOBAL);
    let s = storage();
    let print = |after_rounds: i64| {
        let (bytes, allocations) = live(region.change());
        let rss = rss_bytes().saturating_sub(rss_before);
        println!(
            "storage/memory after {after_rounds} rounds: live heap {:.1} MiB in {allocations} allocations \
             ({} B per pod, {} B per container); RSS grew by {:.1} MiB ({} B per container)",
            bytes as f64 / (1 << 20) as f64,
            bytes / pods,
            bytes / containers,
            rss as f64 / (1 << 20) as f64,
            rss as i64 / containers,
        );
    };
    for r in 0..4 {
        for n in 0..NODES {
            let (node, batch) = node_batch(n, r);
            s.accept(&node, batch);
        }
        if r == 1 || r == 3 {
            print(r + 1);
        }
    }
    black_box(&s);
}

/// CPU time this thread has run, in ns (Linux `/proc/thread-self/schedstat`), or 0 if unavailable. Unlike wall time
/// it does not grow when other processes take the shared cores.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Stores `batches`, returning the CPU time it took and the allocations it made.
fn timed_store(s: &Storage, batches: Vec<(Arc<str>, NodeBatch<'static>)>) -> (u64, usize) {
    let region = Region::new(GLOBAL);
    let before = thread_cpu_ns();
    store(s, batches);
    let cpu_ns = thread_cpu_ns().saturating_sub(before);
    (cpu_ns, region.change().allocations)
}

/// Prints the CPU time and allocations of the first round (empty storage), the second round and a steady-state
/// round (averaged over several), and the CPU time of reading all pods.
fn report_cpu() {
    const ROUNDS: i64 = 10;
    let template = round(0);
    let s = storage();
    let pods = (NODES * PODS_PER_NODE) as f64;
    let line = |what: &str, cpu_ns: f64, allocations: f64| {
        println!(
            "storage/cpu: {what}: {:.1} ms CPU per {NODES}-node round ({:.1} us per node), {:.2} allocations per pod",
            cpu_ns / 1e6,
            cpu_ns / NODES as f64 / 1e3,
            allocations / pods,
        );
    };
    let (cpu_ns, allocations) = timed_store(&s, shifted(&template, 0));
    line("first round", cpu_ns as f64, allocations as f64);
    let (cpu_ns, allocations) = timed_store(&s, shifted(&template, 1));
    line("second round", cpu_ns as f64, allocations as f64);
    let (mut store_ns, mut store_allocations) = (0, 0);
    for r in 2..2 + ROUNDS {
        let (cpu_ns, allocations) = timed_store(&s, shifted(&template, r));
        store_ns += cpu_ns;
        store_allocations += allocations;
    }
    line(
        "steady state",
        store_ns as f64 / ROUNDS as f64,
        store_allocations as f64 / ROUNDS as f64,
    );

    let now = T0 + (1 + ROUNDS) * RESOLUTION_MS;
    for (order, pods) in [
        ("node order", pods_by_node(&template)),
        ("(namespace, name) order", pods_by_name(&template)),
    ] {
        let before = thread_cpu_ns();
        let mut served = 0;
        for _ in 0..ROUNDS {
            served += read_all(&s, &pods, now);
        }
        let read_ns = thread_cpu_ns().saturating_sub(before);
        println!(
            "storage/cpu: {:.1} ms CPU to read all {} pods in {order} ({} served per pass)",
            read_ns as f64 / ROUNDS as f64 / 1e6,
            pods.len(),
            served / ROUNDS as usize,
        );
    }
}

fn main() {
    report_memory();
    report_cpu();
    let mut c = Criterion::default().configure_from_args();
    bench_store(&mut c);
    bench_reads(&mut c);
    c.final_summary();
}
