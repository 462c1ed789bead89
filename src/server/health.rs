//! `/livez`, `/readyz` and `/healthz`: metrics-server's check names and the apiserver's response texts.
//!
//! Readiness is computed from its sources on each request (informer sync from the [`ClusterView`], servable points
//! from the [`MetricsSource`], the scrape [`Heartbeat`] and the shutdown [`Signal`]), so there is no flag to forget
//! to flip. This module must not serve anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::api::MetricsSource;
use crate::cluster::ClusterView;
use crate::scrape::Heartbeat;
use crate::shutdown::Signal;
use crate::time::TimestampMs;

/// Readiness and liveness of the whole server. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<dyn ClusterView>,
    metrics: Arc<dyn MetricsSource>,
    heartbeat: Arc<Heartbeat>,
    resolution: Duration,
    shutdown: Signal,
    log: CheckLog,
}

/// A failing check is logged when it starts failing, then at most once per this interval while it keeps failing
/// (probes arrive every few seconds), and once more when it passes again.
const FAILED_CHECK_LOG_INTERVAL_MS: TimestampMs = 60_000;

/// Per check: when its failure was last logged (`NOT_FAILING` while it passes). Shared by all endpoints.
struct CheckLog {
    last_logged_ms: [AtomicI64; CHECK_COUNT],
}

/// What to log after evaluating a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogAction {
    Nothing,
    Failing,
    Recovered,
}

const NOT_FAILING: TimestampMs = TimestampMs::MIN;
const CHECK_COUNT: usize = 9;
// `Check::Shutdown` is the last variant: the log has one slot per check.
const _: () = assert!(Check::Shutdown as usize + 1 == CHECK_COUNT);

/// One of the three health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/livez`: restart the process when failing.
    Livez,
    /// `/readyz`: take the pod out of the endpoints when failing.
    Readyz,
    /// `/healthz`: the legacy combined endpoint.
    Healthz,
}

/// A health answer: status code and `text/plain; charset=utf-8` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    /// 200, 404 (unknown check) or 500.
    pub code: u16,
    /// The apiserver's text.
    pub body: String,
}

/// A named check, in metrics-server's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ping,
    Log,
    MaxInFlightFilter,
    StorageObjectCountTracker,
    MetricStorageReady,
    MetricInformerSync,
    MetadataInformerSync,
    MetricCollectionTimely,
    Shutdown,
}

const LIVEZ: &[Check] = &[
    Check::Ping,
    Check::Log,
    Check::MaxInFlightFilter,
    Check::StorageObjectCountTracker,
    Check::MetricCollectionTimely,
    Check::MetadataInformerSync,
];

const READYZ: &[Check] = &[
    Check::Ping,
    Check::Log,
    Check::MaxInFlightFilter,
    Check::StorageObjectCountTracker,
    Check::MetricStorageReady,
    Check::MetricInformerSync,
    Check::MetadataInformerSync,
    Check::Shutdown,
];

const HEALTHZ: &[Check] = &[
    Check::Ping,
    Check::Log,
    Check::MaxInFlightFilter,
    Check::StorageObjectCountTracker,
    Check::MetadataInformerSync,
];

// === impl Health ===

impl Health {
    /// Health over the given sources; `resolution` bounds `metric-collection-timely` (1.5 × resolution).
    pub fn new(
        cluster: Arc<dyn ClusterView>,
        metrics: Arc<dyn MetricsSource>,
        heartbeat: Arc<Heartbeat>,
        resolution: Duration,
        shutdown: Signal,
    ) -> Self {
        Health {
            inner: Arc::new(Inner {
                cluster,
                metrics,
                heartbeat,
                resolution,
                shutdown,
                log: CheckLog::default(),
            }),
        }
    }

    /// Answers `endpoint` (optionally one `check` of it, from `/readyz/<check>`) with the request's raw `query`
    /// (`verbose`, `exclude=<name>`), evaluating time-dependent checks at `now_ms`.
    pub fn respond(
        &self,
        endpoint: Endpoint,
        check: Option<&str>,
        query: &str,
        now_ms: TimestampMs,
    ) -> HealthResponse {
        let checks = endpoint.checks();
        if let Some(wanted) = check {
            return match checks.iter().find(|c| c.name() == wanted) {
                None => HealthResponse {
                    code: 404,
                    body: "404 page not found\n".to_owned(),
                },
                Some(c) => match self.evaluate(*c, now_ms) {
                    Ok(()) => HealthResponse {
                        code: 200,
                        body: "ok".to_owned(),
                    },
                    Err(reason) => HealthResponse {
                        code: 500,
                        body: format!("internal server error: {reason}\n"),
                    },
                },
            };
        }
        let mut verbose = false;
        let mut excluded: Vec<String> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "verbose" => verbose = true,
                "exclude" => excluded.push(value.into_owned()),
                _ => {}
            }
        }
        let mut out = String::with_capacity(256);
        let mut failed = false;
        for c in checks {
            if let Some(i) = excluded.iter().position(|e| e == c.name()) {
                excluded.swap_remove(i);
                out.push_str(&format!("[+]{} excluded: ok\n", c.name()));
            } else if self.evaluate(*c, now_ms).is_ok() {
                out.push_str(&format!("[+]{} ok\n", c.name()));
            } else {
                failed = true;
                out.push_str(&format!("[-]{} failed: reason withheld\n", c.name()));
            }
        }
        if !excluded.is_empty() {
            excluded.sort();
            let quoted = excluded
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(
                "warn: some health checks cannot be excluded: no matches for {quoted}\n"
            ));
        }
        let name = endpoint.name();
        if failed {
            out.push_str(&format!("{name} check failed\n"));
            return HealthResponse {
                code: 500,
                body: out,
            };
        }
        if !verbose {
            return HealthResponse {
                code: 200,
                body: "ok".to_owned(),
            };
        }
        out.push_str(&format!("{name} check passed\n"));
        HealthResponse {
            code: 200,
            body: out,
        }
    }

    fn evaluate(&self, check: Check, now_ms: TimestampMs) -> Result<(), &'static str> {
        let inner = &self.inner;
        let pass = match check {
            // Served by this very process, and its post-start hooks ran before the listener opened.
            Check::Ping
            | Check::Log
            | Check::MaxInFlightFilter
            | Check::StorageObjectCountTracker => true,
            Check::MetricStorageReady => inner.metrics.is_ready(now_ms),
            // metrics-server's metadata check passes in practice because its listener opens only after the
            // informers synced; reading the same sync state keeps that meaning if the listener opens earlier.
            Check::MetricInformerSync | Check::MetadataInformerSync => inner.cluster.is_synced(),
            Check::MetricCollectionTimely => inner.heartbeat.is_timely(now_ms, inner.resolution),
            Check::Shutdown => !inner.shutdown.is_cancelled(),
        };
        match inner.log.record(check, pass, now_ms) {
            LogAction::Nothing => {}
            LogAction::Failing => tracing::warn!(
                check = %check.name(),
                reason = %check.failure(),
                "health check failing"
            ),
            LogAction::Recovered => {
                tracing::info!(check = %check.name(), "health check passes again")
            }
        }
        if pass { Ok(()) } else { Err(check.failure()) }
    }
}

// === impl CheckLog ===

impl Default for CheckLog {
    fn default() -> Self {
        CheckLog {
            last_logged_ms: std::array::from_fn(|_| AtomicI64::new(NOT_FAILING)),
        }
    }
}

impl CheckLog {
    /// Records the outcome of `check` at `now_ms` and says whether to log it (see [`FAILED_CHECK_LOG_INTERVAL_MS`]).
    fn record(&self, check: Check, passed: bool, now_ms: TimestampMs) -> LogAction {
        let slot = &self.last_logged_ms[check as usize];
        if passed {
            return match slot.swap(NOT_FAILING, Ordering::Relaxed) {
                NOT_FAILING => LogAction::Nothing,
                _ => LogAction::Recovered,
            };
        }
        let last = slot.load(Ordering::Relaxed);
        let due =
            last == NOT_FAILING || now_ms.saturating_sub(last) >= FAILED_CHECK_LOG_INTERVAL_MS;
        // Of concurrent probes seeing the same due failure, only the one that swaps the timestamp logs it.
        if due
            && slot
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            LogAction::Failing
        } else {
            LogAction::Nothing
        }
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("resolution", &self.inner.resolution)
            .finish_non_exhaustive()
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Splits a request path into an endpoint and an optional single check (`/readyz/shutdown`).
    pub fn route(path: &str) -> Option<(Endpoint, Option<&str>)> {
        let rest = path.strip_prefix('/')?;
        let (root, check) = match rest.split_once('/') {
            Some((root, check)) => (root, Some(check)),
            None => (rest, None),
        };
        let endpoint = match root {
            "livez" => Endpoint::Livez,
            "readyz" => Endpoint::Readyz,
            "healthz" => Endpoint::Healthz,
            _ => return None,
        };
        Some((endpoint, check.filter(|c| !c.is_empty())))
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Livez => "livez",
            Endpoint::Readyz => "readyz",
            Endpoint::Healthz => "healthz",
        }
    }

    fn checks(self) -> &'static [Check] {
        match self {
            Endpoint::Livez => LIVEZ,
            Endpoint::Readyz => READYZ,
            Endpoint::Healthz => HEALTHZ,
        }
    }
}

// === impl Check ===

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Log => "log",
            Check::MaxInFlightFilter => "poststarthook/max-in-flight-filter",
            Check::StorageObjectCountTracker => "poststarthook/storage-object-count-tracker-hook",
            Check::MetricStorageReady => "metric-storage-ready",
            Check::MetricInformerSync => "metric-informer-sync",
            Check::MetadataInformerSync => "metadata-informer-sync",
            Check::MetricCollectionTimely => "metric-collection-timely",
            Check::Shutdown => "shutdown",
        }
    }

    /// The error text shown by the single-check endpoint.
    fn failure(self) -> &'static str {
        match self {
            Check::MetricStorageReady => "no metrics to serve",
            Check::MetricInformerSync | Check::MetadataInformerSync => "informers not synced",
            Check::MetricCollectionTimely => "metric collection didn't finish on time",
            Check::Shutdown => "process is shutting down",
            Check::Ping
            | Check::Log
            | Check::MaxInFlightFilter
            | Check::StorageObjectCountTracker => "failed",
        }
    }
}

#[cfg(test)]
mod tests;
