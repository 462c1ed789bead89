//! An HPA-like consumer of the metrics API: reads `PodMetricsList` the way the HorizontalPodAutoscaler's REST
//! metrics client does (`pkg/controller/podautoscaler/metrics/client.go`) and computes a desired replica count
//! with the resource-utilisation rules of `replica_calculator.go` (grouping of ignored, unready and missing pods,
//! tolerance, the rebalancing of missing and unready pods). Used to check that our answers drive an autoscaler to
//! the same decisions as metrics-server's would.
//!
//! Pure computation plus one fetch helper; it must not read the clock (callers pass `now_ms`).

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{Model, PodPhase};

/// `--horizontal-pod-autoscaler-cpu-initialization-period` default: 5 minutes, in ms.
pub const CPU_INITIALIZATION_PERIOD_MS: i64 = 5 * 60 * 1000;

/// `--horizontal-pod-autoscaler-initial-readiness-delay` default: 30 seconds, in ms.
pub const INITIAL_READINESS_DELAY_MS: i64 = 30 * 1000;

/// Default `--horizontal-pod-autoscaler-tolerance`.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// Errors the HPA reports (each becomes a condition on a real HPA).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpaError {
    /// The metrics list had no items.
    #[error("no metrics returned from resource metrics API")]
    NoMetrics,
    /// The body was not a PodMetricsList.
    #[error("decoding PodMetricsList: {0}")]
    Decode(String),
    /// No pod matched the selector.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every matching pod was ignored or unready.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetricsForTargetedPods,
    /// A container has no CPU request.
    #[error("missing request for cpu in container {container} of Pod {pod}")]
    MissingRequest {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
}

/// One pod's CPU metric as the HPA keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    /// Σ containers' `usage.cpu` `MilliValue()` (rounded up).
    pub cpu_millicores: u64,
    /// `timestamp`, ms since the epoch.
    pub timestamp_ms: i64,
    /// `window`, ms.
    pub window_ms: i64,
}

/// A pod as the HPA's pod lister sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaPod {
    /// Pod name.
    pub name: String,
    /// `status.phase`.
    pub phase: PodPhase,
    /// Being deleted (`deletionTimestamp` set).
    pub deleting: bool,
    /// Ready condition status; `None` when the pod has no Ready condition.
    pub ready: Option<bool>,
    /// Ready condition `lastTransitionTime`, ms since the epoch.
    pub ready_transition_ms: i64,
    /// `status.startTime`, ms since the epoch.
    pub start_ms: Option<i64>,
    /// Per container: name and CPU request (millicores).
    pub cpu_requests: Vec<(String, Option<u64>)>,
}

/// A resource-utilisation target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Target average utilisation, percent of requests.
    pub utilization_percent: u64,
    /// Tolerance around ratio 1.
    pub tolerance: f64,
}

/// `Quantity.MilliValue()` of a CPU quantity (`250m`, `1`, `1500000n`, `12u`, `0.5`), rounded up.
pub fn cpu_millicores(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    // (digits, divisor to millicores, multiplier to millicores)
    let (number, divisor, multiplier): (&str, u64, u64) = if let Some(n) = q.strip_suffix('n') {
        (n, 1_000_000, 1)
    } else if let Some(u) = q.strip_suffix('u') {
        (u, 1_000, 1)
    } else if let Some(m) = q.strip_suffix('m') {
        (m, 1, 1)
    } else {
        (q, 1, 1_000)
    };
    if let Ok(integer) = number.parse::<u64>() {
        return integer.checked_mul(multiplier).map(|v| v.div_ceil(divisor));
    }
    let value: f64 = number.parse().ok()?;
    (value >= 0.0 && value.is_finite())
        .then(|| (value * multiplier as f64 / divisor as f64).ceil() as u64)
}

fn parse_duration_ms(window: &str) -> Option<i64> {
    // metav1.Duration strings from the metrics API: "10s", "20.05s", "1m0s".
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = window.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => value * 3_600_000.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                value
            }
            'm' => value * 60_000.0,
            's' => value * 1_000.0,
            _ => return None,
        };
    }
    number.is_empty().then_some(total.round() as i64)
}

/// Decodes a `PodMetricsList` like the HPA: per pod Σ container CPU; pods with zero containers or any container
/// without `cpu` are dropped (treated as missing).
///
/// # Errors
/// [`HpaError::Decode`] for a malformed body, [`HpaError::NoMetrics`] for an empty list.
pub fn pod_metrics(body: &[u8]) -> Result<HashMap<String, PodMetric>, HpaError> {
    let list: Value = serde_json::from_slice(body).map_err(|e| HpaError::Decode(e.to_string()))?;
    let items = list["items"]
        .as_array()
        .ok_or_else(|| HpaError::Decode("no items".into()))?;
    if items.is_empty() {
        return Err(HpaError::NoMetrics);
    }
    let mut out = HashMap::new();
    for item in items {
        let Some(name) = item["metadata"]["name"].as_str() else {
            continue;
        };
        let containers = item["containers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if containers.is_empty() {
            continue;
        }
        let sum: Option<u64> = containers
            .iter()
            .map(|c| c["usage"]["cpu"].as_str().and_then(cpu_millicores))
            .sum();
        let Some(cpu) = sum else { continue };
        let timestamp_ms = item["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_millisecond());
        let window_ms = item["window"]
            .as_str()
            .and_then(parse_duration_ms)
            .unwrap_or(0);
        out.insert(
            name.to_owned(),
            PodMetric {
                cpu_millicores: cpu,
                timestamp_ms,
                window_ms,
            },
        );
    }
    Ok(out)
}

/// The HPA's view of the model's pods in `namespace` whose labels pass `selects`.
pub fn pods_from_model(
    model: &Model,
    namespace: &str,
    selects: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> Vec<HpaPod> {
    model
        .pods()
        .iter()
        .filter(|p| p.spec.namespace == namespace && selects(&p.spec.labels))
        .map(|p| HpaPod {
            name: p.spec.name.clone(),
            phase: p.spec.phase,
            deleting: false,
            ready: Some(p.spec.phase == PodPhase::Running && p.spec.ready),
            ready_transition_ms: p.started_ms,
            start_ms: Some(p.started_ms),
            cpu_requests: p
                .spec
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.cpu_request_millicores))
                .collect(),
        })
        .collect()
}

/// `GetResourceUtilizationRatio`: Σ metric / Σ request over pods present in both, as integer percent / target.
fn utilization_ratio(
    metrics: &HashMap<&str, u64>,
    requests: &HashMap<&str, u64>,
    target: u64,
) -> Option<f64> {
    let (mut used, mut requested) = (0u64, 0u64);
    for (pod, value) in metrics {
        if let Some(request) = requests.get(pod) {
            used += value;
            requested += request;
        }
    }
    if requested == 0 {
        return None;
    }
    let utilization = used * 100 / requested;
    Some(utilization as f64 / target as f64)
}

/// The replica count the HPA's resource-utilisation calculation recommends for CPU.
///
/// # Errors
/// [`HpaError::NoPods`], [`HpaError::MissingRequest`], [`HpaError::NoMetricsForTargetedPods`].
pub fn desired_replicas(
    current: u32,
    pods: &[HpaPod],
    metrics: &HashMap<String, PodMetric>,
    target: Target,
    now_ms: i64,
) -> Result<u32, HpaError> {
    if pods.is_empty() {
        return Err(HpaError::NoPods);
    }
    let mut requests: HashMap<&str, u64> = HashMap::new();
    for pod in pods {
        let mut sum = 0;
        for (container, request) in &pod.cpu_requests {
            sum += request.ok_or_else(|| HpaError::MissingRequest {
                pod: pod.name.clone(),
                container: container.clone(),
            })?;
        }
        requests.insert(&pod.name, sum);
    }

    let mut ready: HashMap<&str, u64> = HashMap::new();
    let mut unready: Vec<&str> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for pod in pods {
        if pod.deleting || pod.phase == PodPhase::Failed {
            continue;
        }
        if pod.phase == PodPhase::Pending {
            unready.push(&pod.name);
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            missing.push(&pod.name);
            continue;
        };
        let is_unready = match (pod.ready, pod.start_ms) {
            (Some(is_ready), Some(start)) => {
                if now_ms < start + CPU_INITIALIZATION_PERIOD_MS {
                    !is_ready || metric.timestamp_ms < pod.ready_transition_ms + metric.window_ms
                } else {
                    !is_ready && start + INITIAL_READINESS_DELAY_MS > pod.ready_transition_ms
                }
            }
            _ => true,
        };
        if is_unready {
            unready.push(&pod.name);
        } else {
            ready.insert(&pod.name, metric.cpu_millicores);
        }
    }
    if ready.is_empty() {
        return Err(HpaError::NoMetricsForTargetedPods);
    }
    let ratio = utilization_ratio(&ready, &requests, target.utilization_percent)
        .ok_or(HpaError::NoMetricsForTargetedPods)?;
    let rebalance_unready = !unready.is_empty() && ratio > 1.0;
    if !rebalance_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= target.tolerance {
            return Ok(current);
        }
        return Ok((ratio * ready.len() as f64).ceil() as u32);
    }
    let mut adjusted = ready.clone();
    if ratio < 1.0 {
        let fallback = target.utilization_percent.max(100);
        for pod in &missing {
            adjusted.insert(
                pod,
                requests.get(pod).copied().unwrap_or(0) * fallback / 100,
            );
        }
    } else if ratio > 1.0 {
        for pod in &missing {
            adjusted.insert(pod, 0);
        }
    }
    if rebalance_unready {
        for pod in &unready {
            adjusted.insert(pod, 0);
        }
    }
    let new_ratio = utilization_ratio(&adjusted, &requests, target.utilization_percent)
        .ok_or(HpaError::NoMetricsForTargetedPods)?;
    if (1.0 - new_ratio).abs() <= target.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(current);
    }
    let replicas = (new_ratio * adjusted.len() as f64).ceil() as u32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(current);
    }
    Ok(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_convert_to_millicores_rounding_up() {
        struct Case {
            name: &'static str,
            input: &'static str,
            want: Option<u64>,
        }
        let cases = [
            Case {
                name: "nanocores round up",
                input: "1234567890n",
                want: Some(1235),
            },
            Case {
                name: "small nanocores still count",
                input: "4999999n",
                want: Some(5),
            },
            Case {
                name: "microcores",
                input: "1500u",
                want: Some(2),
            },
            Case {
                name: "millicores",
                input: "250m",
                want: Some(250),
            },
            Case {
                name: "whole cores",
                input: "2",
                want: Some(2000),
            },
            Case {
                name: "decimal cores",
                input: "0.5",
                want: Some(500),
            },
            Case {
                name: "garbage",
                input: "lots",
                want: None,
            },
        ];
        for case in cases {
            assert_eq!(cpu_millicores(case.input), case.want, "{}", case.name);
        }
    }

    #[test]
    fn windows_parse_as_go_durations() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("20.05s"), Some(20_050));
        assert_eq!(parse_duration_ms("1m0s"), Some(60_000));
        assert_eq!(parse_duration_ms("15ms"), Some(15));
    }

    #[test]
    fn pods_without_containers_or_cpu_are_dropped_from_metrics() {
        let body = br#"{"kind":"PodMetricsList","items":[
            {"metadata":{"name":"a"},"timestamp":"2026-01-01T00:00:00Z","window":"10s","containers":[{"name":"c","usage":{"cpu":"100m","memory":"1Mi"}}]},
            {"metadata":{"name":"empty"},"timestamp":"2026-01-01T00:00:00Z","window":"10s","containers":[]},
            {"metadata":{"name":"nocpu"},"timestamp":"2026-01-01T00:00:00Z","window":"10s","containers":[{"name":"c","usage":{"memory":"1Mi"}}]}]}"#;
        let metrics = pod_metrics(body).unwrap();
        assert_eq!(metrics.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(metrics["a"].window_ms, 10_000);
        assert_eq!(pod_metrics(br#"{"items":[]}"#), Err(HpaError::NoMetrics));
    }

    const NOW: i64 = 1_800_000_000_000;

    fn running(name: &str) -> HpaPod {
        HpaPod {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(true),
            ready_transition_ms: NOW - 3_600_000,
            start_ms: Some(NOW - 3_600_000),
            cpu_requests: vec![("app".into(), Some(100))],
        }
    }

    fn metric(cpu: u64) -> PodMetric {
        PodMetric {
            cpu_millicores: cpu,
            timestamp_ms: NOW - 5_000,
            window_ms: 10_000,
        }
    }

    #[test]
    fn replica_counts_follow_the_hpa_rules() {
        let target = Target {
            utilization_percent: 50,
            tolerance: DEFAULT_TOLERANCE,
        };
        struct Case {
            name: &'static str,
            current: u32,
            pods: Vec<HpaPod>,
            metrics: Vec<(&'static str, PodMetric)>,
            want: Result<u32, HpaError>,
        }
        let pending = HpaPod {
            phase: PodPhase::Pending,
            ..running("p")
        };
        let cases = [
            Case {
                // 55/50 is 1.1000000000000001 in float64, so |1 - ratio| exceeds 0.1 and Go's HPA scales up too.
                name: "ratio 1.1 sits just outside the tolerance in float64 and scales up",
                current: 2,
                pods: vec![running("a"), running("b")],
                metrics: vec![("a", metric(55)), ("b", metric(55))],
                want: Ok(3),
            },
            Case {
                current: 2,
                name: "within tolerance at ratio 0.9 keeps the count",
                pods: vec![running("a"), running("b")],
                metrics: vec![("a", metric(45)), ("b", metric(45))],
                want: Ok(2),
            },
            Case {
                current: 2,
                name: "double the target doubles the replicas",
                pods: vec![running("a"), running("b")],
                metrics: vec![("a", metric(100)), ("b", metric(100))],
                want: Ok(4),
            },
            Case {
                current: 2,
                name: "scale-up counts unready pods as zero",
                pods: vec![running("a"), running("b"), pending.clone()],
                metrics: vec![("a", metric(100)), ("b", metric(100))],
                want: Ok(4),
            },
            Case {
                current: 4,
                name: "scale-down counts missing pods at 100 % of their request",
                pods: vec![running("a"), running("b"), running("c"), running("m")],
                metrics: vec![("a", metric(5)), ("b", metric(5)), ("c", metric(5))],
                want: Ok(3),
            },
            Case {
                current: 2,
                name: "no pods",
                pods: vec![],
                metrics: vec![],
                want: Err(HpaError::NoPods),
            },
            Case {
                current: 2,
                name: "only unready pods",
                pods: vec![pending.clone()],
                metrics: vec![],
                want: Err(HpaError::NoMetricsForTargetedPods),
            },
            Case {
                current: 2,
                name: "a container without a request fails",
                pods: vec![HpaPod {
                    cpu_requests: vec![("app".into(), None)],
                    ..running("a")
                }],
                metrics: vec![("a", metric(10))],
                want: Err(HpaError::MissingRequest {
                    pod: "a".into(),
                    container: "app".into(),
                }),
            },
            Case {
                current: 2,
                name: "a sample straddling the readiness transition in the init period is unready",
                pods: vec![
                    running("a"),
                    HpaPod {
                        start_ms: Some(NOW - 60_000),
                        ready_transition_ms: NOW - 8_000,
                        ..running("young")
                    },
                ],
                metrics: vec![("a", metric(100)), ("young", metric(500))],
                want: Ok(2),
            },
        ];
        for case in cases {
            let metrics = case
                .metrics
                .into_iter()
                .map(|(n, m)| (n.to_owned(), m))
                .collect();
            assert_eq!(
                desired_replicas(case.current, &case.pods, &metrics, target, NOW),
                case.want,
                "{}",
                case.name
            );
        }
    }
}
