//! Front-proxy ("requestheader") authentication: the identity an authenticating proxy (kube-aggregator) asserts in
//! `X-Remote-*` headers, trusted only on a connection whose client chain verifies against the requestheader CA and
//! whose CN is an allowed name.
//!
//! This module owns the requestheader settings and the header → [`UserInfo`] mapping. It must never look at headers
//! unless the caller has verified the proxy's certificate with [`RequestHeaderConfig::verify_proxy`] first.

use std::collections::BTreeMap;

use rustls_pki_types::{CertificateDer, UnixTime};

use super::UserInfo;
use super::x509::{CaBundle, Subject, VerifyError};

/// Requestheader settings: which CA signs proxy certificates, which proxies are allowed and where they put the user.
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    /// CA bundle that signs front-proxy client certificates.
    pub ca: CaBundle,
    /// Common names a proxy certificate may carry; any CN when empty.
    pub allowed_names: Vec<String>,
    /// Headers holding the user name; the first header with a non-empty (first) value wins.
    pub username_headers: Vec<String>,
    /// Headers holding groups; every non-empty value of every such header is a group (never split on commas).
    pub group_headers: Vec<String>,
    /// Header name prefixes for extra attributes (`X-Remote-Extra-Scopes: a` → extra `scopes: [a]`).
    pub extra_header_prefixes: Vec<String>,
    /// Headers holding the user's UID; the first non-empty one wins.
    pub uid_headers: Vec<String>,
}

/// The outcome of checking a client chain against the requestheader settings.
#[derive(Debug)]
pub enum ProxyCheck {
    /// The chain verifies and its CN is allowed: the headers may be trusted.
    Trusted,
    /// The chain verifies against the requestheader CA but its CN is not an allowed name.
    NameNotAllowed {
        /// The certificate's common name.
        common_name: String,
    },
    /// The chain does not verify against the requestheader CA.
    Untrusted(VerifyError),
}

// === impl RequestHeaderConfig ===

impl RequestHeaderConfig {
    /// Checks the connection's client chain (leaf first) at time `now`.
    pub fn verify_proxy(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> ProxyCheck {
        match self.ca.verify_client(chain, now) {
            Ok(Subject { common_name, .. }) => {
                if self.allowed_names.is_empty() || self.allowed_names.contains(&common_name) {
                    ProxyCheck::Trusted
                } else {
                    ProxyCheck::NameNotAllowed { common_name }
                }
            }
            Err(error) => ProxyCheck::Untrusted(error),
        }
    }

    /// Whether the request names a user in one of the username headers (it looks proxied).
    pub fn asserts_user(&self, headers: &http::HeaderMap) -> bool {
        first_non_empty(headers, &self.username_headers).is_some()
    }

    /// The user asserted by the proxy's headers, or `None` when no username header has a non-empty value.
    ///
    /// Only call this after [`RequestHeaderConfig::verify_proxy`] returned [`ProxyCheck::Trusted`].
    pub fn user_from_headers(&self, headers: &http::HeaderMap) -> Option<UserInfo> {
        let name = first_non_empty(headers, &self.username_headers)?;
        let uid = first_non_empty(headers, &self.uid_headers).unwrap_or_default();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|header| headers.get_all(header.as_str()))
            .filter_map(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect();
        Some(UserInfo {
            name,
            uid,
            groups,
            extra: self.extra_from_headers(headers),
        })
    }

    fn extra_from_headers(&self, headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let prefixes: Vec<String> = self
            .extra_header_prefixes
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        // HeaderMap names are already lower-case; iterate names once and read all their values.
        for name in headers.keys() {
            let name = name.as_str();
            let Some(prefix) = prefixes
                .iter()
                .find(|p| !p.is_empty() && name.starts_with(p.as_str()))
            else {
                continue;
            };
            let key = unescape_extra_key(&name[prefix.len()..]);
            let values = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned);
            extra.entry(key).or_default().extend(values);
        }
        extra
    }
}

/// The first value of the first header among `names` whose first value is non-empty (Go's `Header.Get`).
fn first_non_empty(headers: &http::HeaderMap, names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| headers.get(name.as_str()))
        .filter_map(|value| value.to_str().ok())
        .find(|value| !value.is_empty())
        .map(str::to_owned)
}

/// Percent-decodes an extra-header key (already lower-case), as the apiserver's `unescapeExtraKey` does with Go's
/// `url.PathUnescape`: header names cannot carry `/` or `:` literally, so proxies escape them. A malformed escape
/// or a result that is not UTF-8 leaves the key as sent.
pub fn unescape_extra_key(encoded: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex);
            let low = bytes.get(i + 2).copied().and_then(hex);
            match (high, low) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => return encoded.to_owned(),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| encoded.to_owned())
}
