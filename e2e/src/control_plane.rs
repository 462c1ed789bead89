//! The fake control plane: an HTTPS kube-apiserver stand-in serving exactly what our server and real clients send
//! (discovery, nodes and pods with list/get/watch and selectors, Tables, metadata-only answers, the
//! `extension-apiserver-authentication` ConfigMap, TokenReview, SubjectAccessReview), and a kube-aggregator
//! stand-in proxying `/apis/metrics.k8s.io/<version>/…` to the metrics server under test.
//!
//! Callers authenticate with a bearer token from the configured identities or a client certificate from the
//! cluster CA; anything else gets 401. Authorization rules apply only to SubjectAccessReview answers (the fake
//! itself lets every authenticated caller read). It must not know about the server's internals.

mod aggregator;
mod discovery;
mod negotiate;
mod objects;
mod reviews;
mod selector;
mod watch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use discovery::{METRICS_GROUP, METRICS_VERSIONS};
pub use objects::ConfigMap;
pub use reviews::{Rule, Subject, UserInfo};

use crate::https::{Body, full};
use crate::model::{Model, Node, Pod, now_ms};
use negotiate::{DiscoveryFormat, ObjectFormat};
use selector::{FieldSelector, LabelSelector};

/// Largest request body accepted (reviews are a few hundred bytes).
const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;

/// How many requests the log keeps (oldest dropped first).
const REQUEST_LOG_LEN: usize = 100_000;

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// Binding the listener failed.
    #[error("binding the control plane on {addr}: {source}")]
    Bind {
        /// Address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether the metrics APIService counts as available (it gates discovery and proxying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Probe the backend like kube-aggregator's availability controller: available after a 2xx from
    /// `GET /apis/metrics.k8s.io/v1beta1`.
    Probe,
    /// Always available (discovery lists the group even with the backend down; proxying then answers 503).
    ForceAvailable,
    /// Never available.
    ForceUnavailable,
}

/// Everything the control plane needs at start.
pub struct ControlPlaneOptions {
    /// Listening address (port 0 for an ephemeral port).
    pub bind: SocketAddr,
    /// Serving TLS config (asks for client certificates from the cluster CA).
    pub serving: Arc<rustls::ServerConfig>,
    /// Client config used to reach the metrics backend: front-proxy client certificate, no server verification.
    pub front_proxy_client: Arc<rustls::ClientConfig>,
    /// Bearer tokens and the users they map to.
    pub identities: Vec<(String, UserInfo)>,
    /// SubjectAccessReview rules, first match wins.
    pub rules: Vec<Rule>,
    /// ConfigMaps served (the `extension-apiserver-authentication` one).
    pub configmaps: Vec<ConfigMap>,
    /// Interval of the availability probe.
    pub probe_interval: Duration,
}

/// One request as the control plane saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path and query as sent.
    pub path_and_query: String,
    /// `Accept` header.
    pub accept: Option<String>,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A running fake control plane; dropping it stops the listener, every connection and the probe.
pub struct ControlPlane {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _tasks: JoinSet<()>,
}

pub(crate) struct Shared {
    model: Model,
    addr: SocketAddr,
    identities: RwLock<HashMap<String, UserInfo>>,
    rules: RwLock<Vec<Rule>>,
    configmaps: Vec<ConfigMap>,
    backend: RwLock<Option<SocketAddr>>,
    availability: RwLock<Availability>,
    probed_available: AtomicBool,
    front_proxy_client: Arc<rustls::ClientConfig>,
    token_reviews: AtomicU64,
    access_reviews: AtomicU64,
    log: Mutex<Vec<RequestRecord>>,
    /// The selection of the last chunked list, for its next chunks (see [`select`]).
    listed: Mutex<Option<Listed>>,
}

/// The nodes or pods one filter selected at one resource version (see [`Shared::filtered`]).
#[derive(Clone)]
struct Listed {
    key: String,
    rv: u64,
    objects: Objects,
}

/// Selected objects of one kind.
#[derive(Clone)]
enum Objects {
    Nodes(Arc<Vec<Arc<Node>>>),
    Pods(Arc<Vec<Arc<Pod>>>),
}

/// Kinds of objects served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Node,
    Pod,
    ConfigMap,
}

/// A parsed list/watch filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

type Query = Vec<(String, String)>;

fn query_value<'a>(query: &'a Query, key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Binds and starts serving `model`.
    ///
    /// # Errors
    /// [`ControlPlaneError::Bind`].
    pub async fn start(
        model: Model,
        options: ControlPlaneOptions,
    ) -> Result<Self, ControlPlaneError> {
        let listener =
            TcpListener::bind(options.bind)
                .await
                .map_err(|source| ControlPlaneError::Bind {
                    addr: options.bind,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ControlPlaneError::Bind {
                addr: options.bind,
                source,
            })?;
        let shared = Arc::new(Shared {
            model,
            addr,
            identities: RwLock::new(options.identities.into_iter().collect()),
            rules: RwLock::new(options.rules),
            configmaps: options.configmaps,
            backend: RwLock::new(None),
            availability: RwLock::new(Availability::Probe),
            probed_available: AtomicBool::new(false),
            front_proxy_client: options.front_proxy_client,
            token_reviews: AtomicU64::new(0),
            access_reviews: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            listed: Mutex::new(None),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(
            listener,
            TlsAcceptor::from(options.serving),
            shared.clone(),
        ));
        tasks.spawn(aggregator::probe_loop(
            Arc::downgrade(&shared),
            options.probe_interval,
        ));
        Ok(Self {
            addr,
            shared,
            _tasks: tasks,
        })
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Points the metrics APIService at `backend` (our server's secure address), or at nothing.
    pub fn set_metrics_backend(&self, backend: Option<SocketAddr>) {
        *self
            .shared
            .backend
            .write()
            .unwrap_or_else(PoisonError::into_inner) = backend;
        self.shared.probed_available.store(false, Ordering::SeqCst);
    }

    /// Overrides or restores the availability probe.
    pub fn set_metrics_availability(&self, availability: Availability) {
        *self
            .shared
            .availability
            .write()
            .unwrap_or_else(PoisonError::into_inner) = availability;
    }

    /// Whether discovery currently lists `metrics.k8s.io`.
    pub fn metrics_available(&self) -> bool {
        self.shared.metrics_available()
    }

    /// Adds (or replaces) a bearer token identity.
    pub fn add_identity(&self, token: impl Into<String>, user: UserInfo) {
        self.shared
            .identities
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.into(), user);
    }

    /// Replaces the SubjectAccessReview rules.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self
            .shared
            .rules
            .write()
            .unwrap_or_else(PoisonError::into_inner) = rules;
    }

    /// TokenReviews answered so far.
    pub fn token_reviews(&self) -> u64 {
        self.shared.token_reviews.load(Ordering::Relaxed)
    }

    /// SubjectAccessReviews answered so far.
    pub fn access_reviews(&self) -> u64 {
        self.shared.access_reviews.load(Ordering::Relaxed)
    }

    /// Every request seen so far (most recent last, bounded).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

// === impl Shared ===

impl Shared {
    fn metrics_available(&self) -> bool {
        match *self
            .availability
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Availability::Probe => self.probed_available.load(Ordering::SeqCst),
            Availability::ForceAvailable => true,
            Availability::ForceUnavailable => false,
        }
    }

    fn backend(&self) -> Option<SocketAddr> {
        *self.backend.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticate(
        &self,
        cert_user: Option<&UserInfo>,
        headers: &http::HeaderMap,
    ) -> Option<UserInfo> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match bearer {
            Some(token) => self.lookup_token(token.trim()),
            None => cert_user.cloned(),
        }
    }

    fn lookup_token(&self, token: &str) -> Option<UserInfo> {
        self.identities
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    fn record(&self, record: RequestRecord) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= REQUEST_LOG_LEN {
            log.remove(0);
        }
        log.push(record);
    }
}

// === impl Filter ===

impl Filter {
    fn parse(kind: Kind, namespace: Option<&str>, query: &Query) -> Result<Self, String> {
        let labels = LabelSelector::parse(query_value(query, "labelSelector").unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let supported = match kind {
            Kind::Node => objects::NODE_FIELDS,
            Kind::Pod => objects::POD_FIELDS,
            Kind::ConfigMap => objects::CONFIGMAP_FIELDS,
        };
        let fields = FieldSelector::parse(
            query_value(query, "fieldSelector").unwrap_or_default(),
            supported,
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            labels,
            fields,
        })
    }

    fn node(&self, node: &Node) -> bool {
        self.labels.matches(&node.spec.labels) && self.fields.matches(|_| node.spec.name.clone())
    }

    fn pod(&self, pod: &Pod) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == pod.spec.namespace)
            && self.labels.matches(&pod.spec.labels)
            && self.fields.matches(|f| objects::pod_field(pod, f))
    }

    fn configmap(&self, cm: &ConfigMap) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == cm.namespace)
            && self.fields.matches(|f| {
                if f == "metadata.name" {
                    cm.name.clone()
                } else {
                    cm.namespace.clone()
                }
            })
    }
}

// === serving ===

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(crate::tls::certificate_identity)
                        .map(|(name, groups)| UserInfo { uid: String::new(), name, groups });
                    let service = service_fn(move |req| handle(shared.clone(), cert_user.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn json_response(status: StatusCode, content_type: &str, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn ok_json(body: &Value) -> Response<Body> {
    json_response(StatusCode::OK, "application/json", body)
}

/// A `Status` error response.
pub(crate) fn status_response(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<(&str, &str)>,
) -> Response<Body> {
    json_response(
        code,
        "application/json",
        &objects::status(code.as_u16(), reason, message, details),
    )
}

fn not_found(path: &str) -> Response<Body> {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
        None,
    )
}

async fn handle(
    shared: Arc<Shared>,
    cert_user: Option<UserInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let user = shared.authenticate(cert_user.as_ref(), req.headers());
    shared.record(RequestRecord {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        accept: header_str(header::ACCEPT),
        user: user.as_ref().map(|u| u.name.clone()),
        user_agent: header_str(header::USER_AGENT),
    });
    let Some(user) = user else {
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    };
    Ok(route(shared, user, req).await)
}

async fn route(shared: Arc<Shared>, user: UserInfo, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query: Query = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let get = method == Method::GET;
    match segments.as_slice() {
        ["apis", METRICS_GROUP, _, ..] => aggregator::proxy(&shared, &user, req).await,
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if method == Method::POST => {
            let Some(body) = read_json(req).await else {
                return bad_request("invalid TokenReview body");
            };
            shared.token_reviews.fetch_add(1, Ordering::Relaxed);
            json_response(
                StatusCode::CREATED,
                "application/json",
                &reviews::token_review(&body, |t| shared.lookup_token(t)),
            )
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]
            if method == Method::POST =>
        {
            let Some(body) = read_json(req).await else {
                return bad_request("invalid SubjectAccessReview body");
            };
            shared.access_reviews.fetch_add(1, Ordering::Relaxed);
            let rules = shared
                .rules
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            json_response(
                StatusCode::CREATED,
                "application/json",
                &reviews::access_review(&body, &rules),
            )
        }
        _ if !get => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
            None,
        ),
        [] => ok_json(
            &serde_json::json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
        ),
        ["version"] => ok_json(&discovery::version()),
        ["healthz" | "readyz" | "livez"] => {
            let mut response = Response::new(full(Bytes::from_static(b"ok")));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        ["api"] => discovery_response(&req, negotiate::discovery_format(accept.as_deref()), |f| {
            discovery::core_root(f, &shared.addr.to_string())
        }),
        ["apis"] => {
            let available = shared.metrics_available();
            discovery_response(&req, negotiate::discovery_format(accept.as_deref()), |f| {
                discovery::groups_root(f, available)
            })
        }
        ["api", "v1"] => ok_json(&discovery::core_v1()),
        ["apis", METRICS_GROUP] if shared.metrics_available() => {
            ok_json(&discovery::metrics_group())
        }
        ["api", "v1", "nodes"] => {
            collection(&shared, Kind::Node, None, None, &query, accept.as_deref())
        }
        ["api", "v1", "nodes", name] => collection(
            &shared,
            Kind::Node,
            None,
            Some(name),
            &query,
            accept.as_deref(),
        ),
        ["api", "v1", "pods"] => {
            collection(&shared, Kind::Pod, None, None, &query, accept.as_deref())
        }
        ["api", "v1", "namespaces", ns, "pods"] => collection(
            &shared,
            Kind::Pod,
            Some(ns),
            None,
            &query,
            accept.as_deref(),
        ),
        ["api", "v1", "namespaces", ns, "pods", name] => collection(
            &shared,
            Kind::Pod,
            Some(ns),
            Some(name),
            &query,
            accept.as_deref(),
        ),
        ["api", "v1", "configmaps"] => collection(
            &shared,
            Kind::ConfigMap,
            None,
            None,
            &query,
            accept.as_deref(),
        ),
        ["api", "v1", "namespaces", ns, "configmaps"] => collection(
            &shared,
            Kind::ConfigMap,
            Some(ns),
            None,
            &query,
            accept.as_deref(),
        ),
        ["api", "v1", "namespaces", ns, "configmaps", name] => collection(
            &shared,
            Kind::ConfigMap,
            Some(ns),
            Some(name),
            &query,
            accept.as_deref(),
        ),
        _ => not_found(&path),
    }
}

fn bad_request(message: &str) -> Response<Body> {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

async fn read_json(req: Request<Incoming>) -> Option<Value> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY_BYTES);
    let bytes = limited.collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

/// Serves a discovery document with its negotiated Content-Type, `Vary: Accept`, an `ETag`, and 304 for a
/// matching `If-None-Match` (the aggregator's discovery poll).
fn discovery_response(
    req: &Request<Incoming>,
    format: DiscoveryFormat,
    document: impl Fn(DiscoveryFormat) -> Value,
) -> Response<Body> {
    let body = serde_json::to_vec(&document(format)).unwrap_or_default();
    let etag = format!("\"{:016x}\"", fnv(&body));
    let content_type = if format == DiscoveryFormat::Legacy {
        "application/json"
    } else {
        discovery::aggregated_content_type(format)
    };
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str());
    let mut response = if not_modified {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(full(body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(header::VARY, http::HeaderValue::from_static("Accept"));
    if let Ok(value) = http::HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn kind_names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Node => ("Node", "nodes"),
        Kind::Pod => ("Pod", "pods"),
        Kind::ConfigMap => ("ConfigMap", "configmaps"),
    }
}

/// Objects passing a filter, read at one resource version.
pub(crate) struct Selection {
    /// Resource version of the snapshot.
    pub(crate) rv: u64,
    /// Full JSON of every selected object.
    pub(crate) items: Vec<Value>,
    /// The selected nodes (empty unless listing nodes).
    pub(crate) nodes: Vec<Arc<Node>>,
    /// The selected pods (empty unless listing pods).
    pub(crate) pods: Vec<Arc<Pod>>,
    /// Objects passing the filter after the selected page.
    pub(crate) remaining: usize,
}

/// Which slice of the filtered objects a list returns: `limit` objects from `offset` (kube-apiserver's chunked
/// lists, `?limit=` and `?continue=`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    offset: usize,
    limit: Option<usize>,
}

impl Page {
    /// Every object.
    pub(crate) const ALL: Self = Self {
        offset: 0,
        limit: None,
    };

    /// This page's slice of `items`, and how many items follow it.
    fn of<T: Clone>(self, items: &[T]) -> (Vec<T>, usize) {
        let start = self.offset.min(items.len());
        let end = start
            .saturating_add(self.limit.unwrap_or(usize::MAX))
            .min(items.len());
        (items[start..end].to_vec(), items.len() - end)
    }
}

/// A continue token: opaque to clients, like kube-apiserver's (base64 of a small JSON document). Ours holds the
/// snapshot's resource version and the offset of the next object; the model keeps no history, so a token from
/// an older resource version answers 410 Expired, as kube-apiserver does once that revision is compacted.
fn continue_token(rv: u64, offset: usize) -> String {
    use base64::Engine as _;
    let doc = serde_json::json!({"v": "meta.k8s.io/v1", "rv": rv, "start": offset});
    base64::engine::general_purpose::STANDARD.encode(doc.to_string())
}

/// The (resource version, offset) in a continue token.
fn parse_continue(token: &str) -> Option<(u64, usize)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let doc: Value = serde_json::from_slice(&bytes).ok()?;
    let rv = doc.get("rv")?.as_u64()?;
    let start = usize::try_from(doc.get("start")?.as_u64()?).ok()?;
    Some((rv, start))
}

impl Shared {
    /// The nodes (`Kind::Node`) or pods (any other kind) passing `filter` at the current resource version.
    ///
    /// The last selection is kept: the later chunks of a chunked list slice it instead of filtering the whole
    /// model again (600,000 pods in 1,200 chunks at 20,000 nodes).
    fn filtered(&self, kind: Kind, filter: &Filter) -> Listed {
        let key = format!("{kind:?} {filter:?}");
        let rv = self.model.resource_version();
        let mut listed = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = listed.as_ref().filter(|l| l.key == key && l.rv == rv) {
            return hit.clone();
        }
        let (rv, nodes, pods) = self.model.snapshot();
        let objects = if kind == Kind::Node {
            Objects::Nodes(Arc::new(
                nodes.into_iter().filter(|n| filter.node(n)).collect(),
            ))
        } else {
            Objects::Pods(Arc::new(
                pods.into_iter().filter(|p| filter.pod(p)).collect(),
            ))
        };
        let fresh = Listed { key, rv, objects };
        *listed = Some(fresh.clone());
        fresh
    }
}

/// Full JSON of the objects of `kind` passing `filter` on `page`, with the resource version they were read at.
pub(crate) fn select(shared: &Shared, kind: Kind, filter: &Filter, page: Page) -> Selection {
    let mut selection = Selection {
        rv: 0,
        items: Vec::new(),
        nodes: Vec::new(),
        pods: Vec::new(),
        remaining: 0,
    };
    if kind == Kind::ConfigMap {
        let all: Vec<&ConfigMap> = shared
            .configmaps
            .iter()
            .filter(|c| filter.configmap(c))
            .collect();
        let (configmaps, remaining) = page.of(&all);
        selection.rv = shared.model.resource_version();
        selection.items = configmaps
            .into_iter()
            .map(objects::configmap_json)
            .collect();
        selection.remaining = remaining;
        return selection;
    }
    let Listed { rv, objects, .. } = shared.filtered(kind, filter);
    selection.rv = rv;
    match objects {
        Objects::Nodes(all) => {
            (selection.nodes, selection.remaining) = page.of(&all);
            selection.items = selection
                .nodes
                .iter()
                .map(|n| objects::node_json(n))
                .collect();
        }
        Objects::Pods(all) => {
            (selection.pods, selection.remaining) = page.of(&all);
            selection.items = selection
                .pods
                .iter()
                .map(|p| objects::pod_json(p))
                .collect();
        }
    }
    selection
}

fn collection(
    shared: &Arc<Shared>,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
    accept: Option<&str>,
) -> Response<Body> {
    let (kind_name, resource) = kind_names(kind);
    let mut filter = match Filter::parse(kind, namespace, query) {
        Ok(f) => f,
        Err(message) => return bad_request(&message),
    };
    let format = negotiate::object_format(accept);
    if matches!(query_value(query, "watch"), Some("true" | "1")) {
        if let Some(name) = name {
            filter.fields =
                FieldSelector::parse(&format!("metadata.name={name}"), &["metadata.name"])
                    .unwrap_or_default();
        }
        return watch::serve(shared.clone(), kind, filter, format, query);
    }
    // Chunked lists: `limit` objects per answer, then a continue token for the rest (gets of one object ignore
    // both, as kube-apiserver does).
    let limit = match query_value(query, "limit").filter(|_| name.is_none()) {
        None => None,
        Some(text) => match text.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return bad_request(&format!("invalid limit: {text}")),
        },
    };
    let offset = match query_value(query, "continue").filter(|t| !t.is_empty() && name.is_none()) {
        None => 0,
        Some(token) => match parse_continue(token) {
            None => {
                return bad_request(&format!(
                    "continue key is not valid: illegal base64 data or JSON: {token}"
                ));
            }
            Some((rv, start)) if rv == shared.model.resource_version() => start,
            Some(_) => {
                return status_response(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can \
                     start a new list without the continue parameter.",
                    None,
                );
            }
        },
    };
    let page = Page { offset, limit };
    let Selection {
        rv,
        items,
        nodes,
        pods,
        remaining,
    } = select(shared, kind, &filter, page);
    let next = (remaining > 0).then(|| continue_token(rv, offset + items.len()));
    if let Some(name) = name {
        let found = items
            .into_iter()
            .find(|item| item["metadata"]["name"] == name);
        return match found {
            Some(item) => match format {
                ObjectFormat::Metadata(v) => ok_json(&objects::metadata_only(&item, v)),
                ObjectFormat::Table(v) => {
                    let now = now_ms();
                    let table = match kind {
                        Kind::Node => objects::node_table(
                            v,
                            rv,
                            &nodes
                                .iter()
                                .filter(|n| n.spec.name == name)
                                .map(|n| &**n)
                                .collect::<Vec<_>>(),
                            now,
                        ),
                        Kind::Pod => objects::pod_table(
                            v,
                            rv,
                            &pods
                                .iter()
                                .filter(|p| p.spec.name == name)
                                .map(|p| &**p)
                                .collect::<Vec<_>>(),
                            now,
                        ),
                        Kind::ConfigMap => objects::configmap_table(
                            v,
                            rv,
                            &shared
                                .configmaps
                                .iter()
                                .filter(|c| c.name == name)
                                .collect::<Vec<_>>(),
                        ),
                    };
                    table_response(v, &table)
                }
                ObjectFormat::Json => ok_json(&item),
            },
            None => status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{resource} \"{name}\" not found"),
                Some((resource, name)),
            ),
        };
    }
    // kube-apiserver gives `remainingItemCount` only for lists without a selector.
    let unfiltered = query_value(query, "labelSelector").is_none_or(str::is_empty)
        && query_value(query, "fieldSelector").is_none_or(str::is_empty);
    let paged = |mut list: Value| {
        if let Some(token) = &next {
            list["metadata"]["continue"] = Value::from(token.clone());
            if unfiltered {
                list["metadata"]["remainingItemCount"] = Value::from(remaining);
            }
        }
        list
    };
    match format {
        ObjectFormat::Json => ok_json(&paged(objects::list(kind_name, rv, items))),
        ObjectFormat::Metadata(v) => json_response(
            StatusCode::OK,
            &format!("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v={v}"),
            &paged(objects::metadata_list(v, rv, &items)),
        ),
        ObjectFormat::Table(v) => {
            let now = now_ms();
            let table = match kind {
                Kind::Node => {
                    objects::node_table(v, rv, &nodes.iter().map(|n| &**n).collect::<Vec<_>>(), now)
                }
                Kind::Pod => {
                    objects::pod_table(v, rv, &pods.iter().map(|p| &**p).collect::<Vec<_>>(), now)
                }
                Kind::ConfigMap => objects::configmap_table(
                    v,
                    rv,
                    &shared
                        .configmaps
                        .iter()
                        .filter(|c| filter.configmap(c))
                        .collect::<Vec<_>>(),
                ),
            };
            table_response(v, &paged(table))
        }
    }
}

fn table_response(version: &str, table: &Value) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &format!("application/json;as=Table;v={version};g=meta.k8s.io"),
        table,
    )
}
