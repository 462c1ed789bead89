//! End-to-end test kit for resource-metrics-server: everything needed to run the real server binary with no
//! cluster.
//!
//! ```text
//!            kubectl / Python client / HPA-like consumer
//!                         │  HTTPS, bearer token
//!                         ▼
//!   ┌──────────────── control_plane (fake kube-apiserver + kube-aggregator) ───────────────┐
//!   │ discovery · nodes/pods list+watch · ConfigMap · TokenReview · SubjectAccessReview   │
//!   │ /apis/metrics.k8s.io/<v>/… ──proxy (front-proxy cert, X-Remote-User/Group)──┐        │
//!   └──────────────────────────────────────────────────────────────────────────────│────────┘
//!                ▲ list/watch, reviews                                           ▼
//!                │                                      resource-metrics-server (real binary)
//!                └──────────────────────────────────────────────┘     │ GET /metrics/resource
//!                                                                     ▼
//!                           kubelet (one fake per node, 127.x.y.z:10250) ◄── model (rates, restarts)
//! ```
//!
//! Modules: [`certs`] (CAs and leaf certificates), [`tls`] (rustls configs), [`model`] (the cluster and its
//! usage), [`kubelet`] (fake kubelets with fault modes), [`control_plane`] (fake API server and aggregator),
//! [`harness`] (`Cluster::start`, kubeconfigs, spawning the server and kubectl). This crate never links the server
//! crate: it drives the binary as a process, like a real cluster would.

pub mod certs;
pub mod control_plane;
pub mod harness;
pub mod hpa;
pub mod https;
pub mod kubelet;
pub mod model;
pub mod tls;
