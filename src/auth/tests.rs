//! Unit tests for the auth submodules: certificate chains from rcgen CAs, front-proxy headers, TokenReview and
//! SubjectAccessReview against a fake API server (tower-test mock), and ConfigMap parsing and refresh.

#![allow(
    clippy::expect_used,
    reason = "test fixtures panic with a message when they cannot be built"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};

use super::access_review::{DecisionTtls, SubjectAccessReviewer};
use super::chain::{DelegatingAuthenticator, Trust};
use super::delegated::{self, ConfigMapError, parse_configmap};
use super::front_proxy::{RequestHeaderConfig, unescape_extra_key};
use super::token_review::{TokenReviewer, bearer_token};
use super::x509::CaBundle;
use super::{Attributes, Authenticator, Authorizer, Credentials, Decision, Error, UserInfo};
use crate::config::Args;

// === certificates ===

/// A test CA that issues client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// How a leaf differs from a plain, valid client certificate.
#[derive(Default)]
struct Leaf<'a> {
    organizations: &'a [&'a str],
    expired: bool,
    server_auth_only: bool,
    /// Valid from 1 January of the first year to 1 January of the second (00:00:00 UTC).
    valid_years: Option<(i32, i32)>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::self_signed(
                ca_params(name),
                KeyPair::generate().expect("key"),
            )
            .expect("ca"),
        }
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Ca {
        self.intermediate_with(name, KeyPair::generate().expect("key"), None)
    }

    /// An intermediate CA signed by this one with a given key (to re-issue an intermediate) and validity.
    fn intermediate_with(&self, name: &str, key: KeyPair, valid_years: Option<(i32, i32)>) -> Ca {
        let mut params = ca_params(name);
        if let Some((from, to)) = valid_years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let issuer = CertifiedIssuer::signed_by(params, key, &self.issuer).expect("intermediate");
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn bundle(&self) -> CaBundle {
        CaBundle::from_pem(self.pem().as_bytes()).expect("bundle")
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A client certificate chain (just the leaf) for `common_name`.
    fn client(&self, common_name: &str) -> Vec<CertificateDer<'static>> {
        self.leaf(common_name, Leaf::default())
    }

    fn leaf(&self, common_name: &str, leaf: Leaf<'_>) -> Vec<CertificateDer<'static>> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        if !common_name.is_empty() {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
        }
        // rcgen keeps one value per attribute type, so later organizations use the same OID (2.5.4.10) as a
        // "custom" type to get several O attributes, as kubeadm's admin certs have.
        for (index, organization) in leaf.organizations.iter().enumerate() {
            let kind = if index == 0 {
                DnType::OrganizationName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 10])
            };
            params.distinguished_name.push(kind, *organization);
        }
        params.extended_key_usages = vec![if leaf.server_auth_only {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        if let Some((from, to)) = leaf.valid_years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        vec![
            params
                .signed_by(&key, &self.issuer)
                .expect("leaf")
                .der()
                .clone(),
        ]
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The three CAs of a cluster as the tests see it.
struct Pki {
    front_proxy: Ca,
    client: Ca,
    stranger: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            front_proxy: Ca::new("front-proxy-ca"),
            client: Ca::new("kubernetes"),
            stranger: Ca::new("stranger"),
        }
    }

    /// kubeadm's settings: proxy CN `front-proxy-client`, `X-Remote-*` headers.
    fn trust(&self) -> Trust {
        Trust {
            front_proxy: Some(RequestHeaderConfig {
                ca: self.front_proxy.bundle(),
                allowed_names: vec!["front-proxy-client".to_owned()],
                username_headers: vec!["X-Remote-User".to_owned()],
                group_headers: vec!["X-Remote-Group".to_owned()],
                extra_header_prefixes: vec!["X-Remote-Extra-".to_owned()],
                uid_headers: vec!["X-Remote-Uid".to_owned()],
            }),
            client_ca: Some(self.client.bundle()),
        }
    }
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    }
}

// === fake API server ===

/// One request the fake API server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    body: Value,
}

/// What the fake answers.
enum Reply {
    /// A status code and a JSON body.
    Json(u16, Value),
    /// A 200 with a raw body (watch streams: one JSON event per line).
    Stream(String),
    /// Never answers (a watch that stays open).
    Hang,
}

type Responder = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A kube client whose requests are answered by `respond`, and the log of requests seen.
fn fake_api(
    respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let respond: Responder = Box::new(respond);
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path_and_query = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let request = Seen {
                method,
                path_and_query,
                body,
            };
            log.lock().expect("log").push(request.clone());
            let (status, body) = match respond(&request) {
                Reply::Json(status, value) => (status, value.to_string()),
                Reply::Stream(text) => (200, text),
                Reply::Hang => {
                    open.push(send);
                    continue;
                }
            };
            // Give concurrent callers time to pile onto the same in-flight review.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.into_bytes()))
                .expect("response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), seen)
}

/// A client whose every request fails (for code paths that must not call the API server).
fn unreachable_api() -> kube::Client {
    let (service, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    drop(handle);
    kube::Client::new(service, "default")
}

fn token_review_answer(request: &Seen) -> Reply {
    let token = request.body["spec"]["token"].as_str().unwrap_or_default();
    let status = match token {
        "good-token" => json!({
            "authenticated": true,
            "user": {"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"],
                     "extra": {"scopes": ["a", "b"]}}
        }),
        "broken-token" => {
            return Reply::Json(
                500,
                json!({"kind": "Status", "code": 500, "message": "etcd down"}),
            );
        }
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    Reply::Json(
        201,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}),
    )
}

fn authenticator(trust: Trust, client: kube::Client, ttl: Duration) -> DelegatingAuthenticator {
    DelegatingAuthenticator::new(
        Arc::new(ArcSwap::from_pointee(trust)),
        TokenReviewer::new(client, ttl),
    )
}

async fn authenticate(
    authenticator: &dyn Authenticator,
    chain: &[CertificateDer<'static>],
    header_pairs: &[(&str, &str)],
) -> Result<Option<UserInfo>, Error> {
    let headers = headers(header_pairs);
    authenticator
        .authenticate(Credentials {
            headers: &headers,
            peer_certificates: chain,
        })
        .await
}

/// `Ok(user)`, `Ok(None)` or the error's display, for comparing outcomes in tables.
fn outcome(result: Result<Option<UserInfo>, Error>) -> Result<Option<UserInfo>, String> {
    result.map_err(|e| e.to_string())
}

// === certificate authentication ===

#[tokio::test]
async fn certificate_and_header_cases_authenticate_as_the_apiserver_does() {
    struct Case {
        name: &'static str,
        chain: fn(&Pki) -> Vec<CertificateDer<'static>>,
        headers: &'static [(&'static str, &'static str)],
        want: Result<Option<UserInfo>, String>,
    }
    let unauthorized = Err("Unauthorized".to_owned());
    let aggregator_headers: &[(&str, &str)] = &[
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "dev"),
        ("x-remote-group", "system:authenticated"),
        ("X-Remote-Uid", "u-1"),
        ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ("X-Remote-Extra-acme.com%2fproject", "p2"),
        ("X-Remote-Extra-Scopes", "view"),
    ];
    let alice = UserInfo {
        name: "alice".to_owned(),
        uid: "u-1".to_owned(),
        groups: vec!["dev".to_owned(), "system:authenticated".to_owned()],
        extra: BTreeMap::from([
            (
                "acme.com/project".to_owned(),
                vec!["p1".to_owned(), "p2".to_owned()],
            ),
            ("scopes".to_owned(), vec!["view".to_owned()]),
        ]),
    };
    let cases = [
        Case {
            name: "front-proxy cert with an allowed name yields the user from the headers, extra keys decoded",
            chain: |pki| pki.front_proxy.client("front-proxy-client"),
            headers: aggregator_headers,
            want: Ok(Some(alice.clone())),
        },
        Case {
            name: "front-proxy cert with a name not allowed is unauthorized",
            chain: |pki| pki.front_proxy.client("mallory"),
            headers: aggregator_headers,
            want: unauthorized.clone(),
        },
        Case {
            name: "cert from an unknown CA is unauthorized and its headers ignored",
            chain: |pki| pki.stranger.client("front-proxy-client"),
            headers: aggregator_headers,
            want: unauthorized.clone(),
        },
        Case {
            name: "remote-user headers without a certificate are ignored",
            chain: |_| Vec::new(),
            headers: aggregator_headers,
            want: Ok(None),
        },
        Case {
            name: "client-CA cert yields CN as user and O as groups, headers ignored",
            chain: |pki| {
                pki.client.leaf(
                    "bob",
                    Leaf {
                        organizations: &["dev", "ops"],
                        ..Leaf::default()
                    },
                )
            },
            headers: aggregator_headers,
            want: Ok(Some(user("bob", &["dev", "ops", "system:authenticated"]))),
        },
        Case {
            name: "client-CA cert through an intermediate is accepted",
            chain: |pki| {
                let intermediate = pki.client.intermediate("kubernetes-intermediate");
                let mut chain = intermediate.client("carol");
                chain.push(intermediate.der());
                chain
            },
            headers: &[],
            want: Ok(Some(user("carol", &["system:authenticated"]))),
        },
        Case {
            name: "expired front-proxy cert is unauthorized",
            chain: |pki| {
                pki.front_proxy.leaf(
                    "front-proxy-client",
                    Leaf {
                        expired: true,
                        ..Leaf::default()
                    },
                )
            },
            headers: aggregator_headers,
            want: unauthorized.clone(),
        },
        Case {
            name: "expired client-CA cert is unauthorized",
            chain: |pki| {
                pki.client.leaf(
                    "bob",
                    Leaf {
                        expired: true,
                        ..Leaf::default()
                    },
                )
            },
            headers: &[],
            want: unauthorized.clone(),
        },
        Case {
            name: "client-CA cert for server auth only is unauthorized",
            chain: |pki| {
                pki.client.leaf(
                    "bob",
                    Leaf {
                        server_auth_only: true,
                        ..Leaf::default()
                    },
                )
            },
            headers: &[],
            want: unauthorized.clone(),
        },
        Case {
            name: "trusted proxy without a username header is not a user and not a client-CA cert",
            chain: |pki| pki.front_proxy.client("front-proxy-client"),
            headers: &[("X-Remote-Group", "system:masters")],
            want: unauthorized.clone(),
        },
        Case {
            name: "first username value is used; group values are kept whole and empty ones dropped",
            chain: |pki| pki.front_proxy.client("front-proxy-client"),
            headers: &[
                ("X-Remote-User", "dave"),
                ("X-Remote-User", "eve"),
                ("X-Remote-Group", "a,b"),
                ("X-Remote-Group", ""),
            ],
            want: Ok(Some(user("dave", &["a,b", "system:authenticated"]))),
        },
        Case {
            name: "an empty username header is no user",
            chain: |pki| pki.front_proxy.client("front-proxy-client"),
            headers: &[("X-Remote-User", ""), ("X-Remote-User", "dave")],
            want: unauthorized.clone(),
        },
        Case {
            name: "client-CA cert without a common name names nobody",
            chain: |pki| pki.client.client(""),
            headers: &[],
            want: Ok(None),
        },
        Case {
            name: "nothing presented is anonymous",
            chain: |_| Vec::new(),
            headers: &[],
            want: Ok(None),
        },
    ];
    let pki = Pki::new();
    let authn = authenticator(pki.trust(), unreachable_api(), Duration::from_secs(10));
    for case in cases {
        let chain = (case.chain)(&pki);
        let got = outcome(authenticate(&authn, &chain, case.headers).await);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[tokio::test]
async fn empty_allowed_names_accept_any_proxy_name_from_the_requestheader_ca() {
    let pki = Pki::new();
    let mut trust = pki.trust();
    if let Some(front_proxy) = &mut trust.front_proxy {
        front_proxy.allowed_names.clear();
    }
    let authn = authenticator(trust, unreachable_api(), Duration::from_secs(10));
    let chain = pki.front_proxy.client("some-other-proxy");
    let got = authenticate(&authn, &chain, &[("X-Remote-User", "erin")])
        .await
        .expect("authenticated");
    assert_eq!(got, Some(user("erin", &["system:authenticated"])));
}

#[tokio::test]
async fn certificate_without_any_configured_ca_is_anonymous() {
    let pki = Pki::new();
    let authn = authenticator(Trust::default(), unreachable_api(), Duration::from_secs(10));
    let chain = pki.stranger.client("whoever");
    let got = authenticate(&authn, &chain, &[("X-Remote-User", "admin")])
        .await
        .expect("no error");
    assert_eq!(got, None);
}

#[test]
fn extra_keys_are_percent_decoded_or_kept_when_malformed() {
    let cases = [
        ("plain", "plain"),
        ("acme.com%2fproject", "acme.com/project"),
        ("a%3Ab", "a:b"),
        ("bad%zz", "bad%zz"),
        ("cut%2", "cut%2"),
        ("not-utf8%ff", "not-utf8%ff"),
    ];
    for (input, want) in cases {
        assert_eq!(unescape_extra_key(input), want, "{input}");
    }
}

#[test]
fn ca_bundle_parsing_rejects_text_without_certificates() {
    assert!(CaBundle::from_pem(b"").is_err(), "empty text");
    assert!(
        CaBundle::from_pem(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
        )
        .is_err()
    );
    let two = format!("{}{}", Ca::new("a").pem(), Ca::new("b").pem());
    assert_eq!(
        CaBundle::from_pem(two.as_bytes()).expect("two CAs").len(),
        2
    );
}

// === chain verification cache ===

/// 00:00:00 UTC on a day, plus `secs`, as webpki's clock.
fn day(year: i32, month: u8, day: u8, secs: u64) -> UnixTime {
    let midnight =
        u64::try_from(rcgen::date_time_ymd(year, month, day).unix_timestamp()).expect("after 1970");
    UnixTime::since_unix_epoch(Duration::from_secs(midnight + secs))
}

/// A comparable rendering of a verification outcome: the subject, or the error's debug form (which names the
/// webpki error and its instants).
fn verified(
    result: Result<super::x509::Subject, super::x509::VerifyError>,
) -> Result<String, String> {
    result
        .map(|subject| subject.common_name)
        .map_err(|error| format!("{error:?}"))
}

/// Verifies `chain` at `now` with the shared `bundle`, checks the outcome against `want` (the common name, or a
/// fragment of the error) and against a fresh, uncached bundle of `root`; returns the shared bundle's count of full
/// verifications so far.
fn check_verification(
    name: &str,
    bundle: &super::x509::CaBundle,
    root: &Ca,
    chain: &[CertificateDer<'static>],
    now: UnixTime,
    want: Result<&str, &str>,
) -> usize {
    let got = verified(bundle.verify_client(chain, now));
    let uncached = verified(root.bundle().verify_client(chain, now));
    assert_eq!(got, uncached, "{name}: same outcome as without a cache");
    match (&got, want) {
        (Ok(cn), Ok(want)) => assert_eq!(cn, want, "{name}"),
        (Err(error), Err(want)) => assert!(error.contains(want), "{name}: {error}"),
        _ => panic!("{name}: got {got:?}, want {want:?}"),
    }
    bundle.verifications()
}

#[test]
fn a_verified_chain_is_reused_and_any_other_chain_is_verified() {
    struct Case {
        name: &'static str,
        chain: Vec<CertificateDer<'static>>,
        /// The common name, or a fragment of the error.
        want: Result<&'static str, &'static str>,
        /// Full verifications so far.
        want_verifications: usize,
        want_cached: usize,
    }
    let root = Ca::new("cache-root");
    let key = KeyPair::generate().expect("key");
    let same_key = KeyPair::from_pem(&key.serialize_pem()).expect("key copy");
    let intermediate = root.intermediate_with("cache-intermediate", key, None);
    // The same intermediate re-issued: same name and key, other dates, so it still signs the same leaves.
    let reissued = root.intermediate_with("cache-intermediate", same_key, Some((2020, 2040)));
    let stranger = Ca::new("cache-stranger");
    let alice = intermediate.client("alice").remove(0);
    let bob = intermediate.client("bob").remove(0);
    let stranger_alice = stranger.client("alice").remove(0);
    let (i1, i2) = (intermediate.der(), reissued.der());
    let now = day(2030, 1, 1, 0);
    let cases = [
        Case {
            name: "a first chain is verified",
            chain: vec![alice.clone(), i1.clone()],
            want: Ok("alice"),
            want_verifications: 1,
            want_cached: 1,
        },
        Case {
            name: "the same chain again is served from the cache",
            chain: vec![alice.clone(), i1.clone()],
            want: Ok("alice"),
            want_verifications: 1,
            want_cached: 1,
        },
        Case {
            name: "another leaf of the same intermediate is verified",
            chain: vec![bob.clone(), i1.clone()],
            want: Ok("bob"),
            want_verifications: 2,
            want_cached: 2,
        },
        Case {
            name: "the same leaf with a re-issued intermediate is verified",
            chain: vec![alice.clone(), i2.clone()],
            want: Ok("alice"),
            want_verifications: 3,
            want_cached: 3,
        },
        Case {
            name: "the same leaf and intermediate in the other order is verified and fails",
            chain: vec![i1.clone(), alice.clone()],
            want: Err("CaUsedAsEndEntity"),
            want_verifications: 4,
            want_cached: 3,
        },
        Case {
            name: "the same chain plus an unused certificate is verified",
            chain: vec![alice.clone(), i1.clone(), stranger.der()],
            want: Ok("alice"),
            want_verifications: 5,
            want_cached: 4,
        },
        Case {
            name: "the same leaf without its intermediate is verified and fails",
            chain: vec![alice.clone()],
            want: Err("UnknownIssuer"),
            want_verifications: 6,
            want_cached: 4,
        },
        Case {
            name: "the same failure again is verified again, since failures are not cached",
            chain: vec![alice.clone()],
            want: Err("UnknownIssuer"),
            want_verifications: 7,
            want_cached: 4,
        },
        Case {
            name: "a leaf with the same name signed by another CA is verified and fails",
            chain: vec![stranger_alice.clone(), i1.clone()],
            want: Err("UnknownIssuer"),
            want_verifications: 8,
            want_cached: 4,
        },
        Case {
            name: "garbage is rejected before path building and not cached",
            chain: vec![CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])],
            want: Err("Chain("),
            want_verifications: 8,
            want_cached: 4,
        },
        Case {
            name: "the first chain is still served from the cache",
            chain: vec![alice.clone(), i1.clone()],
            want: Ok("alice"),
            want_verifications: 8,
            want_cached: 4,
        },
    ];
    let bundle = root.bundle();
    for case in cases {
        let verifications =
            check_verification(case.name, &bundle, &root, &case.chain, now, case.want);
        assert_eq!(
            verifications, case.want_verifications,
            "{}: verifications",
            case.name
        );
        assert_eq!(
            bundle.cached_chains(),
            case.want_cached,
            "{}: cached",
            case.name
        );
    }
}

#[test]
fn a_cached_chain_is_verified_again_and_rejected_once_a_certificate_of_its_path_expires() {
    struct Case {
        name: &'static str,
        chain: fn(&Validities) -> Vec<CertificateDer<'static>>,
        now: UnixTime,
        /// The common name, or a fragment of the error.
        want: Result<&'static str, &'static str>,
        want_verifications: usize,
    }
    /// A leaf valid 2020–2030 under an intermediate valid 2020–2025, and a leaf valid 2020–2023 from the root.
    struct Validities {
        through_short_intermediate: Vec<CertificateDer<'static>>,
        short_leaf: Vec<CertificateDer<'static>>,
    }
    let root = Ca::new("expiry-root");
    let intermediate = root.intermediate_with(
        "expiry-intermediate",
        KeyPair::generate().expect("key"),
        Some((2020, 2025)),
    );
    let mut through_short_intermediate = intermediate.leaf(
        "carol",
        Leaf {
            valid_years: Some((2020, 2030)),
            ..Leaf::default()
        },
    );
    through_short_intermediate.push(intermediate.der());
    let chains = Validities {
        through_short_intermediate,
        short_leaf: root.leaf(
            "dave",
            Leaf {
                valid_years: Some((2020, 2023)),
                ..Leaf::default()
            },
        ),
    };
    let cases = [
        Case {
            name: "verified while every certificate is valid",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2022, 1, 1, 0),
            want: Ok("carol"),
            want_verifications: 1,
        },
        Case {
            name: "reused later while the intermediate is still valid",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2024, 6, 1, 0),
            want: Ok("carol"),
            want_verifications: 1,
        },
        Case {
            name: "reused at the intermediate's notAfter, which webpki still accepts",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2025, 1, 1, 0),
            want: Ok("carol"),
            want_verifications: 1,
        },
        Case {
            name: "verified again and rejected a second after the intermediate expired, though the leaf is valid",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2025, 1, 1, 1),
            want: Err("CertExpired"),
            want_verifications: 2,
        },
        Case {
            name: "rejected again later, since the failure was not cached",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2026, 1, 1, 0),
            want: Err("CertExpired"),
            want_verifications: 3,
        },
        Case {
            name: "verified again at an earlier time, as the stale entry was dropped",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2024, 1, 1, 0),
            want: Ok("carol"),
            want_verifications: 4,
        },
        Case {
            name: "verified again and rejected before the notBefore",
            chain: |c| c.through_short_intermediate.clone(),
            now: day(2019, 12, 31, 0),
            want: Err("CertNotValidYet"),
            want_verifications: 5,
        },
        Case {
            name: "a short-lived leaf is verified",
            chain: |c| c.short_leaf.clone(),
            now: day(2022, 1, 1, 0),
            want: Ok("dave"),
            want_verifications: 6,
        },
        Case {
            name: "a short-lived leaf is reused until its notAfter",
            chain: |c| c.short_leaf.clone(),
            now: day(2023, 1, 1, 0),
            want: Ok("dave"),
            want_verifications: 6,
        },
        Case {
            name: "a short-lived leaf is verified again and rejected after its notAfter",
            chain: |c| c.short_leaf.clone(),
            now: day(2023, 1, 1, 1),
            want: Err("CertExpired"),
            want_verifications: 7,
        },
    ];
    let bundle = root.bundle();
    for case in cases {
        let chain = (case.chain)(&chains);
        let verifications =
            check_verification(case.name, &bundle, &root, &chain, case.now, case.want);
        assert_eq!(
            verifications, case.want_verifications,
            "{}: verifications",
            case.name
        );
    }
}

#[test]
fn clones_share_the_cache_and_a_bundle_parsed_again_starts_empty() {
    let root = Ca::new("reload-root");
    let chain = root.client("front-proxy-client");
    let now = day(2030, 1, 1, 0);
    let bundle = root.bundle();
    bundle.verify_client(&chain, now).expect("verified");
    let clone = bundle.clone();
    clone.verify_client(&chain, now).expect("verified");
    assert_eq!(
        clone.verifications(),
        1,
        "a clone is served from the shared cache"
    );

    let reloaded = CaBundle::from_pem(root.pem().as_bytes()).expect("bundle");
    reloaded.verify_client(&chain, now).expect("verified");
    assert_eq!(
        reloaded.verifications(),
        1,
        "a reloaded bundle verifies again"
    );
    assert_eq!(
        bundle.verifications(),
        1,
        "and does not touch the old cache"
    );

    let rotated = Ca::new("reload-root-2").bundle();
    let got = verified(rotated.verify_client(&chain, now));
    assert!(
        got.as_ref()
            .is_err_and(|error| error.contains("UnknownIssuer")),
        "a bundle without the old CA rejects a chain the old bundle cached: {got:?}"
    );
}

#[tokio::test]
async fn a_swapped_trust_stops_trusting_a_removed_ca_on_the_next_request() {
    let pki = Pki::new();
    let store = Arc::new(ArcSwap::from_pointee(pki.trust()));
    let authn = DelegatingAuthenticator::new(
        store.clone(),
        TokenReviewer::new(unreachable_api(), Duration::from_secs(10)),
    );
    let chain = pki.front_proxy.client("front-proxy-client");
    let proxied = [("X-Remote-User", "alice")];
    for attempt in ["first", "cached"] {
        let got = outcome(authenticate(&authn, &chain, &proxied).await);
        assert_eq!(
            got,
            Ok(Some(user("alice", &["system:authenticated"]))),
            "{attempt}"
        );
    }
    let mut rotated = pki.trust();
    if let Some(front_proxy) = &mut rotated.front_proxy {
        front_proxy.ca = Ca::new("front-proxy-ca-2").bundle();
    }
    store.store(Arc::new(rotated));
    let got = outcome(authenticate(&authn, &chain, &proxied).await);
    assert_eq!(got, Err("Unauthorized".to_owned()), "after the rotation");
}

#[test]
fn many_requests_over_a_few_chains_verify_each_chain_once() {
    let pki = Pki::new();
    let intermediate = pki.client.intermediate("kubernetes-intermediate");
    let mut through_intermediate = intermediate.client("carol");
    through_intermediate.push(intermediate.der());
    let chains = [
        pki.client.client("front-proxy-client"),
        pki.client.client("bob"),
        through_intermediate,
    ];
    let bundle = pki.client.bundle();
    let now = day(2030, 1, 1, 0);
    for request in 0..500 {
        // Each request sees its own clone, as each reads a snapshot of the trust store.
        let snapshot = bundle.clone();
        snapshot
            .verify_client(&chains[request % chains.len()], now)
            .expect("verified");
    }
    assert_eq!(bundle.verifications(), chains.len());
}

/// Prints the cost of `verify_client` without and with a cached result (debug build: compare the two, not the
/// absolute values). Run with `cargo test --lib verify_client_cost -- --ignored --nocapture`.
#[test]
#[ignore = "prints timings; run by hand"]
fn verify_client_cost_cold_and_cached() {
    const COLD: usize = 200;
    const CACHED: usize = 20_000;
    let root = Ca::new("bench-root");
    let intermediate = root.intermediate("bench-intermediate");
    let mut through_intermediate = intermediate.client("carol");
    through_intermediate.push(intermediate.der());
    let now = day(2030, 1, 1, 0);
    for (name, chain) in [
        ("leaf only", root.client("front-proxy-client")),
        ("leaf + intermediate", through_intermediate),
    ] {
        let fresh: Vec<CaBundle> = (0..COLD).map(|_| root.bundle()).collect();
        let start = std::time::Instant::now();
        for bundle in &fresh {
            bundle.verify_client(&chain, now).expect("verified");
        }
        let cold = start.elapsed().as_secs_f64() * 1e6 / COLD as f64;
        let bundle = root.bundle();
        bundle.verify_client(&chain, now).expect("verified");
        let start = std::time::Instant::now();
        for _ in 0..CACHED {
            bundle.verify_client(&chain, now).expect("verified");
        }
        let cached = start.elapsed().as_secs_f64() * 1e6 / CACHED as f64;
        assert_eq!(
            bundle.verifications(),
            1,
            "{name}: every timed call was a hit"
        );
        println!("{name}: cold {cold:.1} µs, cached {cached:.1} µs per verify_client");
    }
}

// === bearer tokens ===

#[test]
fn bearer_tokens_are_read_as_the_apiserver_reads_them() {
    let cases: [(&str, Option<&str>); 7] = [
        ("Bearer abc", Some("abc")),
        ("bearer abc", Some("abc")),
        ("  BEARER abc  ", Some("abc")),
        ("Bearer a b", Some("a")),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
    ];
    for (value, want) in cases {
        let map = headers(&[("authorization", value)]);
        assert_eq!(bearer_token(&map), want, "{value:?}");
    }
    assert_eq!(bearer_token(&http::HeaderMap::new()), None, "no header");
}

#[tokio::test]
async fn bearer_token_is_reviewed_and_the_review_user_returned() {
    let (client, seen) = fake_api(token_review_answer);
    let authn = authenticator(Trust::default(), client, Duration::from_secs(10));
    let got = authenticate(&authn, &[], &[("Authorization", "Bearer good-token")])
        .await
        .expect("authenticated");
    let want = UserInfo {
        name: "alice".to_owned(),
        uid: "u-1".to_owned(),
        groups: vec!["dev".to_owned(), "system:authenticated".to_owned()],
        extra: BTreeMap::from([("scopes".to_owned(), vec!["a".to_owned(), "b".to_owned()])]),
    };
    assert_eq!(got, Some(want));
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0]
            .path_and_query
            .starts_with("/apis/authentication.k8s.io/v1/tokenreviews"),
        "{seen:?}"
    );
    assert_eq!(seen[0].body["kind"], "TokenReview");
    assert_eq!(seen[0].body["spec"]["token"], "good-token");
}

#[tokio::test]
async fn rejected_token_is_unauthorized_and_a_failed_review_is_an_error() {
    let (client, _) = fake_api(token_review_answer);
    let authn = authenticator(Trust::default(), client, Duration::from_secs(10));
    let rejected = authenticate(&authn, &[], &[("Authorization", "Bearer bad-token")]).await;
    assert!(matches!(rejected, Err(Error::Unauthorized)), "{rejected:?}");
    let failed = authenticate(&authn, &[], &[("Authorization", "Bearer broken-token")]).await;
    assert!(matches!(failed, Err(Error::Review(_))), "{failed:?}");
}

#[tokio::test]
async fn valid_token_wins_over_an_untrusted_certificate() {
    let pki = Pki::new();
    let (client, _) = fake_api(token_review_answer);
    let authn = authenticator(pki.trust(), client, Duration::from_secs(10));
    let chain = pki.stranger.client("whoever");
    let got = authenticate(&authn, &chain, &[("Authorization", "Bearer good-token")])
        .await
        .expect("token");
    assert_eq!(got.map(|u| u.name), Some("alice".to_owned()));
}

#[tokio::test]
async fn concurrent_identical_tokens_share_one_review() {
    let (client, seen) = fake_api(token_review_answer);
    let authn = Arc::new(authenticator(
        Trust::default(),
        client,
        Duration::from_secs(60),
    ));
    let calls = (0..200).map(|_| {
        let authn = authn.clone();
        tokio::spawn(async move {
            authenticate(&*authn, &[], &[("Authorization", "Bearer good-token")]).await
        })
    });
    for call in futures::future::join_all(calls).await {
        let user = call.expect("task").expect("authenticated").expect("user");
        assert_eq!(user.name, "alice");
    }
    assert_eq!(seen.lock().expect("log").len(), 1);
}

#[tokio::test]
async fn token_results_expire_after_the_ttl_but_review_failures_are_not_cached() {
    let (client, seen) = fake_api(token_review_answer);
    let authn = authenticator(Trust::default(), client, Duration::from_millis(50));
    let count = || seen.lock().expect("log").len();
    authenticate(&authn, &[], &[("Authorization", "Bearer good-token")])
        .await
        .expect("first");
    assert_eq!(count(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    authenticate(&authn, &[], &[("Authorization", "Bearer good-token")])
        .await
        .expect("second");
    assert_eq!(count(), 2, "an expired result is reviewed again");

    let (client, seen) = fake_api(token_review_answer);
    let authn = authenticator(Trust::default(), client, Duration::from_secs(3600));
    for _ in 0..2 {
        let failed = authenticate(&authn, &[], &[("Authorization", "Bearer broken-token")]).await;
        assert!(matches!(failed, Err(Error::Review(_))), "{failed:?}");
    }
    assert_eq!(
        seen.lock().expect("log").len(),
        2,
        "failures are retried, not cached"
    );
}

// === subject access reviews ===

fn sar_answer(request: &Seen) -> Reply {
    let user = request.body["spec"]["user"].as_str().unwrap_or_default();
    let status = match user {
        "alice" => json!({"allowed": true, "reason": "RBAC: allowed"}),
        "broken" => {
            return Reply::Json(
                500,
                json!({"kind": "Status", "code": 500, "message": "boom"}),
            );
        }
        _ => json!({"allowed": false, "reason": "no RBAC policy matched"}),
    };
    Reply::Json(
        201,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "status": status}),
    )
}

fn list_pods(namespace: &str) -> Attributes {
    Attributes::Resource {
        verb: "list".to_owned(),
        group: "metrics.k8s.io".to_owned(),
        version: "v1beta1".to_owned(),
        resource: "pods".to_owned(),
        namespace: Some(namespace.to_owned()),
        name: None,
    }
}

fn ttls(allowed_ms: u64, denied_ms: u64) -> DecisionTtls {
    DecisionTtls {
        allowed: Duration::from_millis(allowed_ms),
        denied: Duration::from_millis(denied_ms),
    }
}

#[tokio::test]
async fn resource_review_carries_the_user_and_resource_attributes() {
    let (client, seen) = fake_api(sar_answer);
    let authz = SubjectAccessReviewer::new(client, ttls(10_000, 10_000));
    let alice = UserInfo {
        name: "alice".to_owned(),
        uid: "u-1".to_owned(),
        groups: vec!["dev".to_owned()],
        extra: BTreeMap::from([("scopes".to_owned(), vec!["view".to_owned()])]),
    };
    let attributes = Attributes::Resource {
        verb: "get".to_owned(),
        group: "metrics.k8s.io".to_owned(),
        version: "v1beta1".to_owned(),
        resource: "pods".to_owned(),
        namespace: Some("kube-system".to_owned()),
        name: Some("coredns-1".to_owned()),
    };
    assert_eq!(
        authz.authorize(&alice, &attributes).await.expect("review"),
        Decision::Allow
    );
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0]
            .path_and_query
            .starts_with("/apis/authorization.k8s.io/v1/subjectaccessreviews"),
        "{seen:?}"
    );
    let spec = &seen[0].body["spec"];
    assert_eq!(spec["user"], "alice");
    assert_eq!(spec["uid"], "u-1");
    assert_eq!(spec["groups"], json!(["dev"]));
    assert_eq!(spec["extra"], json!({"scopes": ["view"]}));
    assert_eq!(
        spec["resourceAttributes"],
        json!({"verb": "get", "group": "metrics.k8s.io", "version": "v1beta1", "resource": "pods",
               "namespace": "kube-system", "name": "coredns-1"})
    );
    assert!(spec.get("nonResourceAttributes").is_none(), "{spec}");
}

#[tokio::test]
async fn non_resource_review_is_denied_with_the_reviewer_reason() {
    let (client, seen) = fake_api(sar_answer);
    let authz = SubjectAccessReviewer::new(client, ttls(10_000, 10_000));
    let anonymous = user("system:anonymous", &["system:unauthenticated"]);
    let attributes = Attributes::NonResource {
        verb: "get".to_owned(),
        path: "/metrics".to_owned(),
    };
    let decision = authz
        .authorize(&anonymous, &attributes)
        .await
        .expect("review");
    assert_eq!(
        decision,
        Decision::Deny {
            reason: "no RBAC policy matched".to_owned()
        }
    );
    let spec = seen.lock().expect("log")[0].body["spec"].clone();
    assert_eq!(spec["user"], "system:anonymous");
    assert_eq!(spec["groups"], json!(["system:unauthenticated"]));
    assert_eq!(
        spec["nonResourceAttributes"],
        json!({"path": "/metrics", "verb": "get"})
    );
    assert!(spec.get("resourceAttributes").is_none(), "{spec}");
    assert!(
        spec.get("uid").is_none() && spec.get("extra").is_none(),
        "empty fields are left out: {spec}"
    );
}

#[tokio::test]
async fn system_masters_are_allowed_without_a_review() {
    let authz = SubjectAccessReviewer::new(unreachable_api(), ttls(10_000, 10_000));
    let aggregator = user("system:kube-aggregator", &["system:masters"]);
    assert_eq!(
        authz
            .authorize(&aggregator, &list_pods("default"))
            .await
            .expect("local"),
        Decision::Allow
    );
}

#[tokio::test]
async fn failed_review_is_an_error_and_not_cached() {
    let (client, seen) = fake_api(sar_answer);
    let authz = SubjectAccessReviewer::new(client, ttls(3_600_000, 3_600_000));
    for _ in 0..2 {
        let got = authz
            .authorize(&user("broken", &[]), &list_pods("default"))
            .await;
        assert!(matches!(got, Err(Error::Review(_))), "{got:?}");
    }
    assert_eq!(seen.lock().expect("log").len(), 2);
}

#[tokio::test]
async fn concurrent_identical_reviews_share_one_request() {
    let (client, seen) = fake_api(sar_answer);
    let authz = Arc::new(SubjectAccessReviewer::new(client, ttls(60_000, 60_000)));
    let calls = (0..200).map(|_| {
        let authz = authz.clone();
        tokio::spawn(async move {
            authz
                .authorize(&user("alice", &["dev"]), &list_pods("default"))
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        assert_eq!(call.expect("task").expect("review"), Decision::Allow);
    }
    assert_eq!(seen.lock().expect("log").len(), 1);
    // A different namespace is a different question.
    authz
        .authorize(&user("alice", &["dev"]), &list_pods("other"))
        .await
        .expect("review");
    assert_eq!(seen.lock().expect("log").len(), 2);
}

#[tokio::test]
async fn allowed_and_denied_decisions_expire_after_their_own_ttls() {
    struct Case {
        name: &'static str,
        ttls: DecisionTtls,
        user: &'static str,
        reviews_after_expiry_window: usize,
    }
    let cases = [
        Case {
            name: "short allow TTL re-reviews an allow",
            ttls: ttls(50, 3_600_000),
            user: "alice",
            reviews_after_expiry_window: 2,
        },
        Case {
            name: "long deny TTL keeps a deny",
            ttls: ttls(50, 3_600_000),
            user: "bob",
            reviews_after_expiry_window: 1,
        },
        Case {
            name: "long allow TTL keeps an allow",
            ttls: ttls(3_600_000, 50),
            user: "alice",
            reviews_after_expiry_window: 1,
        },
        Case {
            name: "short deny TTL re-reviews a deny",
            ttls: ttls(3_600_000, 50),
            user: "bob",
            reviews_after_expiry_window: 2,
        },
    ];
    for case in cases {
        let (client, seen) = fake_api(sar_answer);
        let authz = SubjectAccessReviewer::new(client, case.ttls);
        let subject = user(case.user, &[]);
        let first = authz
            .authorize(&subject, &list_pods("default"))
            .await
            .expect("review");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = authz
            .authorize(&subject, &list_pods("default"))
            .await
            .expect("review");
        assert_eq!(first, second, "{}", case.name);
        assert_eq!(
            seen.lock().expect("log").len(),
            case.reviews_after_expiry_window,
            "{}",
            case.name
        );
    }
}

// === ConfigMap ===

fn configmap_data(pki: &Pki) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("client-ca-file".to_owned(), pki.client.pem()),
        (
            "requestheader-client-ca-file".to_owned(),
            pki.front_proxy.pem(),
        ),
        (
            "requestheader-allowed-names".to_owned(),
            r#"["front-proxy-client"]"#.to_owned(),
        ),
        (
            "requestheader-username-headers".to_owned(),
            r#"["X-Remote-User"]"#.to_owned(),
        ),
        (
            "requestheader-group-headers".to_owned(),
            r#"["X-Remote-Group"]"#.to_owned(),
        ),
        (
            "requestheader-extra-headers-prefix".to_owned(),
            r#"["X-Remote-Extra-"]"#.to_owned(),
        ),
    ])
}

#[test]
fn configmap_keys_become_requestheader_settings() {
    let pki = Pki::new();
    let trust = parse_configmap(&configmap_data(&pki)).expect("valid");
    let front_proxy = trust.front_proxy.expect("requestheader configured");
    assert_eq!(front_proxy.allowed_names, ["front-proxy-client"]);
    assert_eq!(front_proxy.username_headers, ["X-Remote-User"]);
    assert_eq!(front_proxy.group_headers, ["X-Remote-Group"]);
    assert_eq!(front_proxy.extra_header_prefixes, ["X-Remote-Extra-"]);
    assert!(front_proxy.uid_headers.is_empty());
    assert!(front_proxy.ca.same_as(&pki.front_proxy.bundle()));
    assert!(
        trust
            .client_ca
            .expect("client CA")
            .same_as(&pki.client.bundle())
    );
}

#[test]
fn configmap_problems_name_the_key_or_disable_the_method() {
    let pki = Pki::new();
    let mut no_requestheader = configmap_data(&pki);
    no_requestheader.remove("requestheader-client-ca-file");
    let trust = parse_configmap(&no_requestheader).expect("valid");
    assert!(trust.front_proxy.is_none() && trust.client_ca.is_some());

    let mut bad_list = configmap_data(&pki);
    bad_list.insert(
        "requestheader-allowed-names".to_owned(),
        "front-proxy-client".to_owned(),
    );
    assert!(matches!(
        parse_configmap(&bad_list),
        Err(ConfigMapError::List {
            key: "requestheader-allowed-names",
            ..
        })
    ));

    let mut bad_pem = configmap_data(&pki);
    bad_pem.insert("client-ca-file".to_owned(), "garbage".to_owned());
    assert!(matches!(
        parse_configmap(&bad_pem),
        Err(ConfigMapError::Bundle {
            key: "client-ca-file",
            ..
        })
    ));

    assert!(
        parse_configmap(&BTreeMap::new())
            .expect("empty is valid")
            .front_proxy
            .is_none()
    );

    let mut null_list = configmap_data(&pki);
    null_list.insert("requestheader-allowed-names".to_owned(), "null".to_owned());
    let front_proxy = parse_configmap(&null_list)
        .expect("null is an empty list")
        .front_proxy;
    assert!(
        front_proxy
            .expect("requestheader configured")
            .allowed_names
            .is_empty()
    );
}

fn configmap_json(data: &BTreeMap<String, String>, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": delegated::CONFIGMAP_NAME, "namespace": delegated::CONFIGMAP_NAMESPACE,
                     "resourceVersion": resource_version},
        "data": data,
    })
}

fn args(extra: &[&str]) -> Args {
    Args::parse_from(std::iter::once("resource-metrics-server").chain(extra.iter().copied()))
}

/// Serves the ConfigMap by GET and LIST; the first watch delivers `update` (when given), later watches hang.
fn configmap_api(
    initial: BTreeMap<String, String>,
    update: Option<BTreeMap<String, String>>,
) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let watches = Mutex::new(0usize);
    fake_api(move |request| {
        let path = &request.path_and_query;
        if !path.starts_with("/api/v1/namespaces/kube-system/configmaps") {
            return Reply::Json(404, json!({"kind": "Status", "code": 404}));
        }
        if path.contains("watch=true") {
            let mut count = watches.lock().expect("watches");
            *count += 1;
            return match (&update, *count) {
                (Some(data), 1) => Reply::Stream(format!(
                    "{}\n",
                    json!({"type": "MODIFIED", "object": configmap_json(data, "2")})
                )),
                _ => Reply::Hang,
            };
        }
        if path.contains("fieldSelector") {
            let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"},
                              "items": [configmap_json(&initial, "1")]});
            return Reply::Json(200, list);
        }
        Reply::Json(200, configmap_json(&initial, "1"))
    })
}

#[tokio::test]
async fn build_reads_the_configmap_follows_ca_rotation_and_stops_on_shutdown() {
    let logs = Captured::default();
    let _guard = logs.install();
    let pki = Pki::new();
    let rotated = Ca::new("front-proxy-ca-2");
    let mut update = configmap_data(&pki);
    update.insert("requestheader-client-ca-file".to_owned(), rotated.pem());
    let (client, _) = configmap_api(configmap_data(&pki), Some(update));
    let (trigger, shutdown) = crate::shutdown::channel();
    let delegated = delegated::build(&args(&[]), client, shutdown)
        .await
        .expect("built");

    let old_chain = pki.front_proxy.client("front-proxy-client");
    let new_chain = rotated.client("front-proxy-client");
    let header = [("X-Remote-User", "alice")];
    let mut rotated_seen = false;
    // Bounded wait for the watch event to land (each step yields to the refresh task).
    for _ in 0..200 {
        if authenticate(&*delegated.authenticator, &new_chain, &header)
            .await
            .is_ok()
        {
            rotated_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rotated_seen,
        "the rotated requestheader CA is trusted after the watch event"
    );
    let old = authenticate(&*delegated.authenticator, &old_chain, &header).await;
    assert!(
        matches!(old, Err(Error::Unauthorized)),
        "the old CA is no longer trusted: {old:?}"
    );
    let client_cert = pki.client.client("bob");
    let bob = authenticate(&*delegated.authenticator, &client_cert, &[])
        .await
        .expect("client CA");
    assert_eq!(bob.map(|u| u.name), Some("bob".to_owned()));
    assert!(
        logs.text()
            .contains("source=ConfigMap kube-system/extension-apiserver-authentication"),
        "{}",
        logs.text()
    );
    assert!(
        logs.text().contains("front-proxy-client"),
        "allowed names are logged: {}",
        logs.text()
    );

    trigger.fire();
    let mut stopped = false;
    for _ in 0..200 {
        if logs.text().contains("authentication trust refresh stopped") {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stopped, "the refresh task ends on shutdown");
}

#[tokio::test]
async fn unreadable_configmap_fails_startup_unless_tolerated() {
    let forbidden = || {
        fake_api(|_| {
            Reply::Json(
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                       "message": "configmaps \"extension-apiserver-authentication\" is forbidden"}),
            )
        })
    };
    let (_trigger, shutdown) = crate::shutdown::channel();
    let (client, _) = forbidden();
    let error = delegated::build(&args(&[]), client, shutdown.clone())
        .await
        .err()
        .expect("startup error");
    assert!(
        matches!(&error, Error::Setup(m) if m.contains("extension-apiserver-authentication-reader")),
        "{error}"
    );

    let (client, _) = forbidden();
    let tolerated = delegated::build(
        &args(&["--authentication-tolerate-lookup-failure"]),
        client,
        shutdown,
    )
    .await;
    let delegated = tolerated.expect("tolerated");
    let pki = Pki::new();
    let chain = pki.front_proxy.client("front-proxy-client");
    let got = authenticate(
        &*delegated.authenticator,
        &chain,
        &[("X-Remote-User", "alice")],
    )
    .await;
    assert!(
        matches!(got, Ok(None)),
        "no CA configured: the certificate is ignored: {got:?}"
    );
}

#[tokio::test]
async fn flag_files_are_used_without_a_lookup_when_skipped() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy_ca = dir.path().join("front-proxy-ca.crt");
    std::fs::write(&proxy_ca, pki.front_proxy.pem()).expect("write");
    let (client, seen) = fake_api(|_| Reply::Json(500, json!({})));
    let (_trigger, shutdown) = crate::shutdown::channel();
    let flags = [
        "--authentication-skip-lookup",
        "--requestheader-client-ca-file",
        proxy_ca.to_str().expect("utf-8 path"),
        "--requestheader-allowed-names=aggregator",
        "--requestheader-username-headers=X-User",
    ];
    let delegated = delegated::build(&args(&flags), client, shutdown)
        .await
        .expect("built");
    let chain = pki.front_proxy.client("aggregator");
    let got = authenticate(
        &*delegated.authenticator,
        &chain,
        &[("X-User", "frank"), ("X-Remote-User", "nope")],
    )
    .await;
    assert_eq!(
        got.expect("authenticated"),
        Some(user("frank", &["system:authenticated"]))
    );
    assert!(seen.lock().expect("log").is_empty(), "no ConfigMap lookup");

    let missing = args(&[
        "--authentication-skip-lookup",
        "--client-ca-file",
        "/nonexistent/ca.crt",
    ]);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let error = delegated::build(&missing, unreachable_api(), shutdown)
        .await
        .err()
        .expect("missing file");
    assert!(
        matches!(&error, Error::Setup(m) if m.contains("--client-ca-file")),
        "{error}"
    );
}

#[tokio::test]
async fn absurd_cache_ttls_are_clamped_instead_of_panicking() {
    let (client, seen) = fake_api(|request| {
        if request.path_and_query.contains("tokenreviews") {
            token_review_answer(request)
        } else {
            sar_answer(request)
        }
    });
    let reviewer = TokenReviewer::new(client.clone(), Duration::MAX);
    assert!(
        reviewer
            .review("good-token")
            .await
            .expect("review")
            .is_some()
    );
    let authz = SubjectAccessReviewer::new(
        client,
        DecisionTtls {
            allowed: Duration::MAX,
            denied: Duration::MAX,
        },
    );
    let decision = authz
        .authorize(&user("alice", &[]), &list_pods("default"))
        .await;
    assert_eq!(decision.expect("review"), Decision::Allow);
    assert_eq!(seen.lock().expect("log").len(), 2);
}

// === logging ===

/// A log sink for one test: everything logged at any level while the guard lives.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

#[tokio::test]
async fn rejected_proxy_requests_warn_once_per_interval_with_the_reason() {
    let logs = Captured::default();
    let _guard = logs.install();
    let pki = Pki::new();
    let authn = authenticator(pki.trust(), unreachable_api(), Duration::from_secs(10));
    let chain = pki.stranger.client("front-proxy-client");
    for _ in 0..3 {
        let got = authenticate(&authn, &chain, &[("X-Remote-User", "alice")]).await;
        assert!(matches!(got, Err(Error::Unauthorized)), "{got:?}");
    }
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" WARN "))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("not trusted by the requestheader CA"),
        "{text}"
    );
    assert!(
        warnings[0].contains("CN=stranger"),
        "names the issuer: {text}"
    );
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (client, _) = fake_api(token_review_answer);
    let authn = authenticator(Trust::default(), client, Duration::from_secs(10));
    for token in ["good-token", "bad-token", "broken-token"] {
        let header = format!("Bearer {token}");
        let _ = authenticate(&authn, &[], &[("Authorization", header.as_str())]).await;
    }
    let text = logs.text();
    assert!(!text.is_empty(), "something was logged at trace level");
    for token in ["good-token", "bad-token", "broken-token"] {
        assert!(!text.contains(token), "{token} leaked: {text}");
    }
}
