//! Window rotation: how a new point joins a series' retained points, and the restart, fresh-container and
//! retention rules that decide which older point (if any) it pairs with.
//!
//! Pure functions over values: the caller passes the retained window and the new point; nothing here reads a clock,
//! takes a lock or knows about pods and nodes beyond which rule set applies.

use super::point::{CpuPoint, Rate, cpu_rate};
use crate::time::TimestampMs;

/// The CPU points retained for one series: the newest reading and, when a rate can be formed, the older end of the
/// window it pairs with. Gauges (memory, swap) are instantaneous and kept by the caller where they are served.
///
/// Today a series keeps exactly the two points a rate needs. History (more points per series) would add an
/// append-only block beside `last` rather than change this pairing: see the module docs of `storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The older end of the window (a real earlier reading or a container's synthetic zero point); its timestamp is
    /// [`NO_PREV`] when there is none (inline rather than an `Option`, which would cost 8 more bytes per series).
    prev: CpuPoint,
    /// The newest reading.
    last: CpuPoint,
}

/// The `prev` timestamp that means "no older end". A start time this far before the epoch is not a real one.
const NO_PREV: TimestampMs = TimestampMs::MIN;

impl Window {
    /// A window from `prev` (if any) to `last`.
    fn new(prev: Option<CpuPoint>, last: CpuPoint) -> Window {
        let prev = prev.unwrap_or(CpuPoint {
            timestamp_ms: NO_PREV,
            cumulative_cpu_ns: 0,
        });
        Window { prev, last }
    }

    /// A window holding only `last`: no rate until a later point arrives.
    pub(crate) fn first(last: CpuPoint) -> Window {
        Window::new(None, last)
    }

    /// The older end of the window, if any.
    fn prev(&self) -> Option<CpuPoint> {
        (self.prev.timestamp_ms != NO_PREV).then_some(self.prev)
    }

    /// The CPU rate over this window, if it has two usable ends.
    pub(crate) fn rate(&self) -> Option<Rate> {
        cpu_rate(self.prev()?, self.last)
    }

    /// Timestamp of the newest point, in ms since the epoch.
    pub(crate) fn timestamp_ms(&self) -> TimestampMs {
        self.last.timestamp_ms
    }

    /// The ordinary rotation (node rule, and containers without a restart).
    ///
    /// A strictly later point pushes `last` down to `prev`, unless the counter went down (reboot / reset: start
    /// fresh). An identical or older timestamp replaces `last` and keeps the old `prev` only if that is strictly
    /// older than the new point (and not above its counter); otherwise there is no rate.
    fn rotate(&self, new: CpuPoint) -> Window {
        if new.timestamp_ms > self.last.timestamp_ms {
            if new.cumulative_cpu_ns >= self.last.cumulative_cpu_ns {
                Window::new(Some(self.last), new)
            } else {
                Window::first(new)
            }
        } else {
            let prev = self.prev().filter(|p| {
                p.timestamp_ms < new.timestamp_ms && p.cumulative_cpu_ns <= new.cumulative_cpu_ns
            });
            Window::new(prev, new)
        }
    }
}

/// The parameters of the rotation rules, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Scrape resolution, in ms: a container younger than this at its sample time counts as fresh.
    pub(crate) resolution_ms: i64,
    /// Staleness bound, in ms: a window is served while `now − timestamp ≤ staleness`, and a retained point more than
    /// this older than a new sample is forgotten instead of paired.
    pub(crate) staleness_ms: i64,
}

impl Rules {
    /// The retained window, if it is recent enough to pair with a point sampled at `timestamp_ms`.
    fn retained<'a>(
        &self,
        old: Option<&'a Window>,
        timestamp_ms: TimestampMs,
    ) -> Option<&'a Window> {
        old.filter(|w| timestamp_ms.saturating_sub(w.timestamp_ms()) <= self.staleness_ms)
    }

    /// The node rule: ordinary rotation against the retained window, or a first point.
    pub(crate) fn next_node(&self, old: Option<&Window>, new: CpuPoint) -> Window {
        match self.retained(old, new.timestamp_ms) {
            Some(w) => w.rotate(new),
            None => Window::first(new),
        }
    }

    /// The container rule, with start times (`None` when the kubelet does not report one).
    ///
    /// In order:
    /// 1. Fresh or restarted (only when `start < sample timestamp`, so a skewed start time never counts): a
    ///    container with no retained point whose age is below the resolution, or whose start time is later than the
    ///    retained point, pairs with a synthetic zero point at its start time.
    /// 2. No retained point: first point, no rate (a long-running container waits for a second scrape).
    /// 3. Start time changed (moved backwards, or forwards without a usable zero point): no rate.
    /// 4. Otherwise the ordinary rotation (which drops `prev` when the counter went down).
    pub(crate) fn next_container(
        &self,
        old: Option<(&Window, Option<TimestampMs>)>,
        new: CpuPoint,
        start_time_ms: Option<TimestampMs>,
    ) -> Window {
        let ts = new.timestamp_ms;
        let retained = old.and_then(|(w, start)| self.retained(Some(w), ts).map(|w| (w, start)));
        if let Some(start) = start_time_ms
            && start < ts
        {
            let restarted = retained.is_some_and(|(w, _)| start > w.timestamp_ms());
            let young = retained.is_none() && ts.saturating_sub(start) < self.resolution_ms;
            if restarted || young {
                return Window::new(Some(CpuPoint::zero_at(start)), new);
            }
        }
        match retained {
            None => Window::first(new),
            Some((_, Some(old_start))) if start_time_ms.is_some_and(|s| s != old_start) => {
                Window::first(new)
            }
            Some((w, _)) => w.rotate(new),
        }
    }
}
