//! Bearer-token authentication by `TokenReview` (`authentication.k8s.io/v1`), with a TTL cache.
//!
//! Results (authenticated or not) are cached for `--authentication-token-webhook-cache-ttl`, keyed by the SHA-256 of
//! the token so the cache never holds a token; concurrent lookups of one token share one review. Review failures are
//! not cached. This module must never log or keep a token.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::{Error, UserInfo};

/// Most distinct tokens whose results are kept; bounds memory under a flood of random tokens (each entry is a
/// digest plus a small user record).
pub const TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// Longest cache lifetime honoured; moka panics above 1000 years, and nothing sensible needs more than a day.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Authenticates bearer tokens through the API server.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    /// SHA-256 of the token → the reviewed user, `None` when the API server said "not authenticated".
    cache: Cache<[u8; 32], Option<UserInfo>>,
}

// === impl TokenReviewer ===

impl TokenReviewer {
    /// A reviewer creating `TokenReview`s with `client`, caching results for `ttl` (zero: no reuse beyond
    /// concurrent identical lookups; at most [`MAX_CACHE_TTL`]).
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(TOKEN_CACHE_CAPACITY)
            .time_to_live(ttl.min(MAX_CACHE_TTL))
            .build();
        TokenReviewer { client, cache }
    }

    /// The user a token belongs to, `None` when the API server does not authenticate it.
    ///
    /// # Errors
    /// [`Error::Review`] when the review could not be made or answered.
    pub async fn review(&self, token: &str) -> Result<Option<UserInfo>, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.cache
            .try_get_with(key, self.create_review(token))
            .await
            .map_err(|error| clone_error(&error))
    }

    async fn create_review(&self, token: &str) -> Result<Option<UserInfo>, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api = kube::Api::<TokenReview>::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            // kube's error names the URL and status, never the request body, so no token leaks into the message.
            .map_err(|error| Error::Review(format!("TokenReview: {error}")))?;
        let Some(status) = answer.status else {
            return Err(Error::Review(
                "TokenReview: response without status".to_owned(),
            ));
        };
        if status.authenticated != Some(true) {
            tracing::debug!(
                reason = status.error.as_deref().unwrap_or(""),
                "bearer token not authenticated"
            );
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

/// The bearer token of an `Authorization: Bearer <token>` header, as the apiserver reads it: scheme compared
/// case-insensitively, surrounding spaces trimmed, an empty token or another scheme meaning "no token".
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A shared error handed back by the cache, reproduced for one caller.
pub(crate) fn clone_error(error: &Error) -> Error {
    match error {
        Error::Unauthorized => Error::Unauthorized,
        Error::Review(message) => Error::Review(message.clone()),
        Error::Setup(message) => Error::Setup(message.clone()),
    }
}
