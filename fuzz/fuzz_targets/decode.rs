//! libFuzzer target for the kubelet body decoder (metrics-server's `Fuzz_decodeBatchPrometheusFormat`).
//!
//! Compiles `src/scrape/decode.rs` (and `src/time.rs`, which it names as `crate::time`) straight from the main crate
//! so the fuzz build instruments only the decoder. Beyond "never panics", it checks the output invariants and a
//! round trip: re-encoding an `Ok` batch as kubelet text and decoding it again gives the same containers.
//! Must not hold decoding logic of its own.

#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/time.rs"]
mod time;

#[allow(dead_code)]
#[path = "../../src/scrape/decode.rs"]
mod decode;

const NOW: time::TimestampMs = 1_700_000_000_000;
const LIMIT: u64 = i64::MAX as u64;

fuzz_target!(|body: &[u8]| {
    let Ok(batch) = decode::decode(body, NOW) else {
        return;
    };
    check_invariants(&batch);
    let again = decode::decode(encode(&batch).as_bytes(), NOW).expect("a re-encoded batch decodes");
    assert_eq!(again.rejected_series, 0, "re-encoded batch has no rejected series");
    assert_eq!(again.containers.len(), batch.containers.len(), "same container count after round trip");
    for (a, b) in batch.containers.iter().zip(&again.containers) {
        assert_eq!((&a.namespace, &a.pod, &a.container), (&b.namespace, &b.pod, &b.container));
        assert_eq!(a.memory, b.memory);
        assert_eq!(a.swap, b.swap);
        assert_eq!(a.start_time_ms.is_some(), b.start_time_ms.is_some());
        if let (Some(x), Some(y)) = (a.start_time_ms, b.start_time_ms) {
            // Same f64 drift as for CPU, for start times beyond 2^53 ms.
            assert!(x.abs_diff(y) <= 1 + x.unsigned_abs() / (1 << 50), "{x} vs {y}");
        }
        assert_eq!(a.cpu.map(|c| c.timestamp_ms), b.cpu.map(|c| c.timestamp_ms));
        if let (Some(x), Some(y)) = (a.cpu, b.cpu) {
            // Decimal seconds → f64 → ns may move by a few ulps of the f64 beyond 2^53 ns (~104 days of CPU).
            let tolerance = 1 + x.cumulative_cpu_ns / (1 << 50);
            assert!(x.cumulative_cpu_ns.abs_diff(y.cumulative_cpu_ns) <= tolerance, "{x:?} vs {y:?}");
        }
    }
});

fn check_invariants(batch: &decode::NodeBatch) {
    for w in batch.containers.windows(2) {
        assert!(
            (&w[0].namespace, &w[0].pod, &w[0].container) < (&w[1].namespace, &w[1].pod, &w[1].container),
            "containers strictly sorted and unique"
        );
    }
    for c in &batch.containers {
        assert!(!c.namespace.is_empty() && !c.pod.is_empty() && !c.container.is_empty(), "{c:?}");
        assert!(
            c.cpu.is_some() || c.memory.is_some() || c.swap.is_some() || c.start_time_ms.is_some(),
            "a stored container has at least one series: {c:?}"
        );
        assert!(c.cpu.is_none_or(|s| s.cumulative_cpu_ns <= LIMIT && s.timestamp_ms >= 0));
        assert!(c.memory.is_none_or(|s| s.bytes <= LIMIT && s.timestamp_ms >= 0));
        assert!(c.swap.is_none_or(|s| s.bytes <= LIMIT && s.timestamp_ms >= 0));
        assert!(c.start_time_ms.is_none_or(|ms| ms >= 0));
    }
    let n = &batch.node;
    assert!(n.cpu.is_none_or(|s| s.cumulative_cpu_ns <= LIMIT));
    assert!(n.memory.is_none_or(|s| s.bytes <= LIMIT));
    assert!(n.swap.is_none_or(|s| s.bytes <= LIMIT));
}

fn escape(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes the containers back as kubelet text (label order shuffled from the kubelet's, to vary the path).
fn encode(batch: &decode::NodeBatch) -> String {
    let mut out = String::new();
    for c in &batch.containers {
        let mut labels = String::from("{pod=\"");
        escape(&mut labels, &c.pod);
        labels.push_str("\",container=\"");
        escape(&mut labels, &c.container);
        labels.push_str("\",namespace=\"");
        escape(&mut labels, &c.namespace);
        labels.push_str("\"}");
        if let Some(s) = c.cpu {
            let (secs, frac) = (s.cumulative_cpu_ns / 1_000_000_000, s.cumulative_cpu_ns % 1_000_000_000);
            let _ = writeln!(out, "container_cpu_usage_seconds_total{labels} {secs}.{frac:09} {}", s.timestamp_ms);
        }
        if let Some(s) = c.memory {
            let _ = writeln!(out, "container_memory_working_set_bytes{labels} {} {}", s.bytes, s.timestamp_ms);
        }
        if let Some(s) = c.swap {
            let _ = writeln!(out, "container_swap_usage_bytes{labels} {} {}", s.bytes, s.timestamp_ms);
        }
        if let Some(ms) = c.start_time_ms {
            let _ = writeln!(out, "container_start_time_seconds{labels} {}.{:03}", ms / 1000, ms % 1000);
        }
    }
    out
}
