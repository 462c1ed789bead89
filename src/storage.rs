//! Storage: per-node and per-container windows of points, rates, staleness and readiness.
//!
//! Writers ([`crate::scrape::BatchSink`]) hand in one node's decoded batch at a time; the node's windows and its
//! pods' computed usage are rebuilt off-lock and swapped in. Readers ([`crate::api::MetricsSource`]) clone `Arc`s
//! and never wait for a scrape. Time is an input: sample timestamps come from the kubelet and `now` from the
//! caller; this module never reads a clock. It knows nothing of HTTP.
