//! Renders a node's stats as the current kubelet `/metrics/resource` body: Prometheus text 0.0.4, families sorted,
//! `# HELP` with `[STABLE]`/`[ALPHA]`, labels `container`,`namespace`,`pod` in that order, Go `'g'` float
//! formatting, integer millisecond timestamps, start times without timestamps, swap families only on nodes with
//! swap, `pod_*` families, `resource_scrape_error 0` last.
//!
//! Pure text production; it must not read the clock or the model (stats are passed in).

use std::fmt::Write as _;

use crate::model::NodeStats;

/// Family metadata: name, HELP text, TYPE.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const CONTAINER_CPU: Family = Family {
    name: "container_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    kind: "counter",
};
const CONTAINER_MEMORY: Family = Family {
    name: "container_memory_working_set_bytes",
    help: "[STABLE] Current working set of the container in bytes",
    kind: "gauge",
};
const CONTAINER_START: Family = Family {
    name: "container_start_time_seconds",
    help: "[STABLE] Start time of the container since unix epoch in seconds",
    kind: "gauge",
};
const CONTAINER_SWAP: Family = Family {
    name: "container_swap_usage_bytes",
    help: "[ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems",
    kind: "gauge",
};
const NODE_CPU: Family = Family {
    name: "node_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    kind: "counter",
};
const NODE_MEMORY: Family = Family {
    name: "node_memory_working_set_bytes",
    help: "[STABLE] Current working set of the node in bytes",
    kind: "gauge",
};
const NODE_SWAP: Family = Family {
    name: "node_swap_usage_bytes",
    help: "[ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems",
    kind: "gauge",
};
const POD_CPU: Family = Family {
    name: "pod_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    kind: "counter",
};
const POD_MEMORY: Family = Family {
    name: "pod_memory_working_set_bytes",
    help: "[STABLE] Current working set of the pod in bytes",
    kind: "gauge",
};
const POD_SWAP: Family = Family {
    name: "pod_swap_usage_bytes",
    help: "[ALPHA] Current amount of the pod swap usage in bytes. Reported only on non-windows systems",
    kind: "gauge",
};
const SCRAPE_ERROR: Family = Family {
    name: "resource_scrape_error",
    help: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    kind: "gauge",
};

/// Appends the full body for `stats` to `out`; `timestamps: false` omits every sample timestamp (custom kubelets).
pub fn render(stats: &NodeStats, timestamps: bool, out: &mut String) {
    let swap = stats.swap_bytes.is_some();
    // (container, namespace, pod) order, the registry's label-sorted order.
    let mut rows: Vec<(&str, &str, &str, usize, usize)> = Vec::new();
    for (p, pod) in stats.pods.iter().enumerate() {
        for (c, container) in pod.containers.iter().enumerate() {
            rows.push((&container.name, &pod.namespace, &pod.name, p, c));
        }
    }
    rows.sort_unstable();
    let ts = |t: i64| if timestamps { Some(t) } else { None };

    let container_family =
        |out: &mut String, family: &Family, value: &dyn Fn(usize, usize) -> (f64, Option<i64>)| {
            if rows.is_empty() {
                return;
            }
            header(out, family);
            for &(container, namespace, pod, p, c) in &rows {
                let (v, t) = value(p, c);
                let _ = write!(
                    out,
                    "{}{{container=\"{container}\",namespace=\"{namespace}\",pod=\"{pod}\"}} ",
                    family.name
                );
                sample_tail(out, v, t);
            }
        };
    container_family(out, &CONTAINER_CPU, &|p, c| {
        (
            seconds(stats.pods[p].containers[c].cpu_ncs),
            ts(stats.pods[p].timestamp_ms),
        )
    });
    container_family(out, &CONTAINER_MEMORY, &|p, c| {
        (
            stats.pods[p].containers[c].working_set_bytes as f64,
            ts(stats.pods[p].timestamp_ms),
        )
    });
    container_family(out, &CONTAINER_START, &|p, c| {
        (
            stats.pods[p].containers[c].started_ms as f64 / 1_000.0,
            None,
        )
    });
    if swap {
        container_family(out, &CONTAINER_SWAP, &|p, c| {
            (
                stats.pods[p].containers[c].swap_bytes as f64,
                ts(stats.pods[p].timestamp_ms),
            )
        });
    }

    node_sample(
        out,
        &NODE_CPU,
        seconds(stats.cpu_ncs),
        ts(stats.timestamp_ms),
    );
    node_sample(
        out,
        &NODE_MEMORY,
        stats.working_set_bytes as f64,
        ts(stats.timestamp_ms),
    );
    if let Some(swap_bytes) = stats.swap_bytes {
        node_sample(out, &NODE_SWAP, swap_bytes as f64, ts(stats.timestamp_ms));
    }

    let pod_family = |out: &mut String, family: &Family, value: &dyn Fn(usize) -> f64| {
        if stats.pods.is_empty() {
            return;
        }
        header(out, family);
        // Pods are already sorted by (namespace, name).
        for (p, pod) in stats.pods.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{namespace=\"{}\",pod=\"{}\"}} ",
                family.name, pod.namespace, pod.name
            );
            sample_tail(out, value(p), ts(pod.timestamp_ms));
        }
    };
    pod_family(out, &POD_CPU, &|p| seconds(stats.pods[p].cpu_ncs));
    pod_family(out, &POD_MEMORY, &|p| {
        stats.pods[p].working_set_bytes as f64
    });
    if swap {
        pod_family(out, &POD_SWAP, &|p| stats.pods[p].swap_bytes as f64);
    }
    node_sample(out, &SCRAPE_ERROR, 0.0, None);
}

/// Appends the body of a kubelet that failed to collect stats: `resource_scrape_error 1` and nothing else.
pub fn render_scrape_error(out: &mut String) {
    node_sample(out, &SCRAPE_ERROR, 1.0, None);
}

fn header(out: &mut String, family: &Family) {
    let _ = write!(
        out,
        "# HELP {} {}\n# TYPE {} {}\n",
        family.name, family.help, family.name, family.kind
    );
}

fn node_sample(out: &mut String, family: &Family, value: f64, ts: Option<i64>) {
    header(out, family);
    out.push_str(family.name);
    out.push(' ');
    sample_tail(out, value, ts);
}

fn sample_tail(out: &mut String, value: f64, ts: Option<i64>) {
    go_float(value, out);
    if let Some(t) = ts {
        let _ = write!(out, " {t}");
    }
    out.push('\n');
}

/// Nanocore-seconds to core-seconds.
fn seconds(ncs: u128) -> f64 {
    ncs as f64 / 1e9
}

/// Appends `value` formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as the Prometheus client does: the
/// shortest round-tripping digits, exponent form (`1.137475584e+09`) when the decimal exponent is below -4 or at
/// least 6 (Go uses precision 6 for that decision in shortest mode), `NaN`, `+Inf`, `-Inf`.
pub fn go_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if value < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` yields the shortest round-trip digits: "1.7391616e7", "1e1", "4.2e-5".
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerStats, PodStats};

    #[test]
    fn floats_are_formatted_like_go_strconv_g() {
        struct Case {
            name: &'static str,
            input: f64,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "small integer",
                input: 10.0,
                want: "10",
            },
            Case {
                name: "thousands stay plain",
                input: 1000.0,
                want: "1000",
            },
            Case {
                name: "six digits stay plain",
                input: 123_456.7,
                want: "123456.7",
            },
            Case {
                name: "a million switches to exponent",
                input: 1e6,
                want: "1e+06",
            },
            Case {
                name: "working set from the EKS sample",
                input: 1.137475584e9,
                want: "1.137475584e+09",
            },
            Case {
                name: "memory with trailing zeros",
                input: 50_237_440.0,
                want: "5.023744e+07",
            },
            Case {
                name: "cpu seconds from the EKS sample",
                input: 293.769327238,
                want: "293.769327238",
            },
            Case {
                name: "start time from the EKS sample",
                input: 1.7506078418297591e9,
                want: "1.7506078418297591e+09",
            },
            Case {
                name: "small fraction",
                input: 0.0001,
                want: "0.0001",
            },
            Case {
                name: "tiny fraction uses exponent",
                input: 0.000015,
                want: "1.5e-05",
            },
            Case {
                name: "zero",
                input: 0.0,
                want: "0",
            },
            Case {
                name: "negative",
                input: -2.5,
                want: "-2.5",
            },
            Case {
                name: "not a number",
                input: f64::NAN,
                want: "NaN",
            },
            Case {
                name: "infinity",
                input: f64::INFINITY,
                want: "+Inf",
            },
        ];
        for case in cases {
            let mut out = String::new();
            go_float(case.input, &mut out);
            assert_eq!(out, case.want, "{}", case.name);
        }
    }

    fn stats(swap: Option<u64>) -> NodeStats {
        let container = |name: &str, cpu_ncs: u128| ContainerStats {
            name: name.into(),
            cpu_ncs,
            working_set_bytes: 1000,
            swap_bytes: 7,
            started_ms: 1_624_396_248_302,
        };
        NodeStats {
            timestamp_ms: 1_624_396_278_302,
            cpu_ncs: 10_000_000_000,
            working_set_bytes: 1000,
            swap_bytes: swap,
            pods: vec![
                PodStats {
                    namespace: "namespace_a".into(),
                    name: "pod_a".into(),
                    timestamp_ms: 1_624_396_278_302,
                    cpu_ncs: 10_000_000_000,
                    working_set_bytes: 1000,
                    swap_bytes: 5000,
                    containers: vec![
                        container("container_b", 10_000_000_000),
                        container("container_a", 10_000_000_000),
                    ],
                },
                PodStats {
                    namespace: "namespace_b".into(),
                    name: "pod_b".into(),
                    timestamp_ms: 1_624_396_278_302,
                    cpu_ncs: 10_000_000_000,
                    working_set_bytes: 1000,
                    swap_bytes: 0,
                    containers: vec![container("container_a", 10_000_000_000)],
                },
            ],
        }
    }

    #[test]
    fn body_matches_the_layout_of_the_collector_sample() {
        let mut out = String::new();
        render(&stats(Some(500)), true, &mut out);
        let families: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = families.clone();
        sorted.sort_unstable();
        assert_eq!(families, sorted, "families are sorted");
        assert!(
            families.contains(&"node_swap_usage_bytes")
                && families.contains(&"pod_swap_usage_bytes")
        );
        let cpu_lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("container_cpu_usage_seconds_total{"))
            .collect();
        assert_eq!(
            cpu_lines,
            [
                "container_cpu_usage_seconds_total{container=\"container_a\",namespace=\"namespace_a\",pod=\"pod_a\"} 10 1624396278302",
                "container_cpu_usage_seconds_total{container=\"container_a\",namespace=\"namespace_b\",pod=\"pod_b\"} 10 1624396278302",
                "container_cpu_usage_seconds_total{container=\"container_b\",namespace=\"namespace_a\",pod=\"pod_a\"} 10 1624396278302",
            ]
        );
        assert!(out.contains("container_start_time_seconds{container=\"container_a\",namespace=\"namespace_a\",pod=\"pod_a\"} 1.624396248302e+09\n"));
        assert!(out.ends_with("# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n"));
    }

    #[test]
    fn nodes_without_swap_emit_no_swap_families_and_can_drop_timestamps() {
        let mut out = String::new();
        render(&stats(None), false, &mut out);
        assert!(!out.contains("swap"));
        assert!(out.contains("node_cpu_usage_seconds_total 10\n"));
    }

    #[test]
    fn the_shared_collector_sample_parses_like_our_output() {
        // Both bodies must parse with the same (independent) Prometheus parser.
        // The repository's copy of shared/kubelet-samples (CI checks out the repo alone).
        let sample = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/metrics-resource-format-swap-composite.prom"
        ))
        .unwrap();
        let mut ours = String::new();
        render(&stats(Some(500)), true, &mut ours);
        for body in [sample, ours] {
            let lines = body.lines().map(|l| Ok(l.to_owned()));
            let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
            assert!(
                scrape
                    .samples
                    .iter()
                    .any(|s| s.metric == "node_cpu_usage_seconds_total")
            );
        }
    }
}
