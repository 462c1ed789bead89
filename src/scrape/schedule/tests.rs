#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which invariant broke.

use super::*;

fn info(name: &str) -> Arc<NodeInfo> {
    Arc::new(NodeInfo {
        name: Arc::from(name),
        labels: Arc::default(),
        target: None,
    })
}

fn names(schedule: &Schedule) -> Vec<String> {
    schedule
        .in_phase_order()
        .map(|s| s.info.name.to_string())
        .collect()
}

#[test]
fn phases_are_stable_and_within_the_resolution() {
    let resolution = Duration::from_secs(15);
    for i in 0..1000 {
        let name = format!("node-{i}");
        let phase = phase_of(&name, resolution);
        assert!(phase < resolution, "{name}: {phase:?}");
        assert_eq!(
            phase,
            phase_of(&name, resolution),
            "{name}: same name, same phase"
        );
    }
}

#[test]
fn phases_spread_nodes_evenly_over_the_round() {
    let resolution = Duration::from_secs(15);
    let mut buckets = [0u32; 10];
    for i in 0..5000 {
        let phase = phase_of(&format!("node-{i}"), resolution);
        buckets
            [usize::try_from(phase.as_millis() * 10 / resolution.as_millis()).expect("small")] += 1;
    }
    for (i, count) in buckets.iter().enumerate() {
        assert!(
            (350..=650).contains(count),
            "tenth {i} holds {count} of 5000 nodes"
        );
    }
}

#[test]
fn slots_come_due_in_phase_order() {
    let mut schedule = Schedule::new(Duration::from_secs(10));
    let nodes: Vec<_> = (0..50).map(|i| info(&format!("n{i:02}"))).collect();
    assert!(schedule.refresh(nodes).is_empty());
    let phases: Vec<_> = schedule.in_phase_order().map(|s| s.phase).collect();
    assert_eq!(phases.len(), 50);
    assert!(phases.is_sorted());
}

#[test]
fn refresh_reports_leavers_and_keeps_state_of_stayers() {
    let mut schedule = Schedule::new(Duration::from_secs(10));
    schedule.refresh(vec![info("a"), info("b"), info("c")]);
    let b_state = schedule
        .in_phase_order()
        .find(|s| &*s.info.name == "b")
        .map(|s| s.state.clone())
        .expect("b");
    assert!(b_state.try_start());
    let departed = schedule.refresh(vec![info("d"), info("b")]);
    assert_eq!(
        departed
            .iter()
            .map(|s| s.info.name.to_string())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    let mut got = names(&schedule);
    got.sort();
    assert_eq!(got, ["b", "d"]);
    let b_after = schedule
        .in_phase_order()
        .find(|s| &*s.info.name == "b")
        .map(|s| s.state.clone())
        .expect("b");
    assert!(
        Arc::ptr_eq(&b_state, &b_after),
        "b keeps its in-flight state"
    );
    assert!(!b_after.try_start(), "b is still in flight");
    assert_eq!(schedule.refresh(Vec::new()).len(), 2);
    assert_eq!(schedule.len(), 0);
}

#[test]
fn a_node_is_never_started_twice_before_it_finishes() {
    let state = SlotState::default();
    assert!(state.try_start());
    assert!(!state.try_start());
    assert!(!state.finish(), "still scheduled: nothing to forget");
    assert!(state.try_start());
}

#[test]
fn a_node_leaving_is_forgotten_exactly_once_after_its_last_scrape() {
    let idle = SlotState::default();
    assert!(idle.retire(), "not in flight: the scheduler forgets it");
    assert!(!idle.try_start(), "a retired node is not scraped");

    let busy = SlotState::default();
    assert!(busy.try_start());
    assert!(
        !busy.retire(),
        "in flight: the scheduler leaves it to the worker"
    );
    assert!(busy.finish(), "the worker forgets it when its scrape ends");
}

#[test]
fn failures_log_first_then_rarely_then_on_recovery() {
    let every = Duration::from_secs(300);
    let t0 = Instant::now();
    let mut log = FailureLog::default();
    assert_eq!(
        log.success(),
        None,
        "success without failures is not a recovery"
    );
    assert_eq!(log.failure(t0, every), Some(1), "first failure is logged");
    assert_eq!(log.failure(t0 + Duration::from_secs(15), every), None);
    assert_eq!(log.failure(t0 + Duration::from_secs(299), every), None);
    assert_eq!(
        log.failure(t0 + Duration::from_secs(300), every),
        Some(4),
        "logged again after the interval"
    );
    assert_eq!(log.success(), Some(4), "recovery reports the run length");
    assert_eq!(
        log.failure(t0 + Duration::from_secs(301), every),
        Some(1),
        "a new run logs at once"
    );
}

#[test]
fn missed_rounds_are_skipped_to_keep_phases_aligned() {
    let r = Duration::from_secs(10);
    let t0 = Instant::now();
    struct Case {
        name: &'static str,
        now: Duration,
        want: Duration,
    }
    let cases = [
        Case {
            name: "on time",
            now: Duration::from_secs(3),
            want: Duration::from_secs(10),
        },
        Case {
            name: "a little late",
            now: Duration::from_secs(12),
            want: Duration::from_secs(10),
        },
        Case {
            name: "a whole round late",
            now: Duration::from_secs(21),
            want: Duration::from_secs(20),
        },
        Case {
            name: "many rounds late",
            now: Duration::from_secs(55),
            want: Duration::from_secs(50),
        },
    ];
    for case in cases {
        assert_eq!(
            next_round_start(t0, r, t0 + case.now) - t0,
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn the_dispatch_quantum_is_a_sixtieth_of_the_resolution_within_bounds() {
    let cases = [
        ("15 s", Duration::from_secs(15), Duration::from_millis(250)),
        ("60 s", Duration::from_secs(60), Duration::from_secs(1)),
        (
            "10 min is capped",
            Duration::from_secs(600),
            Duration::from_secs(1),
        ),
        (
            "100 ms is floored",
            Duration::from_millis(100),
            Duration::from_millis(10),
        ),
    ];
    for (name, resolution, want) in cases {
        assert_eq!(dispatch_quantum(resolution), want, "{name}");
    }
}

#[test]
fn a_node_is_dispatched_at_the_start_of_its_phase_quantum_never_late() {
    let q = Duration::from_millis(250);
    let ms = Duration::from_millis;
    let cases = [
        ("phase 0", ms(0), ms(0)),
        ("just after a boundary", ms(1), ms(0)),
        ("inside a quantum", ms(100), ms(0)),
        ("on a boundary", ms(250), ms(250)),
        ("next quantum", ms(251), ms(250)),
        ("last quantum of 15 s", ms(14_999), ms(14_750)),
    ];
    for (name, phase, want) in cases {
        let got = dispatch_offset(phase, q);
        assert_eq!(got, want, "{name}");
        assert!(
            got <= phase && phase - got < q,
            "{name}: within one quantum early"
        );
    }
}

#[test]
fn dispatch_order_follows_phase_order_and_groups_nodes() {
    let resolution = Duration::from_secs(15);
    let quantum = dispatch_quantum(resolution);
    let mut schedule = Schedule::new(resolution);
    schedule.refresh((0..5000).map(|i| info(&format!("node-{i}"))).collect());
    let offsets: Vec<Duration> = schedule
        .in_phase_order()
        .map(|s| dispatch_offset(s.phase, quantum))
        .collect();
    assert!(offsets.is_sorted(), "dispatch offsets follow phase order");
    let mut distinct = offsets.clone();
    distinct.dedup();
    assert!(
        distinct.len() <= 60,
        "5,000 nodes leave in at most 60 groups, got {}",
        distinct.len()
    );
    assert!(
        distinct.len() >= 55,
        "and the groups cover the round: {}",
        distinct.len()
    );
}
