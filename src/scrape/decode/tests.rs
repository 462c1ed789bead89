//! Table-driven tests of [`super::decode`] on the real kubelet sample bodies and on derived bodies, one rule per
//! case. Owns no production code.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Tests may panic on broken invariants.

use super::*;

const KIND: &[u8] = include_bytes!("../../../tests/fixtures/metrics-resource-kind-2021-alpha.prom");
const EKS: &[u8] = include_bytes!("../../../tests/fixtures/metrics-resource-eks-2025-stable.prom");
const SWAP: &[u8] =
    include_bytes!("../../../tests/fixtures/metrics-resource-format-swap-composite.prom");

/// The request time used for samples without a timestamp.
const NOW: TimestampMs = 1_700_000_000_000;

fn cpu(ns: u64, ts: TimestampMs) -> Option<CpuSample> {
    Some(CpuSample {
        cumulative_cpu_ns: ns,
        timestamp_ms: ts,
    })
}

fn gauge(bytes: u64, ts: TimestampMs) -> Option<GaugeSample> {
    Some(GaugeSample {
        bytes,
        timestamp_ms: ts,
    })
}

fn container(namespace: &str, pod: &str, name: &str) -> ContainerSample<'static> {
    ContainerSample {
        namespace: namespace.to_owned().into(),
        pod: pod.to_owned().into(),
        container: name.to_owned().into(),
        cpu: None,
        memory: None,
        swap: None,
        start_time_ms: None,
    }
}

impl ContainerSample<'_> {
    fn cpu(mut self, ns: u64, ts: TimestampMs) -> Self {
        self.cpu = cpu(ns, ts);
        self
    }
    fn memory(mut self, bytes: u64, ts: TimestampMs) -> Self {
        self.memory = gauge(bytes, ts);
        self
    }
    fn swap(mut self, bytes: u64, ts: TimestampMs) -> Self {
        self.swap = gauge(bytes, ts);
        self
    }
    fn started(mut self, ms: TimestampMs) -> Self {
        self.start_time_ms = Some(ms);
        self
    }
}

fn batch() -> NodeBatch<'static> {
    NodeBatch::default()
}

impl NodeBatch<'_> {
    fn node_cpu(mut self, ns: u64, ts: TimestampMs) -> Self {
        self.node.cpu = cpu(ns, ts);
        self
    }
    fn node_memory(mut self, bytes: u64, ts: TimestampMs) -> Self {
        self.node.memory = gauge(bytes, ts);
        self
    }
    fn node_swap(mut self, bytes: u64, ts: TimestampMs) -> Self {
        self.node.swap = gauge(bytes, ts);
        self
    }
    fn with(mut self, c: ContainerSample<'static>) -> Self {
        self.containers.push(c);
        self
    }
    fn rejected(mut self, n: u32) -> Self {
        self.rejected_series = n;
        self
    }
    fn kubelet_error(mut self) -> Self {
        self.kubelet_error = true;
        self
    }
}

fn malformed(line: usize, reason: &'static str) -> Result<NodeBatch<'static>, Error> {
    Err(Error::Malformed { line, reason })
}

struct Case {
    name: &'static str,
    body: &'static [u8],
    want: Result<NodeBatch<'static>, Error>,
}

#[test]
fn derived_bodies_follow_the_decode_rules() {
    let cases = vec![
        Case {
            name: "an empty body yields an empty batch",
            body: b"",
            want: Ok(batch()),
        },
        Case {
            name: "resource_scrape_error 1 alone sets kubelet_error",
            body: b"# HELP resource_scrape_error [STABLE] 1 if there was an error\n# TYPE resource_scrape_error gauge\nresource_scrape_error 1\n",
            want: Ok(batch().kubelet_error()),
        },
        Case {
            name: "the deprecated scrape_error 1 sets kubelet_error too",
            body: b"scrape_error 1\n",
            want: Ok(batch().kubelet_error()),
        },
        Case {
            name: "scrape error 0 is not a kubelet error",
            body: b"resource_scrape_error 0\nscrape_error 0\n",
            want: Ok(batch()),
        },
        Case {
            name: "a scrape error value other than 0 or 1 is a rejected series",
            body: b"resource_scrape_error 2\nscrape_error NaN\n",
            want: Ok(batch().rejected(2)),
        },
        Case {
            name: "NaN, infinities and negative values are rejected per series and create no container",
            body: br#"container_cpu_usage_seconds_total{container="a",namespace="ns",pod="p"} NaN 5
container_memory_working_set_bytes{container="b",namespace="ns",pod="p"} +Inf 5
container_swap_usage_bytes{container="c",namespace="ns",pod="p"} -Inf 5
container_start_time_seconds{container="d",namespace="ns",pod="p"} Inf
container_cpu_usage_seconds_total{container="e",namespace="ns",pod="p"} -1 5
node_cpu_usage_seconds_total nan 5
node_memory_working_set_bytes -1e3 5
"#,
            want: Ok(batch().rejected(7)),
        },
        Case {
            name: "a node swap underflow above i64::MAX is rejected",
            body: b"node_swap_usage_bytes 1.8446743709127774e+19 7\nnode_memory_working_set_bytes 9.223372036854775e+18 7\n",
            want: Ok(batch().node_memory(9_223_372_036_854_774_784, 7).rejected(1)),
        },
        Case {
            name: "cpu seconds whose nanoseconds exceed i64::MAX are rejected",
            body: b"node_cpu_usage_seconds_total 1e10 7\n",
            want: Ok(batch().rejected(1)),
        },
        Case {
            name: "negative zero is zero, not negative",
            body: b"node_cpu_usage_seconds_total -0 7\n",
            want: Ok(batch().node_cpu(0, 7)),
        },
        Case {
            name: "a container with only a start time is kept with no cpu or memory",
            body: br#"container_start_time_seconds{container="c",namespace="ns",pod="p"} 1.6243962483020916e+09"#,
            want: Ok(batch().with(container("ns", "p", "c").started(1_624_396_248_302))),
        },
        Case {
            name: "the start time uses its value, never the line timestamp",
            body: br#"container_start_time_seconds{container="c",namespace="ns",pod="p"} 1000.0004 5000"#,
            want: Ok(batch().with(container("ns", "p", "c").started(1_000_000))),
        },
        Case {
            name: "a container series missing the pod label is rejected, never stored",
            body: br#"container_cpu_usage_seconds_total{container="c",namespace="ns"} 1 5
container_memory_working_set_bytes{namespace="ns",pod="p"} 1 5
container_swap_usage_bytes{container="c",pod="p"} 1 5
container_start_time_seconds 1
"#,
            want: Ok(batch().rejected(4)),
        },
        Case {
            name: "an empty container label counts as missing",
            body: br#"container_cpu_usage_seconds_total{container="",namespace="ns",pod="p"} 1 5"#,
            want: Ok(batch().rejected(1)),
        },
        Case {
            name: "a negative timestamp fails the whole body",
            body: b"node_memory_working_set_bytes 1 5\nnode_cpu_usage_seconds_total 1 -5\n",
            want: malformed(2, "negative timestamp"),
        },
        Case {
            name: "an OpenMetrics float-seconds timestamp fails the whole body",
            body: b"# TYPE node_cpu_usage_seconds counter\nnode_cpu_usage_seconds_total 1 1624396278.302\n# EOF\n",
            want: malformed(2, "timestamp is not an integer number of milliseconds"),
        },
        Case {
            name: "an OpenMetrics EOF marker is an ordinary comment",
            body: b"node_cpu_usage_seconds_total 1 1624396278302\n# EOF\n",
            want: Ok(batch().node_cpu(1_000_000_000, 1_624_396_278_302)),
        },
        Case {
            name: "a timestamp beyond i64 fails the whole body",
            body: b"node_cpu_usage_seconds_total 1 9223372036854775808\n",
            want: malformed(1, "timestamp out of range"),
        },
        Case {
            name: "label escapes are resolved",
            body: br#"container_cpu_usage_seconds_total{container="a\\b\"c\nd",namespace="ns",pod="p"} 2 5"#,
            want: Ok(batch().with(container("ns", "p", "a\\b\"c\nd").cpu(2_000_000_000, 5))),
        },
        Case {
            name: "an unknown escape in a used family fails the body",
            body: br#"container_cpu_usage_seconds_total{container="a\tb",namespace="ns",pod="p"} 2 5"#,
            want: malformed(1, "invalid escape in label value"),
        },
        Case {
            name: "duplicate lines: the last valid line wins",
            body: br#"container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 1 5
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 2 6
node_memory_working_set_bytes 10 5
node_memory_working_set_bytes 20 6
"#,
            want: Ok(batch().node_memory(20, 6).with(container("ns", "p", "c").cpu(2_000_000_000, 6))),
        },
        Case {
            name: "a rejected duplicate does not erase an earlier valid line",
            body: br#"container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 1 5
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} NaN 6
"#,
            want: Ok(batch().with(container("ns", "p", "c").cpu(1_000_000_000, 5)).rejected(1)),
        },
        Case {
            name: "reordered labels, extra labels, blanks and a trailing comma are accepted",
            body: b"container_memory_working_set_bytes{ pod = \"p\" ,id=\"/x\",\tnamespace=\"ns\",container=\"c\", }\t42\t5 \n",
            want: Ok(batch().with(container("ns", "p", "c").memory(42, 5))),
        },
        Case {
            name: "a body without HELP and TYPE lines decodes the same",
            body: br#"node_cpu_usage_seconds_total 1.5 5
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 0.25 6
container_memory_working_set_bytes{container="c",namespace="ns",pod="p"} 1.253376e+07 6
"#,
            want: Ok(batch()
                .node_cpu(1_500_000_000, 5)
                .with(container("ns", "p", "c").cpu(250_000_000, 6).memory(12_533_760, 6))),
        },
        Case {
            name: "CRLF line endings are accepted",
            body: b"# HELP node_cpu_usage_seconds_total x\r\nnode_cpu_usage_seconds_total 1 5\r\n\r\nnode_memory_working_set_bytes 2\r\n",
            want: Ok(batch().node_cpu(1_000_000_000, 5).node_memory(2, NOW)),
        },
        Case {
            name: "samples without a timestamp use the default timestamp",
            body: br#"container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 3"#,
            want: Ok(batch().with(container("ns", "p", "c").cpu(3_000_000_000, NOW))),
        },
        Case {
            name: "the Kubernetes 1.18.0 names without _total are read as cpu",
            body: br#"node_cpu_usage_seconds 1 5
container_cpu_usage_seconds{container="c",namespace="ns",pod="p"} 2 5
"#,
            want: Ok(batch()
                .node_cpu(1_000_000_000, 5)
                .with(container("ns", "p", "c").cpu(2_000_000_000, 5))),
        },
        Case {
            name: "a longer name that starts with a used family name is ignored",
            body: br#"node_cpu_usage_seconds_total_foo 5
container_cpu_usage_seconds_totalx{container="c",namespace="ns",pod="p"} 1 5
node_cpu_usage_seconds_total:rate bad
"#,
            want: Ok(batch()),
        },
        Case {
            name: "malformed lines of unused families and comments are ignored",
            body: b"pod_cpu_usage_seconds_total{namespace=\"ns\" oops -5\nsome_unknown_family{{{ 1 -1\n#garbage\n  # indented comment\n\xff\xfe\n",
            want: Ok(batch()),
        },
        Case {
            name: "leading blanks before a sample are accepted",
            body: b"  \tnode_cpu_usage_seconds_total 1 5\n",
            want: Ok(batch().node_cpu(1_000_000_000, 5)),
        },
        Case {
            name: "labels on node series are parsed and ignored",
            body: b"node_memory_working_set_bytes{node=\"n1\"} 7 5\n",
            want: Ok(batch().node_memory(7, 5)),
        },
        Case {
            name: "a used series without a value fails the body",
            body: b"node_cpu_usage_seconds_total\n",
            want: malformed(1, "missing value"),
        },
        Case {
            name: "a used series with a non-numeric value fails the body",
            body: b"node_cpu_usage_seconds_total abc 5\n",
            want: malformed(1, "invalid value"),
        },
        Case {
            name: "text after the timestamp fails the body",
            body: b"node_cpu_usage_seconds_total 1 5 6\n",
            want: malformed(1, "unexpected text after timestamp"),
        },
        Case {
            name: "an unterminated label value fails the body",
            body: b"container_cpu_usage_seconds_total{container=\"c 1 5\n",
            want: malformed(1, "unterminated label value"),
        },
        Case {
            name: "an unquoted label value fails the body",
            body: b"container_cpu_usage_seconds_total{container=c} 1 5\n",
            want: malformed(1, "expected '\"' to open label value"),
        },
        Case {
            name: "a label name starting with a digit fails the body",
            body: b"container_cpu_usage_seconds_total{1container=\"c\"} 1 5\n",
            want: malformed(1, "invalid label name"),
        },
        Case {
            name: "a missing separator between labels fails the body",
            body: b"container_cpu_usage_seconds_total{container=\"c\" pod=\"p\"} 1 5\n",
            want: malformed(1, "expected ',' or '}' after label value"),
        },
        Case {
            name: "a duplicated identifying label fails the body",
            body: b"container_cpu_usage_seconds_total{container=\"c\",namespace=\"ns\",pod=\"p\",pod=\"q\"} 1 5\n",
            want: malformed(1, "duplicate label"),
        },
        Case {
            name: "a label value that is not UTF-8 fails the body",
            body: b"container_cpu_usage_seconds_total{container=\"\xff\",namespace=\"ns\",pod=\"p\"} 1 5\n",
            want: malformed(1, "label value is not UTF-8"),
        },
        Case {
            name: "containers arriving out of order are merged and returned sorted",
            body: br#"container_memory_working_set_bytes{container="b",namespace="ns",pod="p"} 2 5
container_cpu_usage_seconds_total{container="a",namespace="z",pod="p"} 1 5
container_cpu_usage_seconds_total{container="b",namespace="ns",pod="p"} 1 5
container_memory_working_set_bytes{container="a",namespace="z",pod="p"} 2 5
container_swap_usage_bytes{container="a",namespace="ns",pod="q"} 3 5
container_start_time_seconds{container="b",namespace="ns",pod="p"} 4
container_cpu_usage_seconds_total{container="a",namespace="ns",pod="q"} 1 5
"#,
            want: Ok(batch()
                .with(container("ns", "p", "b").cpu(1_000_000_000, 5).memory(2, 5).started(4000))
                .with(container("ns", "q", "a").cpu(1_000_000_000, 5).swap(3, 5))
                .with(container("z", "p", "a").cpu(1_000_000_000, 5).memory(2, 5))),
        },
        Case {
            name: "Go float formats are read exactly",
            body: b"node_memory_working_set_bytes 1.137475584e+09 5\nnode_swap_usage_bytes 5.023744E+07\nnode_cpu_usage_seconds_total 293.769327238 5\n",
            want: Ok(batch()
                .node_memory(1_137_475_584, 5)
                .node_swap(50_237_440, NOW)
                .node_cpu(293_769_327_238, 5)),
        },
        Case {
            name: "the CPU line of the sample keeps its own timestamp, separate from memory",
            body: br#"container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 1 5
container_memory_working_set_bytes{container="c",namespace="ns",pod="p"} 1 9
"#,
            want: Ok(batch().with(container("ns", "p", "c").cpu(1_000_000_000, 5).memory(1, 9))),
        },
    ];
    for case in cases {
        assert_eq!(decode(case.body, NOW), case.want, "case: {}", case.name);
    }
}

#[test]
fn kind_2021_alpha_body_yields_one_node_and_seventy_pods() {
    let got = decode(KIND, NOW).expect("kind fixture decodes");
    assert_eq!(got.node.cpu, cpu(357_354_910_000, 1_633_253_809_720));
    assert_eq!(got.node.memory, gauge(1_616_273_408, 1_633_253_809_720));
    assert_eq!(got.node.swap, None);
    assert!(!got.kubelet_error);
    assert_eq!(got.rejected_series, 0);
    assert_eq!(got.containers.len(), 70);
    let mut pods: Vec<(&str, &str)> = got
        .containers
        .iter()
        .map(|c| (&*c.namespace, &*c.pod))
        .collect();
    pods.dedup();
    assert_eq!(pods.len(), 70);
    for (ns, want) in [
        ("kube-system", 9),
        ("local-path-storage", 1),
        ("sleeper-1", 60),
    ] {
        assert_eq!(
            pods.iter().filter(|(n, _)| *n == ns).count(),
            want,
            "pods in {ns}"
        );
    }
    for c in &got.containers {
        assert!(
            c.cpu.is_some() && c.memory.is_some(),
            "{c:?} has cpu and memory"
        );
        assert_eq!(
            (c.swap, c.start_time_ms),
            (None, None),
            "{c:?} has no swap or start time"
        );
    }
    let coredns = got
        .containers
        .iter()
        .find(|c| c.pod == "coredns-558bd4d5db-4dpjz")
        .expect("coredns pod present");
    assert_eq!(
        *coredns,
        container("kube-system", "coredns-558bd4d5db-4dpjz", "coredns")
            .cpu(4_710_169_000, 1_633_253_812_125)
            .memory(12_533_760, 1_633_253_812_125)
    );
}

#[test]
fn eks_2025_stable_body_yields_twelve_containers_in_nine_pods() {
    let got = decode(EKS, NOW).expect("EKS fixture decodes");
    assert_eq!(got.node.cpu, cpu(6_197_005_020_909, 1_750_705_774_670));
    assert_eq!(got.node.memory, gauge(1_137_475_584, 1_750_705_774_670));
    assert!(!got.kubelet_error);
    assert_eq!(got.rejected_series, 0);
    assert_eq!(got.containers.len(), 12);
    let mut pods: Vec<&str> = got.containers.iter().map(|c| &*c.pod).collect();
    pods.dedup();
    assert_eq!(pods.len(), 9);
    let aws_node = got
        .containers
        .iter()
        .find(|c| c.container == "aws-node")
        .expect("aws-node present");
    assert_eq!(
        *aws_node,
        container("kube-system", "aws-node-7k649", "aws-node")
            .cpu(293_769_327_238, 1_750_705_767_923)
            .memory(50_237_440, 1_750_705_767_923)
            .started(1_750_607_840_135)
    );
    assert!(
        got.containers
            .iter()
            .all(|c| c.start_time_ms.is_some() && c.swap.is_none())
    );
    let sorted = got.containers.windows(2).all(|w| {
        (&w[0].namespace, &w[0].pod, &w[0].container)
            < (&w[1].namespace, &w[1].pod, &w[1].container)
    });
    assert!(sorted, "containers sorted by namespace, pod, container");
}

#[test]
fn swap_composite_body_has_swap_only_for_container_a_of_pod_a() {
    let ts = 1_624_396_278_302;
    let want = batch()
        .node_cpu(10_000_000_000, ts)
        .node_memory(1000, ts)
        .node_swap(500, ts)
        .with(
            container("namespace_a", "pod_a", "container_a")
                .cpu(10_000_000_000, ts)
                .memory(1000, ts)
                .swap(1000, ts)
                .started(ts - 30_000),
        )
        .with(
            container("namespace_a", "pod_a", "container_b")
                .cpu(10_000_000_000, ts)
                .memory(1000, ts)
                .started(ts - 120_000),
        )
        .with(
            container("namespace_b", "pod_b", "container_a")
                .cpu(10_000_000_000, ts)
                .memory(1000, ts)
                .started(ts - 600_000),
        );
    assert_eq!(decode(SWAP, NOW), Ok(want));
}

/// Deterministic xorshift for shuffling; no dependency needed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).expect("index below slice length");
        items.swap(i, j);
    }
}

#[test]
fn line_order_does_not_change_the_result_of_the_fixtures() {
    for (name, body) in [("kind", KIND), ("eks", EKS), ("swap", SWAP)] {
        let want = decode(body, NOW).expect("fixture decodes");
        let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        for seed in [1u64, 7, 42, 1234, 99_991] {
            shuffle(&mut lines, seed);
            let shuffled = lines.join(&b'\n');
            assert_eq!(
                decode(&shuffled, NOW).as_ref(),
                Ok(&want),
                "{name} shuffled with seed {seed}"
            );
        }
        lines.reverse();
        assert_eq!(
            decode(&lines.join(&b'\n'), NOW),
            Ok(want),
            "{name} reversed"
        );
    }
}

#[test]
fn decode_errors_render_line_and_reason() {
    let err =
        decode(b"\n\nnode_cpu_usage_seconds_total 1 -1\n", NOW).expect_err("negative timestamp");
    assert_eq!(
        err.to_string(),
        "malformed kubelet metrics body at line 3: negative timestamp"
    );
}

/// Reads a derived fixture from `tests/fixtures/`.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/", $name)).as_slice()
    };
}

#[test]
fn derived_fixture_files_decode_as_documented() {
    let ts = 1_624_396_278_302;
    let cases = vec![
        Case {
            name: "resource_scrape_error 1 alone is a kubelet error with no samples",
            body: fixture!("derived-resource-scrape-error.prom"),
            want: Ok(batch().kubelet_error()),
        },
        Case {
            name: "NaN, ±Inf, negative and underflowed values are rejected one by one",
            body: fixture!("derived-invalid-values.prom"),
            want: Ok(batch()
                .node_cpu(6_197_005_020_909, 1_750_705_774_670)
                .with(
                    container("kube-system", "aws-node-7k649", "aws-node")
                        .memory(50_237_440, 1_750_705_767_923),
                )
                .rejected(6)),
        },
        Case {
            name: "a container with only a start time is returned beside its sampled sibling",
            body: fixture!("derived-start-time-only-container.prom"),
            want: Ok(batch()
                .node_cpu(10_000_000_000, ts)
                .node_memory(1000, ts)
                .with(
                    container("namespace_a", "pod_a", "container_a")
                        .cpu(10_000_000_000, ts)
                        .memory(1000, ts)
                        .started(ts - 30_000),
                )
                .with(container("namespace_a", "pod_a", "container_b").started(ts - 1000))),
        },
        Case {
            name: "series missing the pod label are rejected and never stored",
            body: fixture!("derived-missing-pod-label.prom"),
            want: Ok(batch()
                .with(
                    container("namespace_a", "pod_a", "container_b")
                        .cpu(20_000_000_000, ts)
                        .memory(2000, ts),
                )
                .rejected(2)),
        },
        Case {
            name: "reordered and extra labels without HELP/TYPE merge, the last duplicate winning",
            body: fixture!("derived-reordered-labels-no-help.prom"),
            want: Ok(batch()
                .node_cpu(10_000_000_000, ts)
                .node_memory(1000, ts)
                .with(
                    container("namespace_a", "pod_a", "container_a")
                        .cpu(11_000_000_000, 1_624_396_278_399)
                        .memory(1000, ts),
                )),
        },
        Case {
            name: "CRLF line endings decode like LF",
            body: fixture!("derived-crlf.prom"),
            want: Ok(batch()
                .node_cpu(10_000_000_000, ts)
                .node_memory(1000, NOW)
                .with(
                    container("namespace_a", "pod_a", "container_a")
                        .cpu(10_000_000_000, ts)
                        .memory(1000, ts),
                )),
        },
        Case {
            name: "the 1.18.0 un-suffixed cpu names are read as cpu",
            body: fixture!("derived-k8s-1.18.0-unsuffixed.prom"),
            want: Ok(batch()
                .node_cpu(357_354_910_000, 1_633_253_809_720)
                .node_memory(1_616_273_408, 1_633_253_809_720)
                .with(
                    container("kube-system", "coredns-66bff467f8-2gzzd", "coredns")
                        .cpu(4_710_169_000, 1_633_253_812_125)
                        .memory(12_533_760, 1_633_253_812_125),
                )),
        },
        Case {
            name: "escaped label values are unescaped and merged across label orders",
            body: fixture!("derived-label-escapes.prom"),
            want: Ok(batch().with(
                container("back\\slash", "new\nline", "quote\"d")
                    .cpu(1_000_000_000, ts)
                    .memory(2, ts),
            )),
        },
        Case {
            name: "a negative timestamp fails the whole body",
            body: fixture!("derived-malformed-negative-timestamp.prom"),
            want: malformed(3, "negative timestamp"),
        },
        Case {
            name: "an OpenMetrics body fails cleanly on its float-seconds timestamp",
            body: fixture!("derived-malformed-openmetrics.prom"),
            want: malformed(3, "timestamp is not an integer number of milliseconds"),
        },
    ];
    for case in cases {
        assert_eq!(decode(case.body, NOW), case.want, "case: {}", case.name);
    }
}

#[test]
fn the_decimal_fast_path_agrees_bit_for_bit_with_the_std_parser() {
    let mut tokens: Vec<String> = [
        "0",
        "10",
        "4.710169",
        "293.769327238",
        "1.137475584e+09",
        "5.023744e+07",
        "1.7506078418297591e+09",
        "6197.005020909",
        "9007199254740993",
        "9007199254740992",
        "123456789012345678",
        "1e22",
        "1e23",
        "1e-22",
        "1.5E-7",
        ".5",
        "5.",
        "0.1",
        "1e+000",
        "1e",
        "1e+",
        "1.2.3",
        "--1",
        "12a",
        "1e1000",
        "1e-400",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mantissa = seed % 10_u64.pow(u32::try_from(seed % 18).unwrap() + 1);
        let point = usize::try_from(seed >> 20).unwrap() % 20;
        let exp = i64::try_from((seed >> 40) % 60).unwrap() - 30;
        let mut digits = mantissa.to_string();
        if point < digits.len() {
            digits.insert(point, '.');
        }
        tokens.push(if seed & 1 == 0 {
            digits
        } else {
            format!("{digits}e{exp:+03}")
        });
    }
    for tok in tokens {
        let want = tok.parse::<f64>().ok().map(f64::to_bits);
        let got = parse_go_float(tok.as_bytes()).ok().map(f64::to_bits);
        assert_eq!(got, want, "token {tok}");
        if let Some(fast) = fast_decimal(tok.as_bytes()) {
            assert_eq!(Some(fast.to_bits()), want, "fast path on {tok}");
        }
    }
}

#[test]
fn digit_runs_read_eight_at_a_time_agree_with_a_byte_loop() {
    let naive = |s: &[u8]| {
        let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let value = s[..len].iter().fold(0_u64, |acc, &d| {
            acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
        });
        (len, value)
    };
    // Every byte value at every position of a 12-digit run, and random runs of every length up to 24.
    let base = *b"123456789012";
    for pos in 0..base.len() {
        for byte in 0..=u8::MAX {
            let mut s = base;
            s[pos] = byte;
            assert_eq!(leading_digits(&s), naive(&s), "{s:?}");
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = usize::try_from(seed % 25).unwrap();
        let mut s: Vec<u8> = (0..len)
            .map(|i| b'0' + u8::try_from((seed >> (i % 60)) % 10).unwrap())
            .collect();
        s.push(if seed & 1 == 0 { b' ' } else { b'.' });
        s.extend_from_slice(b"99");
        assert_eq!(leading_digits(&s), naive(&s), "{s:?}");
    }
    assert_eq!(eight_digits(*b"00000000"), Some(0));
    assert_eq!(eight_digits(*b"99999999"), Some(99_999_999));
    assert_eq!(eight_digits(*b"17507057"), Some(17_507_057));
    assert_eq!(eight_digits(*b"1750705/"), None);
    assert_eq!(eight_digits(*b":7507057"), None);
}

#[test]
fn rounding_matches_f64_round_on_its_edges() {
    let cases = [
        0.0,
        0.49999999999999994,
        0.5,
        1.5,
        2.5,
        1e9 * 4.710169,
        1e3 * 1_700_000_000.000_5,
        4_503_599_627_370_495.5,     // 2^52 - 0.5
        4_503_599_627_370_496.0,     // 2^52
        9_007_199_254_740_991.0,     // 2^53 - 1
        9_007_199_254_740_993.0,     // rounds to 2^53 when parsed
        9_223_372_036_854_774_784.0, // the largest f64 below 2^63
    ];
    for x in cases {
        assert_eq!(round_half_away(x), x.round() as u64, "{x:e}");
    }
    let mut x = 0.25_f64;
    while x < I64_LIMIT {
        for y in [x, x + 0.5, x * 1.000_000_1, x.next_up(), x.next_down()] {
            if (0.0..I64_LIMIT).contains(&y) {
                assert_eq!(round_half_away(y), y.round() as u64, "{y:e}");
            }
        }
        x *= 1.7;
    }
}
