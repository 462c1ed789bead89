//! Storage unit tests: the rate maths, window rules and the storage facade, driven through `BatchSink` and
//! `MetricsSource` exactly as scrape and api use them. Fixtures only; no clock, no network.

use std::sync::Arc;
use std::time::Duration;

use super::point::{CpuPoint, Rate, cpu_rate};
use super::state::Interner;
use super::{PodNames, Storage, StorageConfig};
use crate::api::{ContainerView, MetricsSource, NodeUsage, PodUsage, Usage};
use crate::scrape::BatchSink;
use crate::scrape::decode::{ContainerSample, CpuSample, GaugeSample, NodeBatch, NodeSample};
use crate::time::TimestampMs;

/// A sample time: 2023-11-14T22:13:20Z.
const T0: TimestampMs = 1_700_000_000_000;
const RESOLUTION_MS: i64 = 15_000;
const STALENESS_MS: i64 = 40_000;
const S: u64 = 1_000_000_000; // one CPU second in ns
const MIB: u64 = 1 << 20;

/// `T0 + n` resolutions.
fn t(n: i64) -> TimestampMs {
    T0 + n * RESOLUTION_MS
}

fn storage() -> Storage {
    Storage::new(StorageConfig {
        resolution: Duration::from_millis(RESOLUTION_MS as u64),
        staleness: Duration::from_millis(STALENESS_MS as u64),
    })
}

fn cpu(timestamp_ms: TimestampMs, cumulative_cpu_ns: u64) -> Option<CpuSample> {
    Some(CpuSample {
        cumulative_cpu_ns,
        timestamp_ms,
    })
}

fn gauge(timestamp_ms: TimestampMs, bytes: u64) -> Option<GaugeSample> {
    Some(GaugeSample {
        bytes,
        timestamp_ms,
    })
}

/// A fluent kubelet batch.
#[derive(Clone)]
struct Batch(NodeBatch<'static>);

fn batch() -> Batch {
    Batch(NodeBatch::default())
}

impl Batch {
    fn node(mut self, ts: TimestampMs, cpu_ns: u64, memory_bytes: u64) -> Self {
        self.0.node = NodeSample {
            cpu: cpu(ts, cpu_ns),
            memory: gauge(ts, memory_bytes),
            swap: None,
        };
        self
    }

    fn node_sample(mut self, node: NodeSample) -> Self {
        self.0.node = node;
        self
    }

    fn node_swap(mut self, bytes: u64) -> Self {
        self.0.node.swap = gauge(self.0.node.memory.map_or(0, |m| m.timestamp_ms), bytes);
        self
    }

    fn container(
        self,
        ns: &str,
        pod: &str,
        name: &str,
        ts: TimestampMs,
        cpu_ns: u64,
        memory_bytes: u64,
    ) -> Self {
        self.raw(ContainerSample {
            namespace: ns.to_owned().into(),
            pod: pod.to_owned().into(),
            container: name.to_owned().into(),
            cpu: cpu(ts, cpu_ns),
            memory: gauge(ts, memory_bytes),
            swap: None,
            start_time_ms: None,
        })
    }

    fn raw(mut self, sample: ContainerSample<'static>) -> Self {
        self.0.containers.push(sample);
        self
    }

    /// Sets the start time of the last container added.
    fn started(mut self, start_ms: TimestampMs) -> Self {
        if let Some(c) = self.0.containers.last_mut() {
            c.start_time_ms = Some(start_ms);
        }
        self
    }

    /// Sets the swap of the last container added.
    fn swap(mut self, bytes: u64) -> Self {
        if let Some(c) = self.0.containers.last_mut() {
            c.swap = gauge(c.memory.map_or(0, |m| m.timestamp_ms), bytes);
        }
        self
    }

    fn kubelet_error(mut self) -> Self {
        self.0.kubelet_error = true;
        self
    }

    fn send(self, storage: &Storage, node: &str) {
        storage.accept(&Arc::from(node), self.0);
    }
}

/// One-container pod `ns/pod` with container `c` on a node sample at `ts`.
fn one_pod(ts: TimestampMs, cpu_ns: u64) -> Batch {
    batch()
        .node(ts, cpu_ns * 10, 4096 * MIB)
        .container("ns", "pod", "c", ts, cpu_ns, 64 * MIB)
}

/// The value, or a test failure saying why it was expected.
#[track_caller]
fn some<T>(value: Option<T>, why: &str) -> T {
    match value {
        Some(v) => v,
        None => panic!("expected a value: {why}"),
    }
}

fn node_usage(s: &Storage, now: TimestampMs) -> Option<NodeUsage> {
    s.node_usage("n1", now)
}

fn pod(s: &Storage, now: TimestampMs) -> Option<PodUsage> {
    s.pod_usage("ns", "pod", now)
}

/// A served pod's first container (a test failure if it has none).
#[track_caller]
fn first_container(p: &PodUsage) -> ContainerView<'_> {
    some(p.containers.get(0), "the pod has a container")
}

fn window_and_cpu(u: &NodeUsage) -> (i64, u64) {
    (u.window_ms, u.usage.cpu_nanocores)
}

#[test]
fn rate_is_exact_truncated_integer_nanocores() {
    struct Case {
        name: &'static str,
        prev: (TimestampMs, u64),
        last: (TimestampMs, u64),
        want: Option<(i64, u64)>,
    }
    let cases = [
        Case {
            name: "1.5 CPU seconds over 15 s",
            prev: (T0, 10 * S),
            last: (t(1), 11 * S + S / 2),
            want: Some((15_000, 100_000_000)),
        },
        Case {
            name: "1 ns over 3 ms truncates",
            prev: (T0, 5),
            last: (T0 + 3, 6),
            want: Some((3, 333)),
        },
        Case {
            name: "7 ns over 3 s truncates to 2",
            prev: (T0, 0),
            last: (T0 + 3_000, 7),
            want: Some((3_000, 2)),
        },
        Case {
            name: "above 2^53 stays exact (a float would round to ...992)",
            prev: (T0, 0),
            last: (T0 + 1_000, 9_007_199_254_740_993),
            want: Some((1_000, 9_007_199_254_740_993)),
        },
        Case {
            name: "near u64::MAX over 1000 s does not overflow",
            prev: (T0, 1),
            last: (T0 + 1_000_000, u64::MAX),
            want: Some((1_000_000, 18_446_744_073_709_551)),
        },
        Case {
            name: "rate above u64::MAX is rejected",
            prev: (T0, 0),
            last: (T0 + 1, u64::MAX),
            want: None,
        },
        Case {
            name: "counter decrease is rejected",
            prev: (T0, 2 * S),
            last: (t(1), S),
            want: None,
        },
        Case {
            name: "zero window is rejected",
            prev: (T0, S),
            last: (T0, 2 * S),
            want: None,
        },
        Case {
            name: "negative window is rejected",
            prev: (t(1), S),
            last: (T0, 2 * S),
            want: None,
        },
        Case {
            name: "idle is zero",
            prev: (T0, S),
            last: (t(1), S),
            want: Some((15_000, 0)),
        },
    ];
    for case in cases {
        let point = |(timestamp_ms, cumulative_cpu_ns)| CpuPoint {
            timestamp_ms,
            cumulative_cpu_ns,
        };
        let got = cpu_rate(point(case.prev), point(case.last)).map(
            |Rate {
                 window_ms,
                 cpu_nanocores,
             }| (window_ms, cpu_nanocores),
        );
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn first_node_scrape_serves_nothing_and_second_serves_the_rate() {
    let s = storage();
    batch().node(T0, 100 * S, 2048 * MIB).send(&s, "n1");
    assert_eq!(node_usage(&s, T0), None);
    batch()
        .node(t(1), 100 * S + 3 * S, 2049 * MIB)
        .send(&s, "n1");
    let got = node_usage(&s, t(1));
    let want = NodeUsage {
        timestamp_ms: t(1),
        window_ms: 15_000,
        usage: Usage {
            cpu_nanocores: 200_000_000,
            memory_bytes: 2049 * MIB,
            swap_bytes: None,
        },
    };
    assert_eq!(got, Some(want));
}

#[test]
fn node_rate_and_timestamp_use_the_cpu_samples_own_timestamps() {
    let s = storage();
    let sample = |cpu_ts, cpu_ns, mem_ts| NodeSample {
        cpu: cpu(cpu_ts, cpu_ns),
        memory: gauge(mem_ts, MIB),
        swap: None,
    };
    batch()
        .node_sample(sample(T0, 10 * S, T0 + 900))
        .send(&s, "n1");
    batch()
        .node_sample(sample(T0 + 10_000, 11 * S, T0 + 14_000))
        .send(&s, "n1");
    let got =
        node_usage(&s, T0 + 14_000).map(|u| (u.timestamp_ms, u.window_ms, u.usage.cpu_nanocores));
    assert_eq!(got, Some((T0 + 10_000, 10_000, 100_000_000)));
}

#[test]
fn node_is_usable_only_with_non_zero_cpu_and_memory() {
    let present = NodeSample {
        cpu: cpu(t(1), 20 * S),
        memory: gauge(t(1), MIB),
        swap: None,
    };
    let cases = [
        (
            "missing CPU",
            NodeSample {
                cpu: None,
                ..present
            },
        ),
        (
            "missing memory",
            NodeSample {
                memory: None,
                ..present
            },
        ),
        (
            "zero CPU",
            NodeSample {
                cpu: cpu(t(1), 0),
                ..present
            },
        ),
        (
            "zero memory",
            NodeSample {
                memory: gauge(t(1), 0),
                ..present
            },
        ),
        ("nothing", NodeSample::default()),
    ];
    for (name, unusable) in cases {
        let s = storage();
        batch().node(T0, 10 * S, MIB).send(&s, "n1");
        batch().node_sample(unusable).send(&s, "n1");
        assert_eq!(
            node_usage(&s, t(1)),
            None,
            "{name}: an unusable sample is not a point"
        );
        batch().node(t(2), 13 * S, MIB).send(&s, "n1");
        let got = node_usage(&s, t(2)).map(|u| window_and_cpu(&u));
        assert_eq!(
            got,
            Some((30_000, 100_000_000)),
            "{name}: the next usable sample pairs with the last usable one"
        );
    }
}

#[test]
fn identical_or_older_timestamps_keep_only_a_strictly_older_prev() {
    struct Case {
        name: &'static str,
        samples: &'static [(i64, u64)],
        want: Option<(i64, u64)>,
    }
    // (ms after T0, cumulative CPU seconds)
    let cases = [
        Case {
            name: "a repeated identical sample keeps the older prev",
            samples: &[(0, 10), (15_000, 13), (15_000, 13)],
            want: Some((15_000, 200_000_000)),
        },
        Case {
            name: "the same sample twice gives no rate",
            samples: &[(0, 10), (0, 10)],
            want: None,
        },
        Case {
            name: "a sample at the prev's timestamp gives no rate",
            samples: &[(0, 10), (15_000, 13), (0, 10)],
            want: None,
        },
        Case {
            name: "an older sample after a strictly older prev pairs with it",
            samples: &[(0, 10), (15_000, 13), (30_000, 16), (20_000, 14)],
            want: Some((5_000, 200_000_000)),
        },
    ];
    for case in cases {
        let s = storage();
        for &(offset, cpu_s) in case.samples {
            batch().node(T0 + offset, cpu_s * S, MIB).send(&s, "n1");
        }
        let got = node_usage(&s, T0 + 30_000).map(|u| window_and_cpu(&u));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn node_cpu_decrease_starts_fresh() {
    let s = storage();
    batch().node(T0, 500 * S, MIB).send(&s, "n1");
    batch().node(t(1), 503 * S, MIB).send(&s, "n1");
    assert!(node_usage(&s, t(1)).is_some());
    batch().node(t(2), 2 * S, MIB).send(&s, "n1");
    assert_eq!(
        node_usage(&s, t(2)),
        None,
        "a rebooted node has no rate from the pair across the reboot"
    );
    batch().node(t(3), 5 * S, MIB).send(&s, "n1");
    assert_eq!(
        node_usage(&s, t(3)).map(|u| window_and_cpu(&u)),
        Some((15_000, 200_000_000))
    );
}

#[test]
fn kubelet_error_keeps_what_we_had() {
    let s = storage();
    one_pod(T0, 10 * S).send(&s, "n1");
    one_pod(t(1), 13 * S).send(&s, "n1");
    let (node_before, pod_before) = (node_usage(&s, t(1)), pod(&s, t(1)));
    assert!(node_before.is_some() && pod_before.is_some());
    batch().kubelet_error().send(&s, "n1");
    assert_eq!(node_usage(&s, t(2)), node_before);
    assert_eq!(pod(&s, t(2)), pod_before);
    one_pod(t(3), 16 * S).send(&s, "n1");
    assert_eq!(node_usage(&s, t(3)).map(|u| u.window_ms), Some(30_000));
}

#[test]
fn last_good_window_is_served_until_it_is_older_than_the_staleness_bound() {
    let s = storage();
    one_pod(T0, 10 * S).send(&s, "n1");
    one_pod(t(1), 13 * S).send(&s, "n1");
    // Scrapes at t(2), t(3) fail: nothing arrives.
    let limit = t(1) + STALENESS_MS;
    let node = some(node_usage(&s, limit), "the node is served up to the bound");
    assert_eq!(
        (node.timestamp_ms, node.window_ms),
        (t(1), 15_000),
        "with its original timestamp and window"
    );
    let served = some(pod(&s, limit), "its pods too");
    assert_eq!((served.timestamp_ms, served.window_ms), (t(1), 15_000));
    assert!(s.is_ready(limit));
    assert_eq!(s.point_counts(limit), (1, 1));

    assert_eq!(node_usage(&s, limit + 1), None);
    assert_eq!(pod(&s, limit + 1), None);
    assert!(!s.is_ready(limit + 1));
    assert_eq!(s.point_counts(limit + 1), (0, 0));
}

#[test]
fn retained_point_pairs_with_the_next_successful_scrape_over_the_true_window() {
    let s = storage();
    one_pod(T0, 10 * S).send(&s, "n1");
    one_pod(t(1), 13 * S).send(&s, "n1");
    // t(2) failed.
    one_pod(t(3), 19 * S).send(&s, "n1");
    let node = some(node_usage(&s, t(3)), "served at once");
    assert_eq!(window_and_cpu(&node), (30_000, 2_000_000_000));
    let served = some(pod(&s, t(3)), "served at once");
    assert_eq!(
        (
            served.window_ms,
            first_container(&served).usage.cpu_nanocores
        ),
        (30_000, 200_000_000)
    );
}

#[test]
fn retained_point_older_than_the_staleness_bound_is_not_paired() {
    let s = storage();
    one_pod(T0, 10 * S).send(&s, "n1");
    one_pod(t(1), 13 * S).send(&s, "n1");
    let late = t(1) + STALENESS_MS + 1;
    one_pod(late, 19 * S).send(&s, "n1");
    assert_eq!(node_usage(&s, late), None);
    assert_eq!(pod(&s, late), None);
    one_pod(late + 15_000, 22 * S).send(&s, "n1");
    assert_eq!(
        node_usage(&s, late + 15_000).map(|u| u.window_ms),
        Some(15_000)
    );
}

#[test]
fn pod_with_an_unusable_container_is_dropped_and_its_state_kept_unchanged() {
    let broken = |ts: TimestampMs| -> Vec<(&'static str, ContainerSample<'static>)> {
        let base = ContainerSample {
            namespace: "ns".into(),
            pod: "pod".into(),
            container: "b".into(),
            cpu: cpu(ts, 5 * S),
            memory: gauge(ts, MIB),
            swap: None,
            start_time_ms: Some(T0 - 3_600_000),
        };
        vec![
            (
                "only a start time",
                ContainerSample {
                    cpu: None,
                    memory: None,
                    ..base.clone()
                },
            ),
            (
                "zero CPU",
                ContainerSample {
                    cpu: cpu(ts, 0),
                    ..base.clone()
                },
            ),
            (
                "zero memory",
                ContainerSample {
                    memory: gauge(ts, 0),
                    ..base.clone()
                },
            ),
            (
                "missing CPU",
                ContainerSample {
                    cpu: None,
                    ..base.clone()
                },
            ),
            (
                "missing memory",
                ContainerSample {
                    memory: None,
                    ..base
                },
            ),
        ]
    };
    for (name, bad_b) in broken(t(2)) {
        let s = storage();
        let good = |ts, a_cpu, b_cpu| {
            batch()
                .node(ts, 100 * S, MIB)
                .container("ns", "pod", "a", ts, a_cpu, MIB)
                .container("ns", "pod", "b", ts, b_cpu, MIB)
        };
        good(T0, 10 * S, 20 * S).send(&s, "n1");
        good(t(1), 13 * S, 23 * S).send(&s, "n1");
        assert!(pod(&s, t(1)).is_some(), "{name}");
        batch()
            .node(t(2), 101 * S, MIB)
            .container("ns", "pod", "a", t(2), 16 * S, MIB)
            .raw(bad_b)
            .send(&s, "n1");
        assert_eq!(
            pod(&s, t(2)),
            None,
            "{name}: the whole pod is dropped for this scrape"
        );
        assert!(
            node_usage(&s, t(2)).is_some(),
            "{name}: the node itself is unaffected"
        );
        good(t(3), 19 * S, 29 * S).send(&s, "n1");
        let served = pod(&s, t(3))
            .unwrap_or_else(|| panic!("{name}: served again at the next clean scrape"));
        let windows: Vec<_> = served
            .containers
            .iter()
            .map(|c| (c.name.to_string(), c.usage.cpu_nanocores))
            .collect();
        assert_eq!(
            served.window_ms, 30_000,
            "{name}: paired with the point from before the drop"
        );
        assert_eq!(
            windows,
            [("a".into(), 200_000_000), ("b".into(), 200_000_000)],
            "{name}"
        );
    }
}

#[test]
fn new_pod_with_an_unusable_container_is_not_stored() {
    let s = storage();
    let sample = |ts| {
        batch()
            .node(ts, 100 * S, MIB)
            .container("ns", "pod", "a", ts, S, MIB)
            .raw(ContainerSample {
                namespace: "ns".into(),
                pod: "pod".into(),
                container: "b".into(),
                cpu: None,
                memory: None,
                swap: None,
                start_time_ms: Some(ts - 1_000),
            })
    };
    sample(T0).send(&s, "n1");
    sample(t(1)).send(&s, "n1");
    assert_eq!(pod(&s, t(1)), None);
    one_pod(t(2), 2 * S).send(&s, "n1");
    assert_eq!(
        pod(&s, t(2)),
        None,
        "no point was kept from the dropped scrapes"
    );
}

#[test]
fn fresh_container_is_served_after_its_first_scrape_from_its_start_time() {
    struct Case {
        name: &'static str,
        age_ms: i64,
        cpu_ns: u64,
        want: Option<(i64, u64)>,
    }
    let cases = [
        Case {
            name: "3 s old (metrics-server needs 10 s)",
            age_ms: 3_000,
            cpu_ns: 300_000_000,
            want: Some((3_000, 100_000_000)),
        },
        Case {
            name: "14.999 s old",
            age_ms: 14_999,
            cpu_ns: 14_999_000,
            want: Some((14_999, 1_000_000)),
        },
        Case {
            name: "exactly one resolution old waits",
            age_ms: 15_000,
            cpu_ns: S,
            want: None,
        },
        Case {
            name: "an hour old waits for a second scrape",
            age_ms: 3_600_000,
            cpu_ns: 3600 * S,
            want: None,
        },
    ];
    for case in cases {
        let s = storage();
        batch()
            .node(T0, S, MIB)
            .container("ns", "pod", "c", T0, case.cpu_ns, MIB)
            .started(T0 - case.age_ms)
            .send(&s, "n1");
        let got = pod(&s, T0).map(|p| {
            assert_eq!(p.timestamp_ms, T0, "{}", case.name);
            (p.window_ms, first_container(&p).usage.cpu_nanocores)
        });
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn long_running_container_seen_for_the_first_time_is_served_after_a_second_scrape() {
    let s = storage();
    let sample = |ts, cpu_ns| {
        batch()
            .node(ts, S, MIB)
            .container("ns", "pod", "c", ts, cpu_ns, MIB)
            .started(T0 - 86_400_000)
    };
    sample(T0, 86_400 * S).send(&s, "n1");
    assert_eq!(
        pod(&s, T0),
        None,
        "a lifetime average is not a current rate"
    );
    sample(t(1), 86_400 * S + 3 * S).send(&s, "n1");
    assert_eq!(
        pod(&s, t(1)).map(|p| (p.window_ms, first_container(&p).usage.cpu_nanocores)),
        Some((15_000, 200_000_000))
    );
}

#[test]
fn start_time_not_before_the_sample_never_makes_a_zero_point() {
    for (name, start) in [
        ("start equals the sample time", T0),
        ("start after the sample time (skew)", T0 + 2_000),
    ] {
        let s = storage();
        batch()
            .node(T0, S, MIB)
            .container("ns", "pod", "c", T0, S, MIB)
            .started(start)
            .send(&s, "n1");
        assert_eq!(pod(&s, T0), None, "{name}");
    }
}

#[test]
fn young_container_with_an_earlier_real_point_pairs_with_that_point() {
    let s = storage();
    let start = T0 - 2_000;
    let sample = |ts, cpu_ns| {
        batch()
            .node(ts, S, MIB)
            .container("ns", "pod", "c", ts, cpu_ns, MIB)
            .started(start)
    };
    sample(T0, 200_000_000).send(&s, "n1");
    sample(T0 + 10_000, 1_200_000_000).send(&s, "n1");
    let got = pod(&s, T0 + 10_000).map(|p| (p.window_ms, first_container(&p).usage.cpu_nanocores));
    assert_eq!(
        got,
        Some((10_000, 100_000_000)),
        "the real earlier point, not the start time"
    );
}

#[test]
fn restarted_container_pairs_with_a_zero_point_at_its_new_start_at_any_age() {
    let s = storage();
    let sample = |ts, cpu_ns, start| {
        batch()
            .node(ts, S, MIB)
            .container("ns", "pod", "c", ts, cpu_ns, MIB)
            .started(start)
    };
    let first_start = T0 - 3_600_000;
    sample(T0, 100 * S, first_start).send(&s, "n1");
    sample(t(1), 103 * S, first_start).send(&s, "n1");
    // t(2) failed; the container restarted 5 s after the retained point, so it is 25 s old (> resolution) at t(3).
    let restart = t(1) + 5_000;
    sample(t(3), 5 * S, restart).send(&s, "n1");
    let got = pod(&s, t(3)).map(|p| {
        (
            p.timestamp_ms,
            p.window_ms,
            first_container(&p).usage.cpu_nanocores,
        )
    });
    assert_eq!(got, Some((t(3), 25_000, 200_000_000)));
}

#[test]
fn counter_decrease_or_start_time_change_without_zero_point_drops_prev_and_the_whole_pod() {
    struct Case {
        name: &'static str,
        b_start_at_t2: TimestampMs,
        b_cpu_at_t2: u64,
    }
    let original_start = T0 - 3_600_000;
    let cases = [
        Case {
            name: "CPU decrease with unchanged start time",
            b_start_at_t2: original_start,
            b_cpu_at_t2: S,
        },
        Case {
            name: "start time moved backwards",
            b_start_at_t2: original_start - 60_000,
            b_cpu_at_t2: 30 * S,
        },
        Case {
            name: "start time moved forwards but not after the retained point",
            b_start_at_t2: T0,
            b_cpu_at_t2: 30 * S,
        },
    ];
    for case in cases {
        let s = storage();
        let sample = |ts, b_cpu, b_start| {
            batch()
                .node(ts, 100 * S, MIB)
                .container(
                    "ns",
                    "pod",
                    "a",
                    ts,
                    10 * S + (ts - T0) as u64 * 1_000_000,
                    MIB,
                )
                .started(original_start)
                .container("ns", "pod", "b", ts, b_cpu, MIB)
                .started(b_start)
        };
        sample(T0, 20 * S, original_start).send(&s, "n1");
        sample(t(1), 23 * S, original_start).send(&s, "n1");
        assert!(pod(&s, t(1)).is_some(), "{}", case.name);
        sample(t(2), case.b_cpu_at_t2, case.b_start_at_t2).send(&s, "n1");
        assert_eq!(pod(&s, t(2)), None, "{}: never served partially", case.name);
        sample(t(3), case.b_cpu_at_t2 + 3 * S, case.b_start_at_t2).send(&s, "n1");
        let got = pod(&s, t(3)).map(|p| {
            p.containers
                .iter()
                .map(|c| c.usage.cpu_nanocores)
                .collect::<Vec<_>>()
        });
        assert_eq!(
            got,
            Some(vec![1_000_000_000, 200_000_000]),
            "{}: served again one scrape later",
            case.name
        );
    }
}

#[test]
fn pod_is_served_only_when_every_container_has_a_rate() {
    let s = storage();
    let long_ago = T0 - 3_600_000;
    batch()
        .node(T0, S, MIB)
        .container("ns", "pod", "a", T0, 10 * S, MIB)
        .started(long_ago)
        .send(&s, "n1");
    batch()
        .node(t(1), S, MIB)
        .container("ns", "pod", "a", t(1), 13 * S, MIB)
        .started(long_ago)
        .container("ns", "pod", "b", t(1), 50 * S, MIB)
        .started(long_ago)
        .send(&s, "n1");
    assert_eq!(
        pod(&s, t(1)),
        None,
        "b has no rate yet, so a alone is not served"
    );
    batch()
        .node(t(2), S, MIB)
        .container("ns", "pod", "a", t(2), 16 * S, MIB)
        .started(long_ago)
        .container("ns", "pod", "b", t(2), 56 * S, MIB)
        .started(long_ago)
        .send(&s, "n1");
    let got = pod(&s, t(2)).map(|p| {
        p.containers
            .iter()
            .map(|c| c.usage.cpu_nanocores)
            .collect::<Vec<_>>()
    });
    assert_eq!(got, Some(vec![200_000_000, 400_000_000]));
}

#[test]
fn pod_timestamp_and_window_are_those_of_its_earliest_container() {
    let s = storage();
    let sample = |a_ts: TimestampMs, b_ts: TimestampMs, n: u64| {
        batch()
            .node(b_ts, S, MIB)
            .container("ns", "pod", "a", a_ts, n * S, MIB)
            .container("ns", "pod", "b", b_ts, n * S, MIB)
    };
    sample(T0 - 1_000, T0, 1).send(&s, "n1");
    sample(t(1) + 2_000, t(1), 2).send(&s, "n1");
    let got = pod(&s, t(1) + 2_000).map(|p| (p.timestamp_ms, p.window_ms));
    assert_eq!(
        got,
        Some((t(1), 15_000)),
        "b is earliest: its timestamp and its 15 s window (a's is 18 s)"
    );
}

#[test]
fn pod_window_tie_on_timestamp_takes_the_longest_window() {
    let s = storage();
    batch()
        .node(T0, S, MIB)
        .container("ns", "pod", "long-running", T0, S, MIB)
        .send(&s, "n1");
    // "fresh" sorts first, so the tie rule (not name order) must pick the long-running container's window.
    batch()
        .node(t(1), S, MIB)
        .container("ns", "pod", "fresh", t(1), S, MIB)
        .started(t(1) - 4_000)
        .container("ns", "pod", "long-running", t(1), 2 * S, MIB)
        .send(&s, "n1");
    assert_eq!(
        pod(&s, t(1)).map(|p| (p.timestamp_ms, p.window_ms)),
        Some((t(1), 15_000))
    );
}

#[test]
fn containers_are_sorted_by_name_and_duplicates_keep_the_last() {
    let s = storage();
    let sample = |ts, n: u64| {
        batch()
            .node(ts, S, MIB)
            .container("ns", "pod", "zeta", ts, n * S, MIB)
            .container("ns", "other", "x", ts, n * S, MIB)
            .container("ns", "pod", "alpha", ts, n * S, MIB)
            .container("ns", "pod", "mid", ts, 999 * S, MIB)
            .container("ns", "pod", "mid", ts, n * S, 7 * MIB)
    };
    sample(T0, 1).send(&s, "n1");
    sample(t(1), 4).send(&s, "n1");
    let served = some(pod(&s, t(1)), "served");
    let got: Vec<_> = served
        .containers
        .iter()
        .map(|c| (c.name.to_string(), c.usage.memory_bytes))
        .collect();
    assert_eq!(
        got,
        [
            ("alpha".into(), MIB),
            ("mid".into(), 7 * MIB),
            ("zeta".into(), MIB)
        ]
    );
    assert!(s.pod_usage("ns", "other", t(1)).is_some());
}

#[test]
fn swap_is_served_for_nodes_and_containers_when_reported() {
    let s = storage();
    let sample = |ts, n: u64| {
        batch()
            .node(ts, n * S, MIB)
            .node_swap(3 * MIB)
            .container("ns", "pod", "with-swap", ts, n * S, MIB)
            .swap(5 * MIB)
            .container("ns", "pod", "without", ts, n * S, MIB)
    };
    sample(T0, 1).send(&s, "n1");
    sample(t(1), 2).send(&s, "n1");
    assert_eq!(
        node_usage(&s, t(1)).map(|u| u.usage.swap_bytes),
        Some(Some(3 * MIB))
    );
    let served = some(pod(&s, t(1)), "served");
    let swaps: Vec<_> = served
        .containers
        .iter()
        .map(|c| c.usage.swap_bytes)
        .collect();
    assert_eq!(swaps, [Some(5 * MIB), None]);
}

#[test]
fn pods_missing_from_a_new_batch_are_removed() {
    let s = storage();
    let both = |ts, n: u64| {
        batch()
            .node(ts, S, MIB)
            .container("ns", "gone", "c", ts, n * S, MIB)
            .container("ns", "stays", "c", ts, n * S, MIB)
    };
    both(T0, 1).send(&s, "n1");
    both(t(1), 2).send(&s, "n1");
    assert!(s.pod_usage("ns", "gone", t(1)).is_some());
    batch()
        .node(t(2), S, MIB)
        .container("ns", "stays", "c", t(2), 3 * S, MIB)
        .send(&s, "n1");
    assert_eq!(s.pod_usage("ns", "gone", t(2)), None);
    assert!(s.pod_usage("ns", "stays", t(2)).is_some());
    assert_eq!(s.point_counts(t(2)), (1, 1));
}

#[test]
fn pod_reported_by_two_nodes_is_chosen_the_same_way_in_either_arrival_order() {
    struct Case {
        name: &'static str,
        n1_offset_ms: i64,
        n2_offset_ms: i64,
        want_window_ms: i64,
    }
    // n1's window is 15 s long, n2's 10 s, so the served window tells which node won.
    let cases = [
        Case {
            name: "newer timestamp wins (n2 newer)",
            n1_offset_ms: 0,
            n2_offset_ms: 1_000,
            want_window_ms: 10_000,
        },
        Case {
            name: "newer timestamp wins (n1 newer)",
            n1_offset_ms: 1_000,
            n2_offset_ms: 0,
            want_window_ms: 15_000,
        },
        Case {
            name: "tie goes to the smaller node name",
            n1_offset_ms: 0,
            n2_offset_ms: 0,
            want_window_ms: 15_000,
        },
    ];
    for case in cases {
        for n1_first in [true, false] {
            let s = storage();
            let n1 = |ts, n: u64| one_pod(ts + case.n1_offset_ms, n * S);
            let n2 = |ts, n: u64| one_pod(ts + case.n2_offset_ms, n * S);
            let send = |first_round: bool| {
                let (a, b) = if first_round {
                    (T0, t(1) - 10_000)
                } else {
                    (t(1), t(1))
                };
                let k = if first_round { 1 } else { 2 };
                if n1_first {
                    n1(a, k).send(&s, "n1");
                    n2(b, k).send(&s, "n2");
                } else {
                    n2(b, k).send(&s, "n2");
                    n1(a, k).send(&s, "n1");
                }
            };
            send(true);
            send(false);
            let got = pod(&s, t(1) + 1_000).map(|p| p.window_ms);
            assert_eq!(
                got,
                Some(case.want_window_ms),
                "{} (n1 first: {n1_first})",
                case.name
            );
            assert_eq!(
                s.point_counts(t(1) + 1_000),
                (2, 1),
                "{}: one pod counted once",
                case.name
            );
        }
    }
}

#[test]
fn forget_removes_the_node_and_its_pods_and_another_node_takes_over() {
    let s = storage();
    one_pod(T0, S).send(&s, "n1");
    one_pod(t(1), 2 * S).send(&s, "n1");
    one_pod(T0 - 5_000, S).send(&s, "n2");
    one_pod(t(1) - 5_000, 2 * S).send(&s, "n2");
    assert_eq!(
        pod(&s, t(1)).map(|p| p.timestamp_ms),
        Some(t(1)),
        "n1 is newer"
    );
    s.forget("n1");
    assert_eq!(node_usage(&s, t(1)), None);
    assert_eq!(
        pod(&s, t(1)).map(|p| p.timestamp_ms),
        Some(t(1) - 5_000),
        "n2's candidate is served"
    );
    s.forget("n2");
    assert_eq!(pod(&s, t(1)), None);
    s.forget("never-seen");
    assert_eq!(s.point_counts(t(1)), (0, 0));
}

#[test]
fn readiness_needs_a_servable_node_and_a_servable_container() {
    struct Case {
        name: &'static str,
        batches: Vec<Batch>,
        now: TimestampMs,
        want: bool,
    }
    let pods_only = |ts, n: u64| batch().container("ns", "pod", "c", ts, n * S, MIB);
    let cases = [
        Case {
            name: "empty storage",
            batches: vec![],
            now: T0,
            want: false,
        },
        Case {
            name: "one scrape: no rate yet",
            batches: vec![one_pod(T0, S)],
            now: T0,
            want: false,
        },
        Case {
            name: "nodes without pods",
            batches: vec![batch().node(T0, S, MIB), batch().node(t(1), 2 * S, MIB)],
            now: t(1),
            want: false,
        },
        Case {
            name: "pods without a usable node",
            batches: vec![pods_only(T0, 1), pods_only(t(1), 2)],
            now: t(1),
            want: false,
        },
        Case {
            name: "node and pod",
            batches: vec![one_pod(T0, S), one_pod(t(1), 2 * S)],
            now: t(1),
            want: true,
        },
        Case {
            name: "node and pod, both stale",
            batches: vec![one_pod(T0, S), one_pod(t(1), 2 * S)],
            now: t(1) + STALENESS_MS + 1,
            want: false,
        },
    ];
    for case in cases {
        let s = storage();
        for b in case.batches {
            b.send(&s, "n1");
        }
        assert_eq!(s.is_ready(case.now), case.want, "{}", case.name);
    }
}

#[test]
fn point_counts_count_servable_nodes_and_containers() {
    let s = storage();
    let two_pods = |ts, n: u64| {
        batch()
            .node(ts, n * S, MIB)
            .container("a", "p1", "c1", ts, n * S, MIB)
            .container("a", "p1", "c2", ts, n * S, MIB)
            .container("b", "p2", "c", ts, n * S, MIB)
    };
    assert_eq!(s.point_counts(T0), (0, 0));
    two_pods(T0, 1).send(&s, "n1");
    assert_eq!(s.point_counts(T0), (0, 0));
    two_pods(t(1), 2).send(&s, "n1");
    one_pod(t(1), S).send(&s, "n2");
    assert_eq!(s.point_counts(t(1)), (1, 3));
}

#[test]
fn names_are_interned_across_nodes_and_pruned_when_unused() {
    let s = storage();
    for node in ["n1", "n2"] {
        let pod_name = format!("pod-{node}");
        batch()
            .container("shared-ns", &pod_name, "app", T0, S, MIB)
            .send(&s, node);
        batch()
            .container("shared-ns", &pod_name, "app", t(1), 2 * S, MIB)
            .send(&s, node);
    }
    let a = some(s.pod_usage("shared-ns", "pod-n1", t(1)), "served");
    let b = some(s.pod_usage("shared-ns", "pod-n2", t(1)), "served");
    assert!(
        Arc::ptr_eq(first_container(&a).name, first_container(&b).name),
        "container names are shared"
    );

    let mut interner = Interner::default();
    let kept = interner.intern("kept");
    let _dropped = interner.intern("dropped");
    assert!(Arc::ptr_eq(&kept, &interner.intern("kept")));
    drop(_dropped);
    interner.prune();
    assert_eq!(interner.len(), 1);
}

#[test]
fn pod_names_are_the_sources_arcs_when_it_knows_the_pod() {
    #[derive(Debug)]
    struct Known(Arc<str>);
    impl PodNames for Known {
        fn pod_name(&self, namespace: &str, pod: &str) -> Option<Arc<str>> {
            (namespace == "ns" && pod == "known").then(|| Arc::clone(&self.0))
        }
    }
    let known: Arc<str> = Arc::from("known");
    let s = Storage::with_pod_names(
        StorageConfig {
            resolution: Duration::from_millis(RESOLUTION_MS as u64),
            staleness: Duration::from_millis(STALENESS_MS as u64),
        },
        Arc::new(Known(Arc::clone(&known))),
    );
    for (ts, cpu_ns) in [(T0, S), (t(1), 2 * S)] {
        batch()
            .container("ns", "known", "c", ts, cpu_ns, MIB)
            .container("ns", "unknown", "c", ts, cpu_ns, MIB)
            .send(&s, "n1");
    }
    let state = some(super::read(&s.shared).nodes.get("n1").cloned(), "stored");
    let names: Vec<(&str, bool)> = state
        .named_pods()
        .map(|(k, _)| (&*k.name, Arc::ptr_eq(&k.name, &known)))
        .collect();
    assert_eq!(names, [("known", true), ("unknown", false)]);
    let found = super::read(&s.shared)
        .pods
        .get("ns", "known")
        .map(|f| Arc::ptr_eq(f.name, &known));
    assert_eq!(found, Some(true), "the pod index holds the same Arc");
    for pod in ["known", "unknown"] {
        let usage = some(s.pod_usage("ns", pod, t(1)), "served");
        assert_eq!(first_container(&usage).usage.cpu_nanocores, 66_666_666);
    }
}

#[test]
fn readers_are_served_while_writers_store() {
    let s = Arc::new(storage());
    let nodes = 8;
    let rounds: i64 = 50;
    std::thread::scope(|scope| {
        for n in 0..nodes {
            let s = Arc::clone(&s);
            scope.spawn(move || {
                let node = format!("n{n}");
                for r in 0..rounds {
                    let ts = T0 + r * 1_000;
                    let cpu_ns = (r as u64 + 1) * S;
                    batch()
                        .node(ts, cpu_ns, MIB)
                        .container("ns", &format!("pod-{n}"), "c", ts, cpu_ns, MIB)
                        .send(&s, &node);
                }
            });
        }
        let reader = Arc::clone(&s);
        scope.spawn(move || {
            for _ in 0..2_000 {
                for n in 0..nodes {
                    if let Some(u) =
                        reader.pod_usage("ns", &format!("pod-{n}"), T0 + rounds * 1_000)
                    {
                        assert_eq!(
                            first_container(&u).usage.cpu_nanocores,
                            S,
                            "1 CPU second per second"
                        );
                    }
                }
            }
        });
    });
    let last = T0 + (rounds - 1) * 1_000;
    for n in 0..nodes {
        let got = s
            .pod_usage("ns", &format!("pod-{n}"), last)
            .map(|p| (p.timestamp_ms, p.window_ms));
        assert_eq!(got, Some((last, 1_000)));
    }
    assert_eq!(s.point_counts(last), (8, 8));
}

#[test]
fn pod_on_three_nodes_falls_back_to_the_best_remaining_candidate() {
    let s = storage();
    // Window ends: n1 newest, then n3, then n2.
    for (node, offset) in [("n2", -2_000), ("n1", 0), ("n3", -1_000)] {
        one_pod(T0 + offset, S).send(&s, node);
        one_pod(t(1) + offset, 2 * S).send(&s, node);
    }
    let served_ts = |s: &Storage| pod(s, t(1)).map(|p| p.timestamp_ms);
    assert_eq!(served_ts(&s), Some(t(1)));
    batch().node(t(2) - 1_000, 3 * S, MIB).send(&s, "n3");
    assert_eq!(
        served_ts(&s),
        Some(t(1)),
        "n3 dropping the pod leaves the winner alone"
    );
    s.forget("n1");
    assert_eq!(served_ts(&s), Some(t(1) - 2_000), "only n2 is left");
    one_pod(t(2) - 1_000, 3 * S).send(&s, "n3");
    one_pod(t(3) - 1_000, 4 * S).send(&s, "n3");
    assert_eq!(
        pod(&s, t(3)).map(|p| p.timestamp_ms),
        Some(t(3) - 1_000),
        "n3 is back and newer"
    );
}

/// Checks the pod index against the node states: every servable pod of every node is recorded at its exact
/// position (so readers never need the binary-search fallback), and nothing else is recorded.
#[track_caller]
fn assert_index_matches_states(s: &Storage) {
    let shared = s
        .shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut served = 0;
    for node in shared.nodes.states() {
        for (at, (key, pod)) in node.named_pods().enumerate() {
            if pod.served().is_none() {
                continue;
            }
            served += 1;
            let found = some(
                shared.pods.get(&key.namespace, &key.name),
                "a servable pod is in the index",
            );
            let recorded = found.entry.locations().any(|l| {
                l.pod as usize == at
                    && shared
                        .nodes
                        .state(l.node)
                        .is_some_and(|n| Arc::ptr_eq(n, node))
            });
            assert!(
                recorded,
                "{}/{} on {} is recorded at position {at}",
                key.namespace, key.name, node.name
            );
        }
    }
    assert_eq!(
        shared.pods.locations(),
        served,
        "the index records only servable pods"
    );
}

/// A batch of one-container pods `pods` (namespace "ns") on a node, all sampled at `ts` with `n` CPU seconds.
fn pods_at(pods: &[&str], ts: TimestampMs, n: u64) -> Batch {
    pods.iter().fold(batch().node(ts, n * S, MIB), |b, pod| {
        b.container("ns", pod, "c", ts, n * S, MIB)
    })
}

#[test]
fn steady_state_scrape_leaves_the_pod_index_alone() {
    let rules = super::window::Rules {
        resolution_ms: RESOLUTION_MS,
        staleness_ms: STALENESS_MS,
    };
    let node: Arc<str> = Arc::from("n1");
    let mut interner = Interner::default();
    let mut old: Option<super::state::NodeState> = None;
    let mut changes = Vec::new();
    for round in 0..4 {
        let update = super::state::build(
            &rules,
            &node,
            old.as_ref(),
            pods_at(&["a", "b", "c"], t(round), round as u64 + 1).0,
            &mut interner,
        );
        changes.push((update.served.len(), update.withdrawn.len()));
        old = Some(update.state);
    }
    assert_eq!(
        changes,
        [(0, 0), (3, 0), (0, 0), (0, 0)],
        "the index learns of the pods once, when they become servable, and not again"
    );
}

#[test]
fn pods_added_or_removed_before_served_pods_keep_every_pod_served() {
    let s = storage();
    let rounds: [&[&str]; 6] = [
        &["m", "z"],
        &["m", "z"],
        &["a", "m", "z"], // "a" is new (not servable yet); "m" and "z" move
        &["a", "m", "z"], // "a" becomes servable
        &["m", "z"],      // "a" is gone; "m" and "z" move back
        &["b", "z"],      // "m" is gone, "b" is new
    ];
    for (round, pods) in rounds.iter().enumerate() {
        let round = round as i64;
        pods_at(pods, t(round), round as u64 + 1).send(&s, "n1");
        assert_index_matches_states(&s);
    }
    let served = |pod| s.pod_usage("ns", pod, t(5)).map(|p| p.timestamp_ms);
    assert_eq!(
        [served("a"), served("b"), served("m"), served("z")],
        [None, None, None, Some(t(5))]
    );
    pods_at(&["b", "z"], t(6), 7).send(&s, "n1");
    assert_index_matches_states(&s);
    assert_eq!(
        [served("b"), served("z")].map(|p| p.is_some()),
        [true, true]
    );
}

#[test]
fn forgotten_node_slot_is_reused_without_serving_its_pods() {
    let s = storage();
    for (node, pod) in [("n1", "p1"), ("n2", "p2")] {
        pods_at(&[pod], T0, 1).send(&s, node);
        pods_at(&[pod], t(1), 2).send(&s, node);
    }
    s.forget("n1");
    assert_index_matches_states(&s);
    pods_at(&["p3"], T0, 1).send(&s, "n3");
    pods_at(&["p3"], t(1), 2).send(&s, "n3");
    assert_index_matches_states(&s);
    let served = |pod| s.pod_usage("ns", pod, t(1)).is_some();
    assert_eq!(
        [served("p1"), served("p2"), served("p3")],
        [false, true, true]
    );
    assert_eq!(s.point_counts(t(1)), (2, 2));
}

/// The copy a reader must get, by brute force over every node's state: newest timestamp, then smallest node name.
fn expected_copy(s: &Storage, pod: &str) -> Option<(TimestampMs, Arc<str>)> {
    let shared = s
        .shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    shared
        .nodes
        .states()
        .filter_map(|node| {
            let served = node.pod("ns", pod)?.served()?;
            Some((served.timestamp_ms, Arc::clone(&node.name)))
        })
        .min_by(|(ta, na), (tb, nb)| tb.cmp(ta).then_with(|| na.cmp(nb)))
}

#[test]
fn reads_follow_pods_moving_between_nodes_and_appearing_and_vanishing() {
    let s = storage();
    let nodes = ["n1", "n2", "n3"];
    let pods = ["p0", "p1", "p2", "p3", "p4", "p5"];
    // A fixed pseudo-random walk (64-bit LCG): each node reports a changing subset of the pods, some scrapes
    // carry an unusable container, and one node is forgotten and comes back.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let (mut reads_served, mut reads_shared) = (0, 0);
    for round in 0..60_i64 {
        for (i, node) in nodes.iter().enumerate() {
            if round == 30 && i == 1 {
                s.forget(node);
                assert_index_matches_states(&s);
                continue;
            }
            let ts = t(round) + i as i64 * 1_000 - (next() % 3) as i64 * 500;
            let mut b = batch().node(ts, (round as u64 + 1) * S, MIB);
            for pod in pods {
                if next() % 3 == 0 {
                    continue; // not on this node this round
                }
                let memory = if next() % 11 == 0 { 0 } else { MIB }; // unusable: drops the pod
                b = b.container("ns", pod, "c", ts, (round as u64 + 1) * S, memory);
            }
            b.send(&s, node);
            assert_index_matches_states(&s);
        }
        let now = t(round) + 3_000;
        for pod in pods {
            let got = s.pod_usage("ns", pod, now).map(|p| p.timestamp_ms);
            let want = expected_copy(&s, pod)
                .map(|(ts, _)| ts)
                .filter(|ts| now - ts <= STALENESS_MS);
            assert_eq!(got, want, "round {round}, pod {pod}");
            reads_served += usize::from(got.is_some());
            let shared = s
                .shared
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            reads_shared += usize::from(
                shared
                    .pods
                    .get("ns", pod)
                    .is_some_and(|f| f.entry.is_shared()),
            );
        }
    }
    assert!(
        reads_served > 150 && reads_shared > 100,
        "the walk serves pods ({reads_served} reads) and shares them between nodes ({reads_shared} reads)"
    );
}

#[test]
fn stored_layout_stays_compact() {
    use super::index::PodEntry;
    use super::state::{ContainerState, PodKey, PodState};
    // A pod's and a container's names live beside them in the node's `Names` (shared by successive states).
    assert_eq!(
        size_of::<PodState>() + size_of::<PodKey>(),
        56,
        "per pod, per node reporting it"
    );
    assert_eq!(
        size_of::<ContainerState>() + size_of::<Arc<str>>(),
        80,
        "per container"
    );
    assert_eq!(size_of::<PodEntry>(), 16, "per pod in the index");
}

/// Node `n1`'s stored state.
fn state(s: &Storage) -> Arc<super::state::NodeState> {
    some(super::read(&s.shared).nodes.get("n1").cloned(), "stored")
}

/// Each stored pod's and container's names, read through the state's own accessors: (namespace, pod, containers).
fn stored_names(state: &super::state::NodeState) -> Vec<(String, String, Vec<String>)> {
    use crate::api::ContainerTable as _;
    state
        .named_pods()
        .map(|(key, pod)| {
            let names = pod
                .range()
                .map(|i| {
                    some(state.container(i), "a named container")
                        .name
                        .to_string()
                })
                .collect();
            (key.namespace.to_string(), key.name.to_string(), names)
        })
        .collect()
}

#[test]
fn names_are_shared_between_states_while_pods_and_containers_stay_the_same() {
    struct Step {
        name: &'static str,
        /// (pod, containers) in namespace `ns`, each container usable unless its name starts with `bad`.
        pods: &'static [(&'static str, &'static [&'static str])],
        want_shared: bool,
        want: &'static [(&'static str, &'static [&'static str])],
    }
    let steps = [
        Step {
            name: "first scrape",
            pods: &[("a", &["c1", "c2"]), ("c", &["c1"])],
            want_shared: false,
            want: &[("a", &["c1", "c2"]), ("c", &["c1"])],
        },
        Step {
            name: "the same pods and containers",
            pods: &[("a", &["c1", "c2"]), ("c", &["c1"])],
            want_shared: true,
            want: &[("a", &["c1", "c2"]), ("c", &["c1"])],
        },
        Step {
            name: "a pod added between two",
            pods: &[("a", &["c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
            want_shared: false,
            want: &[("a", &["c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
        },
        Step {
            name: "an unusable container keeps its pod's previous containers",
            pods: &[("a", &["bad", "c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
            want_shared: true,
            want: &[("a", &["c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
        },
        Step {
            name: "a container added to the first pod",
            pods: &[("a", &["c0", "c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
            want_shared: false,
            want: &[("a", &["c0", "c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
        },
        Step {
            name: "a new pod that is unusable is not stored",
            pods: &[
                ("a", &["c0", "c1", "c2"]),
                ("aa", &["bad"]),
                ("b", &["c9"]),
                ("c", &["c1"]),
            ],
            want_shared: true,
            want: &[("a", &["c0", "c1", "c2"]), ("b", &["c9"]), ("c", &["c1"])],
        },
        Step {
            name: "the last pod gone",
            pods: &[("a", &["c0", "c1", "c2"]), ("b", &["c9"])],
            want_shared: false,
            want: &[("a", &["c0", "c1", "c2"]), ("b", &["c9"])],
        },
        Step {
            name: "every pod gone",
            pods: &[],
            want_shared: false,
            want: &[],
        },
    ];
    let s = storage();
    let mut before: Option<Arc<super::state::NodeState>> = None;
    for (round, step) in (1..).zip(&steps) {
        let mut b = batch().node(t(round), round as u64 * S, MIB);
        for (pod, containers) in step.pods {
            for container in *containers {
                let cpu_ns = if container.starts_with("bad") {
                    0
                } else {
                    round as u64 * S
                };
                b = b.container("ns", pod, container, t(round), cpu_ns, MIB);
            }
        }
        b.send(&s, "n1");
        let now = state(&s);
        let shared = before
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.names, &now.names));
        assert_eq!(shared, step.want_shared, "{}: names shared", step.name);
        let want: Vec<(String, String, Vec<String>)> = step
            .want
            .iter()
            .map(|(pod, containers)| {
                let containers = containers.iter().map(|c| (*c).to_string()).collect();
                ("ns".to_string(), (*pod).to_string(), containers)
            })
            .collect();
        assert_eq!(stored_names(&now), want, "{}", step.name);
        assert_eq!(
            now.names.containers.len(),
            now.containers.len(),
            "{}",
            step.name
        );
        assert_index_matches_states(&s);
        before = Some(now);
    }
}
