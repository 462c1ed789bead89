//! Health texts, verbatim, over fake sources.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::api::{NodeUsage, PodUsage};
use crate::cluster::{NodeInfo, PodInfo};

#[derive(Default)]
struct FakeCluster {
    synced: AtomicBool,
}

impl ClusterView for FakeCluster {
    fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }
    fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        Vec::new()
    }
    fn node(&self, _name: &str) -> Option<Arc<NodeInfo>> {
        None
    }
    fn pods(&self, _namespace: Option<&str>) -> Vec<Arc<PodInfo>> {
        Vec::new()
    }
    fn pod(&self, _namespace: &str, _name: &str) -> Option<Arc<PodInfo>> {
        None
    }
}

#[derive(Default)]
struct FakeStorage {
    ready: AtomicBool,
}

impl MetricsSource for FakeStorage {
    fn node_usage(&self, _node: &str, _now_ms: TimestampMs) -> Option<NodeUsage> {
        None
    }
    fn pod_usage(&self, _namespace: &str, _pod: &str, _now_ms: TimestampMs) -> Option<PodUsage> {
        None
    }
    fn is_ready(&self, _now_ms: TimestampMs) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

struct Fixture {
    cluster: Arc<FakeCluster>,
    storage: Arc<FakeStorage>,
    heartbeat: Arc<Heartbeat>,
    trigger: crate::shutdown::Trigger,
    health: Health,
}

fn fixture(healthy: bool) -> Fixture {
    let cluster = Arc::new(FakeCluster::default());
    let storage = Arc::new(FakeStorage::default());
    cluster.synced.store(healthy, Ordering::Relaxed);
    storage.ready.store(healthy, Ordering::Relaxed);
    let heartbeat = Arc::new(Heartbeat::default());
    let (trigger, signal) = crate::shutdown::channel();
    let health = Health::new(
        cluster.clone(),
        storage.clone(),
        heartbeat.clone(),
        Duration::from_secs(10),
        signal,
    );
    Fixture {
        cluster,
        storage,
        heartbeat,
        trigger,
        health,
    }
}

const NOW: TimestampMs = 1_700_000_000_000;

const READYZ_VERBOSE_OK: &str = "[+]ping ok
[+]log ok
[+]poststarthook/max-in-flight-filter ok
[+]poststarthook/storage-object-count-tracker-hook ok
[+]metric-storage-ready ok
[+]metric-informer-sync ok
[+]metadata-informer-sync ok
[+]shutdown ok
readyz check passed
";

#[test]
fn healthy_endpoints_answer_the_metrics_server_texts() {
    let f = fixture(true);
    f.heartbeat.beat(NOW - 1_000);
    let cases = [
        (
            "readyz verbose",
            Endpoint::Readyz,
            None,
            "verbose",
            200,
            READYZ_VERBOSE_OK,
        ),
        ("readyz terse", Endpoint::Readyz, None, "", 200, "ok"),
        (
            "livez verbose",
            Endpoint::Livez,
            None,
            "verbose=1",
            200,
            "[+]ping ok\n[+]log ok\n[+]poststarthook/max-in-flight-filter ok\n\
             [+]poststarthook/storage-object-count-tracker-hook ok\n[+]metric-collection-timely ok\n\
             [+]metadata-informer-sync ok\nlivez check passed\n",
        ),
        (
            "healthz verbose",
            Endpoint::Healthz,
            None,
            "verbose",
            200,
            "[+]ping ok\n[+]log ok\n[+]poststarthook/max-in-flight-filter ok\n\
             [+]poststarthook/storage-object-count-tracker-hook ok\n[+]metadata-informer-sync ok\nhealthz check passed\n",
        ),
        (
            "single check",
            Endpoint::Readyz,
            Some("shutdown"),
            "",
            200,
            "ok",
        ),
        (
            "unknown single check",
            Endpoint::Readyz,
            Some("nope"),
            "",
            404,
            "404 page not found\n",
        ),
    ];
    for (name, endpoint, check, query, code, body) in cases {
        let got = f.health.respond(endpoint, check, query, NOW);
        assert_eq!((got.code, got.body.as_str()), (code, body), "{name}");
    }
}

#[test]
fn unready_storage_and_unsynced_informers_fail_readyz() {
    let f = fixture(false);
    let got = f.health.respond(Endpoint::Readyz, None, "", NOW);
    assert_eq!(got.code, 500);
    assert_eq!(
        got.body,
        "[+]ping ok\n[+]log ok\n[+]poststarthook/max-in-flight-filter ok\n\
         [+]poststarthook/storage-object-count-tracker-hook ok\n[-]metric-storage-ready failed: reason withheld\n\
         [-]metric-informer-sync failed: reason withheld\n[-]metadata-informer-sync failed: reason withheld\n\
         [+]shutdown ok\nreadyz check failed\n"
    );
    let single = f
        .health
        .respond(Endpoint::Readyz, Some("metric-storage-ready"), "", NOW);
    assert_eq!(
        (single.code, single.body.as_str()),
        (500, "internal server error: no metrics to serve\n")
    );
    f.cluster.synced.store(true, Ordering::Relaxed);
    f.storage.ready.store(true, Ordering::Relaxed);
    assert_eq!(
        f.health.respond(Endpoint::Readyz, None, "", NOW).code,
        200,
        "becomes ready once both are"
    );
}

#[test]
fn shutdown_fails_readyz_but_not_livez() {
    let f = fixture(true);
    f.trigger.fire();
    let ready = f.health.respond(Endpoint::Readyz, None, "", NOW);
    assert_eq!(ready.code, 500);
    assert!(
        ready.body.contains("[-]shutdown failed: reason withheld\n"),
        "{}",
        ready.body
    );
    assert_eq!(f.health.respond(Endpoint::Livez, None, "", NOW).code, 200);
}

#[test]
fn collection_is_timely_before_the_first_round_and_late_after_one_and_a_half_resolutions() {
    let f = fixture(true);
    let cases = [
        ("no round yet", None, 200),
        (
            "round started 15 s ago (limit 15 s)",
            Some(NOW - 15_000),
            200,
        ),
        ("round started 15.001 s ago", Some(NOW - 15_001), 500),
    ];
    for (name, beat, code) in cases {
        if let Some(at) = beat {
            f.heartbeat.beat(at);
        }
        assert_eq!(
            f.health.respond(Endpoint::Livez, None, "", NOW).code,
            code,
            "{name}"
        );
    }
}

#[test]
fn excluded_checks_are_reported_and_unknown_exclusions_warned() {
    let f = fixture(true);
    f.trigger.fire();
    let got = f.health.respond(
        Endpoint::Readyz,
        None,
        "verbose&exclude=shutdown&exclude=bogus",
        NOW,
    );
    assert_eq!(got.code, 200);
    assert!(
        got.body.contains("[+]shutdown excluded: ok\n"),
        "{}",
        got.body
    );
    assert!(
        got.body.ends_with("warn: some health checks cannot be excluded: no matches for \"bogus\"\nreadyz check passed\n"),
        "{}",
        got.body
    );
}

#[test]
fn paths_route_to_endpoints_and_checks() {
    let cases = [
        ("/livez", Some((Endpoint::Livez, None))),
        ("/readyz/", Some((Endpoint::Readyz, None))),
        (
            "/readyz/poststarthook/max-in-flight-filter",
            Some((Endpoint::Readyz, Some("poststarthook/max-in-flight-filter"))),
        ),
        ("/healthz", Some((Endpoint::Healthz, None))),
        ("/metrics", None),
        ("/livezz", None),
        ("", None),
    ];
    for (path, want) in cases {
        assert_eq!(Endpoint::route(path), want, "{path}");
    }
}

#[test]
fn a_failing_check_is_logged_when_it_starts_then_once_a_minute_then_when_it_recovers() {
    let log = CheckLog::default();
    let check = Check::MetricStorageReady;
    let steps = [
        ("a passing check is not logged", true, 0, LogAction::Nothing),
        (
            "the first failure is logged",
            false,
            1_000,
            LogAction::Failing,
        ),
        (
            "the next probe's failure is not",
            false,
            11_000,
            LogAction::Nothing,
        ),
        (
            "nor one just under a minute later",
            false,
            60_999,
            LogAction::Nothing,
        ),
        (
            "a minute after the last logged failure it is again",
            false,
            61_000,
            LogAction::Failing,
        ),
        (
            "passing again is logged once",
            true,
            71_000,
            LogAction::Recovered,
        ),
        ("and then stays quiet", true, 81_000, LogAction::Nothing),
        (
            "a new failure is logged at once",
            false,
            91_000,
            LogAction::Failing,
        ),
    ];
    for (name, passed, now_ms, want) in steps {
        assert_eq!(log.record(check, passed, now_ms), want, "{name}");
    }
    assert_eq!(
        log.record(Check::Shutdown, false, 91_000),
        LogAction::Failing,
        "checks are logged independently, and the last check has a slot"
    );
}
