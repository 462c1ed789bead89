//! The per-node phase schedule: which node is due when within a round, plus each node's small mutable scrape state
//! (in flight, failure-log rate limit). Pure bookkeeping: no I/O, no clock reads (instants are passed in).
//!
//! A node's phase is a stable hash of its name modulo the resolution, so a node keeps the same offset from the
//! round start for the life of the process, and nodes spread evenly over the round. Joining nodes simply take their slot;
//! leaving nodes are reported so their data can be forgotten.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::NodeInfo;

/// One node's place in the schedule.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The node as last seen in the cluster view.
    pub(crate) info: Arc<NodeInfo>,
    /// Offset of this node's scrape from the round start (< resolution).
    pub(crate) phase: Duration,
    /// State shared with the worker scraping it.
    pub(crate) state: Arc<SlotState>,
}

/// A node's scrape state shared between the scheduler and the worker.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// [`BUSY`] and [`RETIRED`] bits: exactly one of the scheduler and the worker sees a node's departure
    /// after its last scrape, so it is forgotten once and never re-created by a late result.
    flags: AtomicU8,
    log: Mutex<FailureLog>,
}

/// A scrape of the node is in flight.
const BUSY: u8 = 1;
/// The node left the schedule.
const RETIRED: u8 = 2;

/// Rate limit for failure logs: the first failure, then at most one line per interval, plus the recovery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FailureLog {
    consecutive: u64,
    last_logged: Option<Instant>,
}

/// All nodes to scrape, sorted by name, with the order in which they come due.
#[derive(Debug)]
pub(crate) struct Schedule {
    resolution: Duration,
    /// Sorted by node name (the order of `ClusterView::nodes`), so a refresh is a merge walk.
    slots: Vec<Slot>,
    /// Indices into `slots`, sorted by (phase, name). Rebuilt only when membership changes.
    order: Vec<usize>,
}

// === impl Schedule ===

impl Schedule {
    /// An empty schedule for rounds of `resolution`.
    pub(crate) fn new(resolution: Duration) -> Self {
        Schedule {
            resolution,
            slots: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Replaces the node set with `nodes`, keeping the state of nodes already known. Returns the slots of nodes
    /// that left.
    pub(crate) fn refresh(&mut self, mut nodes: Vec<Arc<NodeInfo>>) -> Vec<Slot> {
        if !nodes.is_sorted_by(|a, b| a.name <= b.name) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        nodes.dedup_by(|a, b| a.name == b.name);
        let mut departed = Vec::new();
        let mut joined = false;
        let mut next = Vec::with_capacity(nodes.len());
        let mut old = std::mem::take(&mut self.slots).into_iter().peekable();
        for info in nodes {
            while let Some(slot) = old.next_if(|s| s.info.name < info.name) {
                departed.push(slot);
            }
            match old.next_if(|s| s.info.name == info.name) {
                Some(slot) => next.push(Slot { info, ..slot }),
                None => {
                    joined = true;
                    let phase = phase_of(&info.name, self.resolution);
                    next.push(Slot {
                        info,
                        phase,
                        state: Arc::default(),
                    });
                }
            }
        }
        departed.extend(old);
        self.slots = next;
        if joined || !departed.is_empty() {
            self.order = (0..self.slots.len()).collect();
            let slots = &self.slots;
            self.order.sort_by(|&a, &b| {
                (slots[a].phase, &slots[a].info.name).cmp(&(slots[b].phase, &slots[b].info.name))
            });
        }
        departed
    }

    /// The slots in the order they come due within a round.
    pub(crate) fn in_phase_order(&self) -> impl Iterator<Item = &Slot> {
        self.order.iter().map(|&i| &self.slots[i])
    }

    /// Number of scheduled nodes.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// A node's stable phase: FNV-1a of its name modulo the resolution, in whole milliseconds.
///
/// FNV-1a rather than std's `DefaultHasher`, whose algorithm may change between Rust releases: phases should not
/// move when the binary is rebuilt.
pub fn phase_of(name: &str, resolution: Duration) -> Duration {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = name.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    let resolution_ms = u64::try_from(resolution.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(hash % resolution_ms)
}

/// Shortest and longest dispatch quantum (see [`dispatch_quantum`]).
const MIN_QUANTUM: Duration = Duration::from_millis(10);
const MAX_QUANTUM: Duration = Duration::from_secs(1);
/// Dispatch quanta per round.
const QUANTA_PER_ROUND: u32 = 60;

/// How finely due nodes are grouped: the scheduler wakes once per quantum and dispatches every node whose phase
/// fell in it, rather than sleeping once per node.
///
/// One wake-up per node (a 3 ms sleep at 5,000 nodes and 15 s) costs a timer registration, a thread park and an
/// unpark per scrape, and each exchange then runs alone, so every reply parks and wakes a thread again. A small
/// group per quantum lets the runtime drive its exchanges together, and the load is still flat at the quantum's
/// scale: resolution / 60 (250 ms at 15 s), kept within 10 ms ..= 1 s.
pub(crate) fn dispatch_quantum(resolution: Duration) -> Duration {
    (resolution / QUANTA_PER_ROUND).clamp(MIN_QUANTUM, MAX_QUANTUM)
}

/// When a node of phase `phase` is dispatched, as an offset from the round start: the start of the quantum its
/// phase falls in (at most one quantum early, never late), so nodes of one quantum leave together and the last group
/// leaves a quantum before the round ends, leaving that quantum for its exchanges to finish within the round.
/// Non-decreasing in `phase`, so phase order is dispatch order.
pub(crate) fn dispatch_offset(phase: Duration, quantum: Duration) -> Duration {
    let quantum_ns = quantum.as_nanos().max(1);
    let offset_ns = phase.as_nanos() / quantum_ns * quantum_ns;
    Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX))
}

/// When the round after the one that started at `previous` starts. Rounds that were missed entirely (the loop fell
/// more than a whole resolution behind) are skipped, like Go's ticker, so phases stay aligned.
pub(crate) fn next_round_start(previous: Instant, resolution: Duration, now: Instant) -> Instant {
    let next = previous + resolution;
    if resolution.is_zero() || next + resolution > now {
        return next;
    }
    let behind = now.duration_since(next);
    let skipped = behind.as_nanos() / resolution.as_nanos();
    next + resolution.saturating_mul(u32::try_from(skipped).unwrap_or(u32::MAX))
}

// === impl SlotState ===

impl SlotState {
    /// Marks the node as being scraped; `false` if a scrape of it is still in flight (never overlap one node)
    /// or it has left.
    pub(crate) fn try_start(&self) -> bool {
        self.flags
            .compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The in-flight scrape finished; `true` when the node left meanwhile and the caller must forget it now.
    pub(crate) fn finish(&self) -> bool {
        self.flags.fetch_and(!BUSY, Ordering::AcqRel) & RETIRED != 0
    }

    /// The node left; `true` when no scrape is in flight and the caller must forget it now (otherwise the
    /// worker does when its scrape finishes).
    pub(crate) fn retire(&self) -> bool {
        self.flags.fetch_or(RETIRED, Ordering::AcqRel) & BUSY == 0
    }

    /// Runs `f` on the failure log (short, never across `.await`).
    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&mut FailureLog) -> T) -> T {
        f(&mut self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

// === impl FailureLog ===

impl FailureLog {
    /// Records a failure at `now`; `Some(consecutive failures)` when it should be logged (first failure, or
    /// `every` since the last logged one).
    pub(crate) fn failure(&mut self, now: Instant, every: Duration) -> Option<u64> {
        self.consecutive += 1;
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= every);
        if due {
            self.last_logged = Some(now);
            Some(self.consecutive)
        } else {
            None
        }
    }

    /// Records a success; `Some(failures)` when it ends a run of failures (log the recovery).
    pub(crate) fn success(&mut self) -> Option<u64> {
        let failures = std::mem::take(&mut self.consecutive);
        self.last_logged = None;
        (failures > 0).then_some(failures)
    }
}

#[cfg(test)]
mod tests;
