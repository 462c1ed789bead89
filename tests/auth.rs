//! Delegated auth through its public API, as the server uses it: `delegated::build` against a fake API server,
//! then authenticate → authorize for an aggregator-proxied request, an anonymous request and a kubeconfig-selected
//! review client on a loopback HTTP fake.

#![allow(
    clippy::expect_used,
    reason = "test fixtures panic with a message when they cannot be built"
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use resource_metrics_server::auth::delegated::{self, Delegated};
use resource_metrics_server::auth::{Attributes, Credentials, Decision, Error, UserInfo};
use resource_metrics_server::config::Args;
use resource_metrics_server::shutdown;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};

/// A CA and a client certificate it issued.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
}

fn pki(ca_name: &str, leaf_cn: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf_params.distinguished_name = DistinguishedName::new();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, leaf_cn);
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf_params
        .signed_by(&KeyPair::generate().expect("key"), &ca)
        .expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
    }
}

fn args(flags: &[&str]) -> Args {
    Args::parse_from(std::iter::once("resource-metrics-server").chain(flags.iter().copied()))
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_str(value).expect("value"),
            )
        })
        .collect()
}

/// SAR bodies the fake API server received.
type Reviews = Arc<Mutex<Vec<Value>>>;

/// A SubjectAccessReview answer: only `alice` may do anything.
fn sar_status(review: &Value) -> Value {
    let allowed = review["spec"]["user"] == "alice";
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "status": {"allowed": allowed, "reason": if allowed { "" } else { "not alice" }}})
}

/// A kube client on a tower-test mock that serves the authentication ConfigMap (GET and LIST; watches stay open)
/// and answers SubjectAccessReviews with [`sar_status`].
fn fake_cluster(configmap: BTreeMap<String, String>) -> (kube::Client, Reviews) {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let reviews = Reviews::default();
    let log = reviews.clone();
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let body = request.into_body().collect_bytes().await.expect("body");
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system",
                             "resourceVersion": "1"},
                "data": configmap});
            let answer = if path.contains("watch=true") {
                open_watches.push(send);
                continue;
            } else if path.starts_with("/apis/authorization.k8s.io/v1/subjectaccessreviews") {
                let review: Value = serde_json::from_slice(&body).expect("review json");
                let answer = sar_status(&review);
                log.lock().expect("log").push(review);
                answer
            } else if path.contains("fieldSelector") {
                json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"},
                       "items": [object]})
            } else {
                object
            };
            let response = http::Response::builder()
                .status(if path.contains("reviews") { 201 } else { 200 })
                .header("content-type", "application/json")
                .body(kube::client::Body::from(answer.to_string().into_bytes()))
                .expect("response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), reviews)
}

fn list_nodes() -> Attributes {
    Attributes::Resource {
        verb: "list".to_owned(),
        group: "metrics.k8s.io".to_owned(),
        version: "v1beta1".to_owned(),
        resource: "nodes".to_owned(),
        namespace: None,
        name: None,
    }
}

#[tokio::test]
async fn aggregator_request_is_authenticated_from_headers_and_authorized_by_review() {
    let proxy = pki("front-proxy-ca", "front-proxy-client");
    let configmap = BTreeMap::from([
        (
            "requestheader-client-ca-file".to_owned(),
            proxy.ca_pem.clone(),
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
    ]);
    let (client, reviews) = fake_cluster(configmap);
    let (trigger, signal) = shutdown::channel();
    let Delegated {
        authenticator,
        authorizer,
    } = delegated::build(&args(&[]), client, signal)
        .await
        .expect("built");

    let request = headers(&[
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "system:authenticated"),
    ]);
    let chain = [proxy.leaf.clone()];
    let user = authenticator
        .authenticate(Credentials {
            headers: &request,
            peer_certificates: &chain,
        })
        .await
        .expect("authenticated")
        .expect("a user");
    assert_eq!(user.name, "alice");
    assert_eq!(
        authorizer
            .authorize(&user, &list_nodes())
            .await
            .expect("review"),
        Decision::Allow
    );

    // The same headers from a client without the proxy certificate are not trusted: anonymous.
    let anonymous = authenticator
        .authenticate(Credentials {
            headers: &request,
            peer_certificates: &[],
        })
        .await
        .expect("no error");
    assert_eq!(anonymous, None);
    let metrics = Attributes::NonResource {
        verb: "get".to_owned(),
        path: "/metrics".to_owned(),
    };
    let decision = authorizer
        .authorize(&UserInfo::anonymous(), &metrics)
        .await
        .expect("review");
    assert_eq!(
        decision,
        Decision::Deny {
            reason: "not alice".to_owned()
        }
    );

    let reviews = reviews.lock().expect("log").clone();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["spec"]["user"], "alice");
    assert_eq!(
        reviews[0]["spec"]["resourceAttributes"]["resource"],
        "nodes"
    );
    assert_eq!(reviews[1]["spec"]["user"], "system:anonymous");
    assert_eq!(
        reviews[1]["spec"]["groups"],
        json!(["system:unauthenticated"])
    );
    trigger.fire();
}

/// A plain-HTTP fake API server on 127.0.0.1 answering SubjectAccessReviews; returns its URL and the reviews.
async fn loopback_reviewer() -> (String, Reviews) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let reviews = Reviews::default();
    let log = reviews.clone();
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let review: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let answer = sar_status(&review);
                            log.lock().expect("log").push(review);
                            let response = http::Response::builder()
                                .status(201)
                                .header("content-type", "application/json")
                                .body(Full::new(bytes::Bytes::from(answer.to_string())))
                                .expect("response");
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (url, reviews)
}

#[tokio::test]
async fn authorization_kubeconfig_selects_the_review_server() {
    let (url, reviews) = loopback_reviewer().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("authz.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n\
         users:\n- name: u\n  user: {{}}\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
         current-context: ctx\n"
    );
    std::fs::write(&kubeconfig, text).expect("write kubeconfig");
    // The default client must not be used for reviews: its requests all fail.
    let (service, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    drop(handle);
    let default_client = kube::Client::new(service, "default");
    let (_trigger, signal) = shutdown::channel();
    let flags = [
        "--authentication-skip-lookup",
        "--authorization-kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
    ];
    let delegated = delegated::build(&args(&flags), default_client, signal)
        .await
        .expect("built");

    let alice = UserInfo {
        name: "alice".to_owned(),
        ..UserInfo::default()
    };
    assert_eq!(
        delegated
            .authorizer
            .authorize(&alice, &list_nodes())
            .await
            .expect("review"),
        Decision::Allow
    );
    assert_eq!(reviews.lock().expect("log").len(), 1);

    // TokenReviews still go to the default client, which fails: a review error, not a 401.
    let request = headers(&[("Authorization", "Bearer some-token")]);
    let result = delegated
        .authenticator
        .authenticate(Credentials {
            headers: &request,
            peer_certificates: &[],
        })
        .await;
    assert!(matches!(result, Err(Error::Review(_))), "{result:?}");
}
