//! Heap cost of pod labels held by the cluster [`Index`], measured with a counting global allocator.
//!
//! This binary holds a single test on purpose: the allocator counters are process-wide, so a second test running
//! on another thread would add its allocations to the measured region. It bounds memory, never time.

use std::alloc::System;

use resource_metrics_server::cluster::{Index, Labels};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Pods per measurement: enough that map growth steps average out.
const PODS: usize = 20_000;
/// Pods per namespace, as in the scale benchmark (ns-7 holds 3,000 of 150,000 pods).
const PODS_PER_NAMESPACE: usize = 3_000;

/// Net heap bytes (allocated − freed, reallocations included) still held after building `PODS` pods with labels
/// from `labels` and applying them to an index: what the index keeps, whatever the label type copies or moves.
fn index_bytes(labels: impl Fn(usize) -> Labels) -> (isize, Index) {
    let region = Region::new(GLOBAL);
    let pods: Vec<(String, String, Labels)> = (0..PODS)
        .map(|i| {
            (
                format!("ns-{}", i / PODS_PER_NAMESPACE),
                format!("pod-{i}"),
                labels(i),
            )
        })
        .collect();
    let index = Index::default();
    index.replace_pods(pods);
    let stats = region.change();
    let net =
        stats.bytes_allocated as isize + stats.bytes_reallocated - stats.bytes_deallocated as isize;
    (net, index)
}

/// Measured on 2026-11-26 for 2 unique labels per pod (`app=app-<i%10>`, `hpa=h-<i/10>`), label data only:
/// `BTreeMap<String, String>` labels cost 624 bytes per pod (760 per pod in all); the compact `Labels` 98 bytes per
/// pod (235 in all): its `Arc` (48), two boxed buffers (16 + 16) and the index's dedup-set slot. The index's
/// label-pair lookup (for selector lists) adds 57: 155 bytes per pod of label data, 291 in all. The bound sits
/// between the map and the compact set, so a return to a map per pod fails it.
#[test]
fn unique_two_label_sets_cost_under_300_heap_bytes_per_pod() {
    let (with_labels, _keep) = index_bytes(|i| {
        [
            ("app".to_owned(), format!("app-{}", i % 10)),
            ("hpa".to_owned(), format!("h-{}", i / 10)),
        ]
        .into_iter()
        .collect()
    });
    let (without_labels, _keep_too) = index_bytes(|_| Labels::default());
    let per_pod = (with_labels - without_labels) / PODS as isize;
    println!(
        "index heap per pod: {} bytes with 2 unique labels, {} bytes without; label data {per_pod} bytes per pod",
        with_labels / PODS as isize,
        without_labels / PODS as isize,
    );
    assert!(
        per_pod < 300,
        "label data costs {per_pod} heap bytes per pod; a BTreeMap per pod costs ~600"
    );
}
