//! The kube-aggregator part: proxying `/apis/metrics.k8s.io/<version>/…` to the metrics backend with path, query
//! and `Accept` unchanged, over TLS with the front-proxy client certificate (server certificate not verified, as
//! with `insecureSkipTLSVerify: true`), the caller's identity in `X-Remote-User`/`X-Remote-Group`, any incoming
//! `Authorization` dropped; 503 Status when no backend is available. Also the availability probe
//! (`GET /apis/metrics.k8s.io/v1beta1` as `system:kube-aggregator`/`system:masters`).
//!
//! It must not interpret metrics bodies.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls::pki_types::ServerName;

use super::{Shared, UserInfo, status_response};
use crate::https::{self, Body, BoxError};

/// Client timeout of the availability probe (the aggregator's 5 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline for establishing a proxied exchange (connect, handshake, response head). Bodies stream without one.
const PROXY_TIMEOUT: Duration = Duration::from_secs(60);

/// Request headers never forwarded: credentials, identity headers a caller could forge, hop-by-hop headers.
fn forwardable(name: &header::HeaderName) -> bool {
    let n = name.as_str();
    !(n == "authorization"
        || n == "host"
        || n == "connection"
        || n == "keep-alive"
        || n == "proxy-connection"
        || n == "te"
        || n == "trailer"
        || n == "transfer-encoding"
        || n == "upgrade"
        || n.starts_with("x-remote-")
        || n.starts_with("impersonate-"))
}

/// Proxies one request to the metrics backend as `user`.
pub(crate) async fn proxy(
    shared: &Shared,
    user: &UserInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let backend = match shared.backend() {
        Some(backend) if shared.metrics_available() => backend,
        _ => {
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
                None,
            );
        }
    };
    let (parts, body) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query);
    for (name, value) in &parts.headers {
        if forwardable(name) {
            builder = builder.header(name, value);
        }
    }
    builder = builder
        .header(header::HOST, backend.to_string())
        .header("X-Remote-User", user.name.as_str());
    for group in &user.groups {
        builder = builder.header("X-Remote-Group", group.as_str());
    }
    let body: Body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    let Ok(request) = builder.body(body) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "request headers could not be forwarded",
            None,
        );
    };
    match https::send(
        backend,
        shared.front_proxy_client.clone(),
        server_name(backend),
        request,
        PROXY_TIMEOUT,
    )
    .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for hop in [
                header::CONNECTION,
                header::TRANSFER_ENCODING,
                header::HeaderName::from_static("keep-alive"),
            ] {
                parts.headers.remove(hop);
            }
            Response::from_parts(parts, body.map_err(|e| -> BoxError { Box::new(e) }).boxed())
        }
        Err(error) => status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("error trying to reach service: {error}"),
            None,
        ),
    }
}

fn server_name(backend: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(backend.ip().into())
}

/// Probes the backend every `interval` until the control plane is dropped.
pub(crate) async fn probe_loop(shared: Weak<Shared>, interval: Duration) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let available = match strong.backend() {
            Some(backend) => probe(&strong, backend).await,
            None => false,
        };
        strong.probed_available.store(available, Ordering::SeqCst);
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

async fn probe(shared: &Arc<Shared>, backend: SocketAddr) -> bool {
    let headers = [
        ("Accept", "application/json, */*"),
        ("X-Remote-User", "system:kube-aggregator"),
        ("X-Remote-Group", "system:masters"),
        ("User-Agent", "kube-aggregator/v1.33.1 (e2e fake)"),
    ];
    let path = format!("/apis/{}/v1beta1", super::METRICS_GROUP);
    matches!(
        https::get(backend, shared.front_proxy_client.clone(), &path, &headers, PROBE_TIMEOUT).await,
        Ok((status, _, _)) if status.is_success()
    )
}
