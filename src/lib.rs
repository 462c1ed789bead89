//! resource-metrics-server: a drop-in replacement for Kubernetes metrics-server.
//!
//! # Brief overview
//!
//! The server watches Nodes and Running Pods (metadata only) from the kube-apiserver, scrapes every kubelet's
//! `/metrics/resource` endpoint at its own phase within `--metric-resolution`, keeps a small window of points per
//! node and container, and serves `metrics.k8s.io` (`v1` and `v1beta1`) `NodeMetrics` and `PodMetrics` over HTTPS
//! behind delegated authentication and authorization.
//!
//! ```text
//! kube-apiserver ──watch nodes (trimmed) / pods (metadata, Running)──▶ cluster ──ScrapeTarget──▶ scrape
//! scrape ──GET /metrics/resource (keep-alive TLS)──▶ kubelets
//! scrape ──decode(&[u8]) → NodeBatch──▶ storage ──per-node window swap──▶ Arc snapshots
//! clients ──TLS──▶ server ──authn → authz──▶ api ──reads cluster (which pods, labels) + storage (usage)──▶ JSON / Table
//! ```
//!
//! Data flows one way. `api` depends on the [`api::MetricsSource`] trait that `storage` implements and on the
//! [`cluster::ClusterView`] trait; `scrape` depends on `cluster::ClusterView` only. Only `cluster`, `auth` and
//! `runtime` name `kube` types.
//!
//! # Layout
//! - [`config`]: raw flags (metrics-server names) → validated [`config::Config`]; every violation reported at once.
//! - [`telemetry`]: the tracing subscriber (text or JSON).
//! - [`shutdown`]: one cancellation signal for SIGTERM/SIGINT.
//! - [`cluster`]: node and pod-metadata watches feeding an in-memory index.
//! - [`scrape`]: kubelet client, per-node schedule and the allocation-light decoder.
//! - [`storage`]: per-node and per-container windows, rates, staleness and readiness.
//! - [`api`]: discovery, metrics.k8s.io handlers, selectors, quantities, `Status` and `Table`.
//! - [`auth`]: authentication (front-proxy, client certs, TokenReview) and authorization (SubjectAccessReview).
//! - [`server`]: TLS listener, health endpoints, self-metrics, graceful drain.
//! - [`runtime`]: wiring only.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod runtime;
pub mod scrape;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod time;
