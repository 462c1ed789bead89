//! Points and the rate maths: one sample of a node's or container's series, and the CPU rate between two of them.
//!
//! Pure functions over values; no clocks, no locks, no collections. Rates are computed in integers (`u128`) so a
//! known input always gives the same exact, truncated nanocore figure; anything that would be negative, divide by a
//! non-positive window or overflow `u64` yields no rate instead of a cast.

use crate::api::Usage;
use crate::time::TimestampMs;

/// One cumulative CPU reading: what a rate needs from the older end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuPoint {
    /// Sample time of the CPU series, in ms since the epoch (the kubelet's clock).
    pub(crate) timestamp_ms: TimestampMs,
    /// Cumulative CPU time, in nanoseconds of CPU time (nanocore-seconds) since the node/container started.
    pub(crate) cumulative_cpu_ns: u64,
}

impl CpuPoint {
    /// The synthetic zero point of a container that started at `start_time_ms`: no CPU used yet at that instant.
    pub(crate) fn zero_at(start_time_ms: TimestampMs) -> CpuPoint {
        CpuPoint {
            timestamp_ms: start_time_ms,
            cumulative_cpu_ns: 0,
        }
    }
}

/// One usable sample of a node or container: the CPU reading plus the instantaneous gauges served with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// The CPU reading; its timestamp is the point's timestamp.
    pub(crate) cpu: CpuPoint,
    /// Memory working set, in bytes.
    pub(crate) memory_bytes: u64,
    /// Swap usage, in bytes, when the kubelet reports it.
    pub(crate) swap_bytes: Option<u64>,
}

/// The CPU rate over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Length of the window, in ms (> 0).
    pub(crate) window_ms: i64,
    /// CPU usage over the window, in nanocores, truncated towards zero.
    pub(crate) cpu_nanocores: u64,
}

/// The CPU rate between `prev` and `last`: `Δcumulative_cpu_ns × 1000 / Δt_ms`, truncated.
///
/// `None` when the window is not positive, the counter went down, or the result does not fit `u64`.
pub(crate) fn cpu_rate(prev: CpuPoint, last: CpuPoint) -> Option<Rate> {
    let window_ms = last.timestamp_ms.checked_sub(prev.timestamp_ms)?;
    let window_ms_u = u64::try_from(window_ms).ok().filter(|w| *w > 0)?;
    let used_ns = last.cumulative_cpu_ns.checked_sub(prev.cumulative_cpu_ns)?;
    let nanocores = u128::from(used_ns) * 1000 / u128::from(window_ms_u);
    let cpu_nanocores = u64::try_from(nanocores).ok()?;
    Some(Rate {
        window_ms,
        cpu_nanocores,
    })
}

/// The usage served for a window with the given rate, ending at a point with these gauges.
pub(crate) fn usage(rate: Rate, memory_bytes: u64, swap_bytes: Option<u64>) -> Usage {
    Usage {
        cpu_nanocores: rate.cpu_nanocores,
        memory_bytes,
        swap_bytes,
    }
}
