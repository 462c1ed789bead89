//! [`Error`], every way an API request fails, and the ONE place errors become `Status` bodies and HTTP codes.
//!
//! Bodies follow apimachinery's field order: kind, apiVersion, metadata, status, message, reason, details, code.
//! This module must not decide *when* a request fails; handlers do.

use super::negotiate;
use super::render::{write_key, write_str};
use super::selector::SelectorError;
use crate::api::ApiResponse;

/// Why a request failed. Mapped to a `Status` body by [`Error::into_response`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The object exists but has no servable metrics: `nodemetrics.metrics.k8s.io "x" not found` /
    /// `podmetrics.metrics.k8s.io "ns/x" not found`.
    #[error("{}.metrics.k8s.io \"{name}\" not found", kind.as_str())]
    MetricsNotFound {
        /// Which metrics kind.
        kind: MetricsKind,
        /// `node` or `namespace/pod`.
        name: String,
    },
    /// The node is unknown to the node cache: `node "x" not found`.
    #[error("node \"{0}\" not found")]
    NodeNotFound(String),
    /// The pod is unknown or not Running: `pods "x" not found`.
    #[error("pods \"{0}\" not found")]
    PodNotFound(String),
    /// The path is not served.
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// `?watch=true` on a metrics resource.
    #[error("watch is not supported on resources of kind \"{resource}.metrics.k8s.io\"")]
    WatchNotSupported {
        /// `nodes` or `pods`.
        resource: &'static str,
    },
    /// A method other than GET.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// A label or field selector that does not parse or names an unknown field.
    #[error(transparent)]
    BadSelector(#[from] SelectorError),
    /// Nothing in `Accept` can be produced.
    #[error("only the following media types are accepted: {}", negotiate::JSON)]
    NotAcceptable,
}

/// The two metrics kinds, as they appear in NotFound messages and details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsKind {
    /// `nodemetrics`.
    Node,
    /// `podmetrics`.
    Pod,
}

/// `details` of a `Status` (omitted entirely when `None`).
struct Details<'a> {
    name: Option<&'a str>,
    group: Option<&'a str>,
    kind: Option<&'a str>,
}

/// The API group of every metrics object.
const GROUP: &str = "metrics.k8s.io";

// === impl MetricsKind ===

impl MetricsKind {
    /// `nodemetrics` or `podmetrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsKind::Node => "nodemetrics",
            MetricsKind::Pod => "podmetrics",
        }
    }
}

// === impl Error ===

impl Error {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Error::MetricsNotFound { .. }
            | Error::NodeNotFound(_)
            | Error::PodNotFound(_)
            | Error::PathNotFound => 404,
            Error::WatchNotSupported { .. } | Error::MethodNotAllowed => 405,
            Error::BadSelector(_) => 400,
            Error::NotAcceptable => 406,
        }
    }

    fn reason(&self) -> &'static str {
        match self.code() {
            404 => "NotFound",
            405 => "MethodNotAllowed",
            406 => "NotAcceptable",
            _ => "BadRequest",
        }
    }

    fn details(&self) -> Option<Details<'_>> {
        let none = Details {
            name: None,
            group: None,
            kind: None,
        };
        match self {
            Error::MetricsNotFound { kind, name } => Some(Details {
                name: Some(name),
                group: Some(GROUP),
                kind: Some(kind.as_str()),
            }),
            Error::NodeNotFound(name) => Some(Details {
                name: Some(name),
                kind: Some("node"),
                ..none
            }),
            Error::PodNotFound(name) => Some(Details {
                name: Some(name),
                kind: Some("pods"),
                ..none
            }),
            Error::PathNotFound | Error::MethodNotAllowed => Some(none),
            Error::WatchNotSupported { resource } => Some(Details {
                group: Some(GROUP),
                kind: Some(resource),
                ..none
            }),
            Error::BadSelector(_) | Error::NotAcceptable => None,
        }
    }

    /// The `Status` response (`Content-Type: application/json`).
    pub fn into_response(self) -> ApiResponse {
        let code = self.code();
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"#,
        );
        write_str(&mut body, &self.to_string());
        body.extend_from_slice(b",\"reason\":\"");
        body.extend_from_slice(self.reason().as_bytes());
        body.push(b'"');
        if let Some(details) = self.details() {
            body.extend_from_slice(b",\"details\":{");
            let mut first = true;
            for (key, value) in [
                ("name", details.name),
                ("group", details.group),
                ("kind", details.kind),
            ] {
                let Some(value) = value else { continue };
                if !first {
                    body.push(b',');
                }
                first = false;
                write_key(&mut body, key);
                write_str(&mut body, value);
            }
            body.push(b'}');
        }
        body.extend_from_slice(b",\"code\":");
        super::quantity::write_u64(&mut body, u64::from(code));
        body.push(b'}');
        ApiResponse {
            status: code,
            content_type: negotiate::JSON.to_owned(),
            headers: Vec::new(),
            body,
        }
    }
}
