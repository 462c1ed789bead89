//! Scraping: which kubelet to ask when, the HTTPS request, and decoding the answer into a [`decode::NodeBatch`].
//!
//! Each node is scraped at its own stable phase within the resolution over a kept-alive connection, with bounded
//! concurrency and a per-request deadline, so load is flat rather than one burst per tick. A failing node costs
//! only itself: its failure is counted and logged, never an abort of the loop. Results go to a [`BatchSink`]
//! (implemented by `storage`); this module knows nothing of how they are stored.
//!
//! # Design
//! One scheduler task walks the `schedule` in phase order, waking once per dispatch quantum (resolution / 60,
//! 250 ms at 15 s) rather than once per node, and hands the nodes whose phase falls in that quantum to a fixed pool
//! of `max_concurrency` workers over a bounded channel; each worker owns its body buffers and gzip inflater, so a
//! steady state allocates nothing per scrape beyond the decoded batch. When every worker is busy the scheduler
//! waits, which delays later slots rather than piling up work. The loop runs on a runtime of its own (see
//! `runtime`), so a group of scrapes never queues API requests behind it. A node still in flight when its slot comes round again is skipped, so scrapes
//! of one node never overlap. Membership is refreshed from the [`ClusterView`] at each round start: a joining node
//! is scraped from the next round on, at its own phase; a leaving node is forgotten by the sink, the self-metrics
//! and the connection pool. At startup one immediate warm-up pass gives every node its first point, so that its
//! phased scrape in the first round can already produce a rate.

pub mod decode;
pub mod gunzip;
pub mod http1;
pub mod kubelet;
pub(crate) mod schedule;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::{ClusterView, NodeInfo, ScrapeTarget};
use crate::shutdown;
use crate::telemetry::SelfMetrics;
use crate::time;

pub use kubelet::{BodyBuffer, KubeletClient, KubeletClientConfig, TokenSource};
pub use schedule::phase_of;
use schedule::{Schedule, Slot, SlotState};

/// Default bound on scrapes in flight. Loopback measurements put a kubelet exchange at a few ms, so 64 workers
/// cover 20,000 nodes per 15 s round many times over while keeping a few slow or hanging kubelets (each held for at
/// most the request timeout) from delaying the rest.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// A failing node is logged on its first failure, then at most once per this interval (plus on recovery), so a
/// dead node does not flood the log every resolution.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// A worker's body buffer is released after a body larger than this, so one huge answer does not pin memory.
const RETAINED_BUFFER_BYTES: usize = 4 << 20;

/// Receives the outcome of each node scrape. Implemented by `storage`; called from scrape workers, so it must
/// not block for long.
pub trait BatchSink: Send + Sync + 'static {
    /// A node was scraped and decoded successfully (the batch may still hold no usable node point).
    fn accept(&self, node: &Arc<str>, batch: decode::NodeBatch<'_>);
    /// A node left the cluster (or the node selector): forget everything about it.
    fn forget(&self, node: &str);
}

/// The scrape loop's heartbeat, read by `/livez` (`metric-collection-timely`).
///
/// The scraper calls [`Heartbeat::beat`] each time a full round over all nodes' phases has started.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Unix ms of the last round start; 0 before the first.
    last_round_start_ms: std::sync::atomic::AtomicI64,
}

impl Heartbeat {
    /// Records that a round started at `now_ms`.
    pub fn beat(&self, now_ms: crate::time::TimestampMs) {
        self.last_round_start_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// metrics-server's rule: timely before the first round, and while `now − last start ≤ 1.5 × resolution`.
    pub fn is_timely(
        &self,
        now_ms: crate::time::TimestampMs,
        resolution: std::time::Duration,
    ) -> bool {
        let last = self
            .last_round_start_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let limit_ms = i64::try_from(resolution.as_millis() * 3 / 2).unwrap_or(i64::MAX);
        last == 0 || now_ms.saturating_sub(last) <= limit_ms
    }
}

/// Why one node scrape failed. Every variant that involves the network names the address dialled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The whole exchange did not finish within `--kubelet-request-timeout`.
    #[error("timed out after {elapsed:?} scraping kubelet at {address}")]
    Timeout {
        /// `host:port` dialled.
        address: String,
        /// Time spent before giving up.
        elapsed: Duration,
    },
    /// TCP connect (or name resolution) failed.
    #[error("cannot connect to kubelet at {address}: {source}")]
    Connect {
        /// `host:port` dialled.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (x509: unknown authority, name mismatch with the SANs presented, ...).
    #[error("TLS handshake with kubelet at {address} failed: {source}")]
    Tls {
        /// `host:port` dialled.
        address: String,
        /// The handshake error (wraps the rustls error, which names the SANs on a name mismatch).
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection reset, malformed response).
    #[error("HTTP request to kubelet at {address} failed: {}", with_causes(.source))]
    Http {
        /// `host:port` dialled.
        address: String,
        /// What went wrong in the exchange.
        #[source]
        source: http1::HttpError,
    },
    /// The kubelet answered something other than 200.
    #[error("kubelet at {address} answered {status}: {body}")]
    Status {
        /// `host:port` dialled.
        address: String,
        /// HTTP status code.
        status: u16,
        /// The first bytes of the body (the kubelet's reason for 401/403).
        body: String,
    },
    /// The body exceeded the cap.
    #[error("body from kubelet at {address} exceeds {limit} bytes")]
    BodyTooLarge {
        /// `host:port` dialled.
        address: String,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The gzip stream was corrupt.
    #[error("cannot decompress the body from kubelet at {address}: {source}")]
    Decompress {
        /// `host:port` dialled.
        address: String,
        /// The decompression error.
        #[source]
        source: std::io::Error,
    },
    /// The host or path cannot form a request (bad characters in an annotation or address).
    #[error("cannot build a request for kubelet at {address}")]
    InvalidTarget {
        /// `host:port` that would have been dialled.
        address: String,
    },
    /// The body is not a valid resource-metrics exposition.
    #[error("cannot decode the body from kubelet at {address}: {source}")]
    Decode {
        /// `host:port` dialled.
        address: String,
        /// The decoder's error (line and reason).
        #[source]
        source: decode::Error,
    },
    /// The kubelet said it failed to collect (`resource_scrape_error 1`).
    #[error("kubelet at {address} reported resource_scrape_error 1")]
    KubeletError {
        /// `host:port` dialled.
        address: String,
    },
}

/// The scrape loop and its dependencies (passed in, never global).
pub struct Scraper {
    /// Which nodes to scrape and where.
    pub cluster: Arc<dyn ClusterView>,
    /// The kubelet HTTPS client.
    pub client: KubeletClient,
    /// Where decoded batches go (storage).
    pub sink: Arc<dyn BatchSink>,
    /// Self-metrics.
    pub metrics: Arc<SelfMetrics>,
    /// Liveness heartbeat, beaten at each round start.
    pub heartbeat: Arc<Heartbeat>,
    /// `--metric-resolution`: the length of one round.
    pub resolution: Duration,
    /// Bound on scrapes in flight (≥ 1); [`DEFAULT_MAX_CONCURRENCY`] unless configured.
    pub max_concurrency: usize,
}

/// What a worker needs; shared by all workers.
struct Shared {
    client: KubeletClient,
    sink: Arc<dyn BatchSink>,
    metrics: Arc<SelfMetrics>,
}

/// One due node handed to a worker.
struct Job {
    info: Arc<NodeInfo>,
    state: Arc<SlotState>,
    /// Held until the scrape ends, so the round's duration is measured when its last scrape finishes.
    _round: Arc<Round>,
}

/// RAII measurement of one round: from its start until the last of its scrapes finishes.
struct Round {
    started: Instant,
    metrics: Arc<SelfMetrics>,
}

// === impl Error ===

impl Error {
    /// The `reason` label of `resource_metrics_server_scrape_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Timeout { .. } => "timeout",
            Error::Connect { .. } | Error::Http { .. } | Error::InvalidTarget { .. } => "connect",
            Error::Tls { .. } => "tls",
            Error::Status { .. } => "http_status",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::Decompress { .. } | Error::Decode { .. } => "decode",
            Error::KubeletError { .. } => "kubelet_error",
        }
    }
}

// === impl Scraper ===

impl Scraper {
    /// Runs rounds until `shutdown`: exits between slots, abandoning scrapes in flight (their results no longer
    /// matter once the server is stopping).
    pub async fn run(self, shutdown: shutdown::Signal) {
        let workers = self.max_concurrency.max(1);
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
        });
        let (jobs, receiver) = mpsc::channel::<Job>(workers);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(work(shared.clone(), receiver.clone()));
        }
        let mut schedule = Schedule::new(self.resolution);
        let mut round_start = Instant::now();
        tracing::info!(resolution = ?self.resolution, workers, "scrape loop started");
        // Warm-up: one immediate pass over every node at startup, so each node's phased scrape in the first
        // round supplies its second point and every node can be served within about one resolution, as with
        // metrics-server (whose first two ticks are one resolution apart). Phased rounds follow at once.
        let mut warm_up = true;
        while self
            .run_round(
                &mut schedule,
                round_start,
                warm_up,
                (&jobs, &shared),
                &shutdown,
            )
            .await
        {
            round_start = if warm_up {
                // One quantum after the warm-up was handed out: the first group (phases within the first quantum)
                // would otherwise find its warm-up scrapes still in flight and be skipped for a whole round.
                Instant::now() + schedule::dispatch_quantum(self.resolution)
            } else {
                schedule::next_round_start(round_start, self.resolution, Instant::now())
            };
            warm_up = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(round_start) => {}
            }
        }
        // Workers do not watch the shutdown signal themselves (a wait on it would be polled on every wake-up of
        // every worker): they are cancelled here, at whatever await they are in, scrapes in flight included.
        drop(jobs);
        tasks.shutdown().await;
        tracing::info!("scrape loop stopped");
    }

    /// One round: heartbeat, membership refresh, then every node at its phase (or at once for the warm-up).
    /// `false` when shutdown started.
    async fn run_round(
        &self,
        schedule: &mut Schedule,
        round_start: Instant,
        warm_up: bool,
        (jobs, shared): (&mpsc::Sender<Job>, &Shared),
        shutdown: &shutdown::Signal,
    ) -> bool {
        self.heartbeat.beat(time::now_ms());
        self.refresh(schedule, shared);
        tracing::debug!(nodes = schedule.len(), "scrape round started");
        let round = Arc::new(Round {
            started: round_start,
            metrics: self.metrics.clone(),
        });
        let quantum = schedule::dispatch_quantum(self.resolution);
        // One wait on the shutdown signal for the whole round, not one per sleep and per job.
        let dispatch = async {
            let mut slept_until = None;
            for slot in schedule.in_phase_order() {
                let due = if warm_up {
                    round_start
                } else {
                    round_start + schedule::dispatch_offset(slot.phase, quantum)
                };
                // One sleep per quantum: the slots of a quantum are dispatched together.
                if slept_until != Some(due) {
                    tokio::time::sleep_until(due).await;
                    slept_until = Some(due);
                }
                let Some(job) = self.job(slot, &round) else {
                    continue;
                };
                if jobs.send(job).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::select! {
            _ = shutdown.cancelled() => false,
            finished = dispatch => finished,
        }
    }

    /// The job for a due slot, or `None` when the node cannot or must not be scraped now.
    fn job(&self, slot: &Slot, round: &Arc<Round>) -> Option<Job> {
        if slot.info.target.is_none() {
            // Logged once by the node watch; counted every round, as metrics-server fails such a node every tick.
            self.metrics.scrape_failure("no_address");
            return None;
        }
        if !slot.state.try_start() {
            tracing::debug!(node = %slot.info.name, "previous scrape still in flight; skipping this slot");
            return None;
        }
        Some(Job {
            info: slot.info.clone(),
            state: slot.state.clone(),
            _round: round.clone(),
        })
    }

    /// Takes the current node set; forgets nodes that left and closes idle connections.
    fn refresh(&self, schedule: &mut Schedule, shared: &Shared) {
        for slot in schedule.refresh(self.cluster.nodes()) {
            if slot.state.retire() {
                shared.forget(&slot.info.name);
            } else {
                tracing::debug!(node = %slot.info.name, "node left during its scrape; forgetting it afterwards");
            }
        }
        self.client.prune_idle();
    }
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("resolution", &self.resolution)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// A worker: takes due nodes until the channel closes (or [`Scraper::run`] cancels it at shutdown), reusing one
/// body buffer.
async fn work(shared: Arc<Shared>, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut body = kubelet::BodyBuffer::default();
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { return };
        shared.scrape(&job, &mut body).await;
        if job.state.finish() {
            shared.forget(&job.info.name);
        }
        body.shrink_past(RETAINED_BUFFER_BYTES);
    }
}

// === impl Shared ===

impl Shared {
    /// A node left: drop its data, its per-node self-metrics and its connection.
    fn forget(&self, node: &str) {
        tracing::info!(%node, "node left; forgetting its metrics");
        self.sink.forget(node);
        self.metrics.forget_node(node);
        self.client.forget(node);
    }

    /// Scrapes one node: fetch, decode, hand to the sink; count and log the outcome.
    async fn scrape(&self, job: &Job, body: &mut kubelet::BodyBuffer) {
        let Some(target) = job.info.target.as_ref() else {
            return;
        };
        // Fallback timestamp for samples without one: the wall clock just before sending (metrics-server's rule).
        let sent_at_ms = time::now_ms();
        let started = Instant::now();
        // The body is decoded and stored inside `fetch` (it lives only for that call); a failed fetch is reported
        // here.
        let fetched = self
            .client
            .fetch(target, body, |bytes| {
                let decoded = decode::decode(bytes, sent_at_ms).map_err(|source| Error::Decode {
                    address: kubelet::address(target),
                    source,
                });
                self.finish(job, target, started, sent_at_ms, decoded);
            })
            .await;
        if let Err(error) = fetched {
            self.finish(job, target, started, sent_at_ms, Err(error));
        }
    }

    /// Counts, logs and stores the outcome of one scrape.
    fn finish(
        &self,
        job: &Job,
        target: &ScrapeTarget,
        started: Instant,
        sent_at_ms: time::TimestampMs,
        result: Result<decode::NodeBatch<'_>, Error>,
    ) {
        let elapsed = started.elapsed();
        // Exact: ms since 1970 fit f64's 53-bit mantissa until the year 287,396.
        let sent_at_seconds = sent_at_ms as f64 / 1000.0;
        self.metrics
            .kubelet_request(&target.node, elapsed, result.is_ok(), sent_at_seconds);
        match result {
            Ok(batch) => {
                if batch.kubelet_error {
                    // The batch still goes to the sink: it carries the flag and whatever series are valid.
                    self.failed(
                        job,
                        &Error::KubeletError {
                            address: kubelet::address(target),
                        },
                        elapsed,
                    );
                } else if let Some(failures) = job.state.with_log(|log| log.success()) {
                    tracing::info!(node = %target.node, address = %kubelet::address(target), failures, "kubelet scrape recovered");
                }
                self.sink.accept(&target.node, batch);
            }
            Err(error) => self.failed(job, &error, elapsed),
        }
    }

    fn failed(&self, job: &Job, error: &Error, elapsed: Duration) {
        self.metrics.scrape_failure(error.reason());
        let Some(target) = job.info.target.as_ref() else {
            return;
        };
        let Some(failures) = job
            .state
            .with_log(|log| log.failure(Instant::now(), FAILURE_LOG_INTERVAL))
        else {
            return;
        };
        let address = kubelet::address(target);
        if target.ready {
            tracing::warn!(node = %target.node, %address, ?elapsed, failures, %error, "kubelet scrape failed");
        } else {
            tracing::debug!(node = %target.node, %address, ?elapsed, failures, %error, "kubelet scrape of NotReady node failed");
        }
    }
}

/// `error` followed by its sources, `: `-separated: an [`http1::HttpError`] names only the kind ("connection
/// error"), the cause ("Connection reset by peer") is in its source.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// === impl Round ===

impl Drop for Round {
    fn drop(&mut self) {
        self.metrics.tick(self.started.elapsed());
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection error")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn an_error_message_names_every_cause_in_its_chain() {
        let reset = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        );
        let cases: [(&str, &(dyn std::error::Error + 'static), &str); 2] = [
            (
                "a wrapped cause is appended",
                &Wrapper(reset),
                "connection error: connection reset by peer",
            ),
            (
                "an error without a source is itself",
                &std::fmt::Error,
                "an error occurred when formatting an argument",
            ),
        ];
        for (name, error, want) in cases {
            assert_eq!(with_causes(error), want, "{name}");
        }
    }
}
