//! Authorization by `SubjectAccessReview` (`authorization.k8s.io/v1`), with allow/deny TTL caches.
//!
//! Decisions are cached per (user, attributes) for `--authorization-webhook-cache-authorized-ttl` when allowed and
//! `--authorization-webhook-cache-unauthorized-ttl` when denied; concurrent identical reviews share one request.
//! Review failures are not cached. Members of `system:masters` are allowed without a review, as the apiserver's
//! delegating authorizer does. Always-allowed paths are the server's business, not this module's.

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use moka::Expiry;
use moka::future::Cache;

use super::token_review::{MAX_CACHE_TTL, clone_error};
use super::{Attributes, Authorizer, Decision, Error, UserInfo};

/// The group whose members are allowed everything without a review.
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// Most distinct (user, attributes) decisions kept; bounds memory when many users or object names are seen.
pub const DECISION_CACHE_CAPACITY: u64 = 10_000;

/// How long allowed and denied decisions are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionTtls {
    /// Lifetime of an `Allow`.
    pub allowed: Duration,
    /// Lifetime of a `Deny`.
    pub denied: Duration,
}

/// Authorizes requests through the API server.
#[derive(Clone)]
pub struct SubjectAccessReviewer {
    client: kube::Client,
    cache: Cache<(UserInfo, Attributes), Decision>,
}

/// Per-entry lifetime: the TTL of the decision's kind.
struct DecisionExpiry(DecisionTtls);

// === impl SubjectAccessReviewer ===

impl SubjectAccessReviewer {
    /// A reviewer creating `SubjectAccessReview`s with `client` and caching decisions for `ttls` (each at most
    /// [`MAX_CACHE_TTL`]).
    pub fn new(client: kube::Client, ttls: DecisionTtls) -> Self {
        let cache = Cache::builder()
            .max_capacity(DECISION_CACHE_CAPACITY)
            .expire_after(DecisionExpiry(ttls))
            .build();
        SubjectAccessReviewer { client, cache }
    }

    async fn review(&self, user: &UserInfo, attributes: &Attributes) -> Result<Decision, Error> {
        let api = kube::Api::<SubjectAccessReview>::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &access_review(user, attributes))
            .await
            .map_err(|error| Error::Review(format!("SubjectAccessReview: {error}")))?;
        let Some(status) = answer.status else {
            return Err(Error::Review(
                "SubjectAccessReview: response without status".to_owned(),
            ));
        };
        if let Some(evaluation_error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty())
        {
            tracing::debug!(user = %user.name, evaluation_error, "SubjectAccessReview evaluation error");
        }
        tracing::debug!(
            user = %user.name,
            ?attributes,
            allowed = status.allowed,
            reason = status.reason.as_deref().unwrap_or(""),
            "SubjectAccessReview answered"
        );
        Ok(if status.allowed {
            Decision::Allow
        } else {
            Decision::Deny {
                reason: status.reason.unwrap_or_default(),
            }
        })
    }
}

impl Authorizer for SubjectAccessReviewer {
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> futures::future::BoxFuture<'a, Result<Decision, Error>> {
        Box::pin(async move {
            if user.groups.iter().any(|group| group == PRIVILEGED_GROUP) {
                return Ok(Decision::Allow);
            }
            let key = (user.clone(), attributes.clone());
            self.cache
                .try_get_with(key, self.review(user, attributes))
                .await
                .map_err(|error| clone_error(&error))
        })
    }
}

impl std::fmt::Debug for SubjectAccessReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectAccessReviewer")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

/// The review object for `user` performing `attributes`; empty fields are left out, as the apiserver sends them.
pub fn access_review(user: &UserInfo, attributes: &Attributes) -> SubjectAccessReview {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (resource_attributes, non_resource_attributes) = match attributes {
        Attributes::Resource {
            verb,
            group,
            version,
            resource,
            namespace,
            name,
        } => (
            Some(ResourceAttributes {
                verb: Some(verb.clone()),
                group: Some(group.clone()),
                version: Some(version.clone()),
                resource: Some(resource.clone()),
                namespace: namespace.clone(),
                name: name.clone(),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Attributes::NonResource { verb, path } => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(verb.clone()),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: non_empty(&user.name),
            uid: non_empty(&user.uid),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

// === impl DecisionExpiry ===

impl Expiry<(UserInfo, Attributes), Decision> for DecisionExpiry {
    fn expire_after_create(
        &self,
        _key: &(UserInfo, Attributes),
        value: &Decision,
        _created_at: Instant,
    ) -> Option<Duration> {
        let ttl = match value {
            Decision::Allow => self.0.allowed,
            Decision::Deny { .. } => self.0.denied,
        };
        Some(ttl.min(MAX_CACHE_TTL))
    }
}
