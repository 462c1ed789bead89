//! The `metrics.k8s.io` API: routing, discovery, NodeMetrics/PodMetrics handlers, selectors, quantities, `Status`
//! and `Table` bodies.
//!
//! The API is transport-free: [`Api::handle`] takes an [`ApiRequest`] and a `now` and returns an [`ApiResponse`]
//! (status, content type, body bytes). The `server` module converts HTTP to and from these. It reads usage through
//! the [`MetricsSource`] trait (implemented by `storage`) and objects through [`crate::cluster::ClusterView`], and
//! never knows how points are stored.

mod containers;
mod discovery;
mod negotiate;
mod nodes;
mod openapi;
mod pods;
mod quantity;
mod render;
mod route;
mod selector;
mod status;
mod table;
mod types;

use std::fmt;
use std::sync::Arc;

use crate::auth::Attributes;
use crate::cluster::ClusterView;
use crate::time::TimestampMs;

pub use containers::{ContainerTable, ContainerView, Containers};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Error, MetricsKind};

use negotiate::ObjectFormat;
use route::{GroupVersion, Query, Route};
use types::{MetricsObject, RenderContext};

/// CPU, memory and swap usage of a node or container over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU usage rate, in nanocores (10⁻⁹ CPU seconds per second).
    pub cpu_nanocores: u64,
    /// Memory working set, in bytes (latest sample, not averaged).
    pub memory_bytes: u64,
    /// Swap usage, in bytes, when the kubelet reports it.
    pub swap_bytes: Option<u64>,
}

/// A node's servable usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// End of the window: the newer CPU sample's timestamp.
    pub timestamp_ms: TimestampMs,
    /// Length of the window between the two CPU samples used, in milliseconds (> 0).
    pub window_ms: i64,
    /// The usage over that window.
    pub usage: Usage,
}

/// One container's usage, owned (what a [`ContainerTable`] of its own holds; see `From<Vec<ContainerUsage>>` for
/// [`Containers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: Arc<str>,
    /// The usage over the pod's window.
    pub usage: Usage,
}

/// A pod's servable usage: every container produced a rate (a partial pod is never served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// Timestamp of the container with the earliest timestamp (what the HPA's start-up check expects).
    pub timestamp_ms: TimestampMs,
    /// Window of that same container, in milliseconds (> 0).
    pub window_ms: i64,
    /// Containers sorted by name, read from where the source keeps them.
    pub containers: Containers,
}

/// Usage lookups, implemented by `storage`. Reads never wait for a scrape.
pub trait MetricsSource: Send + Sync + 'static {
    /// The node's usage, if it has a window that is not older than the staleness bound at `now_ms`.
    fn node_usage(&self, node: &str, now_ms: TimestampMs) -> Option<NodeUsage>;
    /// The pod's usage, if every container has a window and it is not stale at `now_ms`. Its containers refer to
    /// the source's own table (no copy per read).
    fn pod_usage(&self, namespace: &str, pod: &str, now_ms: TimestampMs) -> Option<PodUsage>;
    /// At least one node point and one container point can be served at `now_ms` (metrics-server's
    /// `metric-storage-ready`).
    fn is_ready(&self, now_ms: TimestampMs) -> bool;
}

/// One request as the API sees it: no transport types.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// HTTP method, upper case (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Path, percent-encoded as received, without the query (`/apis/metrics.k8s.io/v1beta1/nodes`).
    pub path: &'a str,
    /// Raw query string without the `?` (form-urlencoded; `+` means space), empty when absent.
    pub query: &'a str,
    /// The `Accept` header, empty when absent.
    pub accept: &'a str,
}

/// A complete response: the `server` module writes it out unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: String,
    /// Extra headers (`Vary`, `ETag`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Receives the age (`now − timestamp`, in seconds) of every returned metrics object.
pub type FreshnessObserver = Arc<dyn Fn(f64) + Send + Sync>;

/// One NodeMetrics/PodMetrics read after routing: negotiated format, options and what every object shares.
struct Read {
    format: ObjectFormat,
    query: Query,
    ctx: RenderContext,
    now_ms: TimestampMs,
}

/// The metrics.k8s.io API over a cluster view and a metrics source.
pub struct Api {
    cluster: Arc<dyn ClusterView>,
    metrics: Arc<dyn MetricsSource>,
    discovery: discovery::Discovery,
    openapi: openapi::OpenApi,
    freshness: Option<FreshnessObserver>,
}

// === impl Api ===

impl Api {
    /// An API reading objects from `cluster` and usage from `metrics`.
    pub fn new(cluster: Arc<dyn ClusterView>, metrics: Arc<dyn MetricsSource>) -> Self {
        Api {
            cluster,
            metrics,
            discovery: discovery::Discovery::new(),
            openapi: openapi::OpenApi::new(),
            freshness: None,
        }
    }

    /// Reports the age in seconds (`now − timestamp`) of every object a list or get returns to `observer`
    /// (runtime wires it to `SelfMetrics::freshness`).
    pub fn with_freshness_observer(mut self, observer: FreshnessObserver) -> Self {
        self.freshness = Some(observer);
        self
    }

    /// Answers one request; `now_ms` is read once by the caller and used for staleness and `creationTimestamp`.
    pub fn handle(&self, request: ApiRequest<'_>, now_ms: TimestampMs) -> ApiResponse {
        self.respond(request, now_ms)
            .unwrap_or_else(Error::into_response)
    }

    /// Like [`Api::handle`], honouring an `If-None-Match` header value (empty when absent): a 200 whose `ETag`
    /// (discovery and OpenAPI documents) matches one of the listed tags, or `*`, becomes a 304 without a body.
    /// The kube-aggregator polls `/apis` every minute with the last `ETag`.
    pub fn handle_conditional(
        &self,
        request: ApiRequest<'_>,
        if_none_match: &str,
        now_ms: TimestampMs,
    ) -> ApiResponse {
        let mut response = self.handle(request, now_ms);
        if response.status == 200 && !if_none_match.trim().is_empty() {
            let etag = response
                .headers
                .iter()
                .find(|(name, _)| *name == "ETag")
                .map(|(_, v)| v.as_str());
            if let Some(etag) = etag {
                let matches = if_none_match.split(',').map(str::trim).any(|tag| {
                    // Weak comparison, as RFC 9110 requires for If-None-Match.
                    tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
                });
                if matches {
                    response.status = 304;
                    response.body.clear();
                }
            }
        }
        response
    }

    /// The authorization attributes of a request (resource attributes for metrics paths, non-resource otherwise).
    ///
    /// Follows the apiserver's `RequestInfo`: `/apis/metrics.k8s.io/<version>/[namespaces/<ns>/]<resource>[/<name>]`
    /// is a resource request whose verb comes from the method (`get`/`list`/`watch` for GET, `create`, `update`,
    /// `patch`, `delete`/`deletecollection` otherwise); any other path is a non-resource request.
    pub fn attributes(request: ApiRequest<'_>) -> Attributes {
        let non_resource = || Attributes::NonResource {
            verb: request.method.to_ascii_lowercase(),
            path: request.path.to_owned(),
        };
        let Some(segments) = route::segments(request.path) else {
            return non_resource();
        };
        let parts: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
        let (version, rest) = match parts.as_slice() {
            ["apis", route::GROUP, version, rest @ ..]
                if !rest.is_empty() && !version.is_empty() =>
            {
                (*version, rest)
            }
            _ => return non_resource(),
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            ["namespaces", namespace] => ("namespaces", Some(*namespace)),
            [resource] => (*resource, None),
            [resource, name, ..] => (*resource, Some(*name)),
            [] => return non_resource(),
        };
        let verb = match (request.method, name) {
            ("GET" | "HEAD", _) if route::is_watch(request.query) => "watch".to_owned(),
            ("GET" | "HEAD", Some(_)) => "get".to_owned(),
            ("GET" | "HEAD", None) => "list".to_owned(),
            ("POST", _) => "create".to_owned(),
            ("PUT", _) => "update".to_owned(),
            ("PATCH", _) => "patch".to_owned(),
            ("DELETE", Some(_)) => "delete".to_owned(),
            ("DELETE", None) => "deletecollection".to_owned(),
            (other, _) => other.to_ascii_lowercase(),
        };
        Attributes::Resource {
            verb,
            group: route::GROUP.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    fn respond(&self, request: ApiRequest<'_>, now_ms: TimestampMs) -> Result<ApiResponse, Error> {
        let route = route::route(request.path).ok_or(Error::PathNotFound)?;
        if request.method != "GET" {
            return Err(Error::MethodNotAllowed);
        }
        let not_acceptable = |_| Error::NotAcceptable;
        match route {
            Route::Apis => Ok(self
                .discovery
                .apis(negotiate::discovery_format(request.accept).map_err(not_acceptable)?)),
            Route::Group => {
                negotiate::plain_format(request.accept).map_err(not_acceptable)?;
                Ok(self.discovery.group())
            }
            Route::ResourceList(version) => {
                negotiate::plain_format(request.accept).map_err(not_acceptable)?;
                Ok(self.discovery.resource_list(version))
            }
            Route::OpenApiV2 | Route::OpenApiV3Index | Route::OpenApiV3(_) => {
                negotiate::plain_format(request.accept).map_err(not_acceptable)?;
                let document = match route {
                    Route::OpenApiV2 => self.openapi.v2(),
                    Route::OpenApiV3(version) => self.openapi.v3(version),
                    _ => self.openapi.v3_index(),
                };
                Ok(discovery::plain(document))
            }
            Route::Nodes { version, name } => {
                let read = Read::new(request, version, "nodes", now_ms)?;
                let (cluster, metrics) = (self.cluster.as_ref(), self.metrics.as_ref());
                Ok(match name {
                    Some(name) => {
                        self.render(&read, &[nodes::get(cluster, metrics, &name, now_ms)?], true)
                    }
                    None => {
                        let (labels, fields) = read.selectors()?;
                        self.render(
                            &read,
                            &nodes::list(cluster, metrics, &labels, &fields, now_ms),
                            false,
                        )
                    }
                })
            }
            Route::Pods {
                version,
                namespace,
                name,
            } => {
                let read = Read::new(request, version, "pods", now_ms)?;
                let (cluster, metrics) = (self.cluster.as_ref(), self.metrics.as_ref());
                Ok(match (namespace, name) {
                    (Some(namespace), Some(name)) => self.render(
                        &read,
                        &[pods::get(cluster, metrics, &namespace, &name, now_ms)?],
                        true,
                    ),
                    (namespace, _) => {
                        let (labels, fields) = read.selectors()?;
                        let items = pods::list(
                            cluster,
                            metrics,
                            namespace.as_deref(),
                            &labels,
                            &fields,
                            now_ms,
                        );
                        self.render(&read, &items, false)
                    }
                })
            }
        }
    }

    /// Renders a get (`single`) or list in the negotiated format and reports each object's freshness.
    fn render<T: MetricsObject>(&self, read: &Read, items: &[T], single: bool) -> ApiResponse {
        if let Some(observe) = &self.freshness {
            for item in items {
                // Millisecond ages are far below 2^53, so the conversion is exact.
                observe(read.now_ms.saturating_sub(item.timestamp_ms()) as f64 / 1000.0);
            }
        }
        let ctx = &read.ctx;
        let (content_type, body) = match (read.format, items) {
            (ObjectFormat::Json, [item]) if single => {
                (negotiate::JSON, types::render_object(ctx, item))
            }
            (ObjectFormat::Json, _) => (negotiate::JSON, types::render_list(ctx, items)),
            (ObjectFormat::Table(meta), _) => (
                meta.table_content_type(),
                table::render_table(ctx, meta, read.query.include_object, items),
            ),
        };
        ApiResponse {
            status: 200,
            content_type: content_type.to_owned(),
            headers: Vec::new(),
            body,
        }
    }
}

// === impl Read ===

impl Read {
    /// Rejects watches and unacceptable `Accept` headers, and fixes what the response shares.
    fn new(
        request: ApiRequest<'_>,
        version: GroupVersion,
        resource: &'static str,
        now_ms: TimestampMs,
    ) -> Result<Self, Error> {
        let query = Query::parse(request.query);
        if query.watch {
            return Err(Error::WatchNotSupported { resource });
        }
        let format = negotiate::object_format(request.accept).map_err(|_| Error::NotAcceptable)?;
        let ctx = RenderContext {
            version,
            created: quantity::rfc3339_seconds(now_ms),
        };
        Ok(Read {
            format,
            query,
            ctx,
            now_ms,
        })
    }

    /// The list's label and field selectors.
    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), Error> {
        Ok((
            LabelSelector::parse(&self.query.label_selector)?,
            FieldSelector::parse(&self.query.field_selector)?,
        ))
    }
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("freshness_observer", &self.freshness.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests;
