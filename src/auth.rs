//! Authentication and authorization of API requests.
//!
//! [`Authenticator`] turns a request's credentials (TLS client certificate chain, headers) into a [`UserInfo`];
//! [`Authorizer`] decides whether that user may perform [`Attributes`]. The server runs both for every request
//! before routing. Delegated implementations (front-proxy, x509 client CA, TokenReview, SubjectAccessReview) live in
//! submodules; tests inject their own implementations through the traits.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

pub mod access_review;
pub mod chain;
pub mod delegated;
pub mod front_proxy;
pub mod token_review;
pub mod x509;

#[cfg(test)]
mod tests;

/// The authenticated identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    /// User name (`system:anonymous` for anonymous callers).
    pub name: String,
    /// UID, empty when unknown.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (keys lower-cased).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The user name of a caller who presented no credentials.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of a caller who presented no credentials.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group every authenticated user belongs to.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What a caller presented, borrowed from the connection and the request.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The TLS client certificate chain (leaf first, DER), empty when the client sent none.
    pub peer_certificates: &'a [rustls_pki_types::CertificateDer<'static>],
}

/// What a request wants to do, in Kubernetes authorization terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// An API resource request (`/apis/<group>/<version>/...`).
    Resource {
        /// `get`, `list` or `watch` (or `create`, ... for other methods).
        verb: String,
        /// API group, `metrics.k8s.io`.
        group: String,
        /// API version.
        version: String,
        /// `nodes` or `pods`.
        resource: String,
        /// Namespace of a namespaced request.
        namespace: Option<String>,
        /// Object name of a get.
        name: Option<String>,
    },
    /// Any other path (`/apis`, `/metrics`, `/livez`, ...).
    NonResource {
        /// Lower-case HTTP verb (`get`, `post`, ...).
        verb: String,
        /// The request path.
        path: String,
    },
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is forbidden; the reason is shown in the 403 `Status` message when non-empty.
    Deny {
        /// Why, as the reviewer said.
        reason: String,
    },
}

/// Authentication and authorization failures, mapped to 401 / 403 / 500 by the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Credentials were presented but are invalid (bad token, untrusted certificate): 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// A review could not be completed (API server unreachable, bad response).
    #[error("review request failed: {0}")]
    Review(String),
    /// Delegated auth could not be set up (CA file, kubeconfig, ConfigMap lookup); only returned by
    /// [`delegated::build`] at startup, never for a request.
    #[error("cannot set up delegated authentication: {0}")]
    Setup(String),
}

/// Turns credentials into a user.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(Some(user))` when credentials were presented and valid, `Ok(None)` when none were presented
    /// (anonymous), `Err(Error::Unauthorized)` when credentials were presented and invalid.
    fn authenticate<'a>(
        &'a self,
        credentials: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Error>>;
}

/// Decides whether a user may do something.
pub trait Authorizer: Send + Sync + 'static {
    /// The decision for `user` performing `attributes`.
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, Error>>;
}

// === impl UserInfo ===

impl UserInfo {
    /// The identity of a caller without credentials (`system:anonymous` in `system:unauthenticated`), which the
    /// server authorizes like any other user: nothing is served to anonymous callers unless RBAC allows it.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS_USER.to_owned(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            ..UserInfo::default()
        }
    }
}
