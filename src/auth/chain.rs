//! The delegated authenticator: front-proxy, then client certificate, then bearer token, else anonymous.
//!
//! This mirrors the apiserver's union authenticator: each method is tried in order and the first that yields a
//! user wins; a method that fails does not stop the next. If none yields a user and any failed (an untrusted
//! certificate, a disallowed proxy name, a rejected token), the request is unauthorized; if nothing was presented
//! the caller is anonymous (`Ok(None)`). `X-Remote-*` headers are read only after the connection's chain verified
//! against the requestheader CA with an allowed CN; on any other connection they are ignored.
//!
//! The trust material lives in a [`TrustStore`] that the ConfigMap refresh swaps atomically; a request sees one
//! consistent snapshot. This module must not talk to the API server except through [`TokenReviewer`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use rustls_pki_types::UnixTime;

use super::front_proxy::{ProxyCheck, RequestHeaderConfig};
use super::token_review::{TokenReviewer, bearer_token};
use super::x509::{self, CaBundle};
use super::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, Authenticator, Credentials, Error, UNAUTHENTICATED_GROUP,
    UserInfo,
};

/// The CA bundles and requestheader settings in force.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Front-proxy settings; `None` disables front-proxy authentication.
    pub front_proxy: Option<RequestHeaderConfig>,
    /// CA that verifies ordinary client certificates; `None` disables client-certificate authentication.
    pub client_ca: Option<CaBundle>,
}

/// At most one front-proxy misconfiguration warning per this interval; the rest go to debug. Misconfiguration
/// hits every proxied request, so an unthrottled warning would flood the log while one a minute stays visible.
pub const MISCONFIGURATION_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A shared, atomically replaceable [`Trust`].
pub type TrustStore = Arc<ArcSwap<Trust>>;

/// Authenticates a request by front-proxy headers, client certificate or bearer token.
#[derive(Debug, Clone)]
pub struct DelegatingAuthenticator {
    trust: TrustStore,
    tokens: TokenReviewer,
    warnings: Arc<WarningThrottle>,
}

/// Rate limit for misconfiguration warnings.
#[derive(Debug, Default)]
struct WarningThrottle {
    last: Mutex<Option<tokio::time::Instant>>,
}

// === impl DelegatingAuthenticator ===

impl DelegatingAuthenticator {
    /// An authenticator reading trust material from `trust` on every request and reviewing tokens with `tokens`.
    pub fn new(trust: TrustStore, tokens: TokenReviewer) -> Self {
        DelegatingAuthenticator {
            trust,
            tokens,
            warnings: Arc::default(),
        }
    }

    /// The certificate methods: `Ok(Some)` for a user, `Ok(None)` when no certificate method applies,
    /// `Err(Unauthorized)` when a certificate was presented and no configured CA accepts it for a user.
    fn authenticate_certificate(
        &self,
        credentials: Credentials<'_>,
        now: UnixTime,
    ) -> Result<Option<UserInfo>, Error> {
        let chain = credentials.peer_certificates;
        if chain.is_empty() {
            return Ok(None);
        }
        let trust = self.trust.load();
        let mut rejected = false;
        let mut untrusted_by_proxy = false;
        // Why a request that looks proxied (it names a user in a username header) was not trusted as such.
        let mut proxy_complaint = None;
        if let Some(front_proxy) = &trust.front_proxy {
            match front_proxy.verify_proxy(chain, now) {
                ProxyCheck::Trusted => {
                    if let Some(user) = front_proxy.user_from_headers(credentials.headers) {
                        tracing::debug!(user = %user.name, groups = ?user.groups, "authenticated by front-proxy");
                        return Ok(Some(user));
                    }
                    // A trusted proxy without a user header: like the apiserver, let the other methods decide.
                    tracing::debug!("front-proxy certificate without a username header");
                }
                ProxyCheck::NameNotAllowed { common_name } => {
                    if front_proxy.asserts_user(credentials.headers) {
                        proxy_complaint = Some(format!(
                            "front-proxy certificate CN {common_name:?} is not in the requestheader allowed names {:?}",
                            front_proxy.allowed_names
                        ));
                    }
                    rejected = true;
                }
                ProxyCheck::Untrusted(error) => {
                    if front_proxy.asserts_user(credentials.headers) {
                        let (subject, issuer) = x509::describe(&chain[0]).unwrap_or_default();
                        proxy_complaint = Some(format!(
                            "certificate {subject:?} issued by {issuer:?} is not trusted by the requestheader CA: {error}"
                        ));
                    }
                    untrusted_by_proxy = true;
                }
            }
        }
        if let Some(client_ca) = &trust.client_ca {
            match client_ca.verify_client(chain, now) {
                // Like the apiserver's CommonNameUserConversion: a verified certificate without a CN names nobody.
                Ok(subject) if subject.common_name.is_empty() => {
                    tracing::debug!("client certificate without a common name");
                }
                Ok(subject) => {
                    return Ok(Some(UserInfo {
                        name: subject.common_name,
                        groups: subject.organizations,
                        ..UserInfo::default()
                    }));
                }
                Err(error) => {
                    tracing::debug!(%error, "client certificate rejected");
                    rejected = true;
                }
            }
        } else if untrusted_by_proxy {
            // A certificate that no configured CA trusts is invalid credentials, not "no credentials".
            rejected = true;
        }
        if rejected {
            if let Some(complaint) = proxy_complaint {
                self.warnings.warn(&complaint);
            }
            Err(Error::Unauthorized)
        } else {
            Ok(None)
        }
    }
}

impl Authenticator for DelegatingAuthenticator {
    fn authenticate<'a>(
        &'a self,
        credentials: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Error>> {
        Box::pin(async move {
            let certificate = self.authenticate_certificate(credentials, UnixTime::now());
            if let Ok(Some(user)) = certificate {
                return Ok(Some(with_authenticated_group(user)));
            }
            if let Some(token) = bearer_token(credentials.headers) {
                return match self.tokens.review(token).await? {
                    Some(user) => Ok(Some(with_authenticated_group(user))),
                    None => Err(Error::Unauthorized),
                };
            }
            certificate
        })
    }
}

// === impl WarningThrottle ===

impl WarningThrottle {
    /// Logs a front-proxy misconfiguration at warn at most once per [`MISCONFIGURATION_WARNING_INTERVAL`].
    fn warn(&self, complaint: &str) {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let due = last.is_none_or(|at| now.duration_since(at) >= MISCONFIGURATION_WARNING_INTERVAL);
        if due {
            *last = Some(now);
            drop(last);
            tracing::warn!(
                complaint,
                "rejected a request carrying front-proxy user headers; check --requestheader-client-ca-file (or the \
                 extension-apiserver-authentication ConfigMap), --requestheader-allowed-names and the aggregator's \
                 --proxy-client-cert-file (repeats within a minute are logged at debug)"
            );
        } else {
            drop(last);
            tracing::debug!(
                complaint,
                "rejected a request carrying front-proxy user headers"
            );
        }
    }
}

/// Adds `system:authenticated` to an authenticated user's groups, as the apiserver's `AuthenticatedGroupAdder`
/// does, so RBAC bindings to that group apply to certificate users too. Anonymous users never get it.
fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    let anonymous =
        user.name == ANONYMOUS_USER || user.groups.iter().any(|g| g == UNAUTHENTICATED_GROUP);
    if !anonymous && !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    user
}
