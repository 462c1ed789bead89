//! `Status` bodies for the responses the server itself produces before routing (401, 403, 413, 429, 500), in the
//! byte layout the apiserver writes (field order `kind, apiVersion, metadata, status, message, reason, details,
//! code`), and the apiserver's forbidden-message forms.
//!
//! API errors (404, 405, 406, ...) are the `api` module's; this file must not answer for them.

use serde::Serialize;

use crate::auth::{Attributes, UserInfo};

/// A response produced by the server: status code, headers and a `Status` JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResponse {
    /// HTTP status code.
    pub code: u16,
    /// Extra headers besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The serialised `Status`.
    pub body: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

/// `StatusDetails`; empty fields are omitted as Go's `omitempty` does, so all-empty details print as `{}`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

fn body(code: u16, reason: &'static str, message: &str, details: Option<Details<'_>>) -> Vec<u8> {
    let status = Status {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Failure",
        message,
        reason,
        details,
        code,
    };
    // Serialising plain strings and integers into a Vec cannot fail.
    serde_json::to_vec(&status).unwrap_or_default()
}

/// 401 for invalid credentials: message `Unauthorized`, no details.
pub fn unauthorized() -> StatusResponse {
    StatusResponse {
        code: 401,
        headers: Vec::new(),
        body: body(401, "Unauthorized", "Unauthorized", None),
    }
}

/// 429 when `--max-requests-inflight` is exhausted, with `Retry-After: 1` as the apiserver sends.
pub fn too_many_requests() -> StatusResponse {
    StatusResponse {
        code: 429,
        headers: vec![("retry-after", "1".to_owned())],
        body: body(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(Details {
                retry_after_seconds: Some(1),
                ..Details::default()
            }),
        ),
    }
}

/// 413 for a declared request body above the cap (only GETs are served; bodies are never read).
pub fn body_too_large(limit_bytes: u64) -> StatusResponse {
    let message = format!("the request body is too large: the limit is {limit_bytes} bytes");
    StatusResponse {
        code: 413,
        headers: Vec::new(),
        body: body(413, "RequestEntityTooLarge", &message, None),
    }
}

/// 500 when an authorization review could not be completed (the apiserver's `Internal Server Error: "<uri>": <err>`).
pub fn internal_error(request_uri: &str, error: &str) -> StatusResponse {
    let message = sanitize(&format!("Internal Server Error: {request_uri:?}: {error}"));
    StatusResponse {
        code: 500,
        headers: Vec::new(),
        body: body(500, "InternalError", &message, None),
    }
}

/// 403 with the apiserver's message for `user` doing `attributes`, the reviewer's `reason` appended after `: `.
pub fn forbidden(user: &UserInfo, attributes: &Attributes, reason: &str) -> StatusResponse {
    let (message, details) = forbidden_message(user, attributes, reason);
    StatusResponse {
        code: 403,
        headers: Vec::new(),
        body: body(403, "Forbidden", &message, Some(details)),
    }
}

/// The apiserver's `forbiddenMessage` wrapped by `NewForbidden`.
fn forbidden_message<'a>(
    user: &UserInfo,
    attributes: &'a Attributes,
    reason: &str,
) -> (String, Details<'a>) {
    let with_reason = |msg: String| {
        let msg = sanitize(&msg);
        if reason.is_empty() {
            msg
        } else {
            format!("{msg}: {reason}")
        }
    };
    let name = &user.name;
    match attributes {
        Attributes::NonResource { verb, path } => {
            let err = with_reason(format!("User {name:?} cannot {verb} path {path:?}"));
            (format!("forbidden: {err}"), Details::default())
        }
        Attributes::Resource {
            verb,
            group,
            resource,
            namespace,
            name: object,
            ..
        } => {
            let scope = match namespace {
                Some(ns) if !ns.is_empty() => format!("in the namespace {ns:?}"),
                _ => "at the cluster scope".to_owned(),
            };
            let err = with_reason(format!(
                "User {name:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}"
            ));
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let object = object.as_deref().unwrap_or("");
            let message = if qualified.is_empty() {
                format!("forbidden: {err}")
            } else if object.is_empty() {
                format!("{qualified} is forbidden: {err}")
            } else {
                format!("{qualified} {object:?} is forbidden: {err}")
            };
            (
                message,
                Details {
                    name: object,
                    group,
                    kind: resource,
                    retry_after_seconds: None,
                },
            )
        }
    }
}

/// The apiserver's HTML-escaping sanitizer for messages that echo request data.
fn sanitize(message: &str) -> String {
    message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            ..UserInfo::default()
        }
    }

    fn resource(
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        Attributes::Resource {
            verb: verb.to_owned(),
            group: "metrics.k8s.io".to_owned(),
            version: "v1beta1".to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn forbidden_bodies_match_the_apiserver() {
        let cases = [
            (
                "cluster-scoped list",
                resource("list", "nodes", None, None),
                "",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope","reason":"Forbidden","details":{"group":"metrics.k8s.io","kind":"nodes"},"code":403}"#,
            ),
            (
                "named get",
                resource("get", "nodes", None, Some("node-a")),
                "",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes.metrics.k8s.io \"node-a\" is forbidden: User \"alice\" cannot get resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope","reason":"Forbidden","details":{"name":"node-a","group":"metrics.k8s.io","kind":"nodes"},"code":403}"#,
            ),
            (
                "namespaced list with a reason",
                resource("list", "pods", Some("ns"), None),
                "no RBAC policy matched",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"ns\": no RBAC policy matched","reason":"Forbidden","details":{"group":"metrics.k8s.io","kind":"pods"},"code":403}"#,
            ),
            (
                "non-resource path",
                Attributes::NonResource {
                    verb: "get".to_owned(),
                    path: "/metrics".to_owned(),
                },
                "",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"alice\" cannot get path \"/metrics\"","reason":"Forbidden","details":{},"code":403}"#,
            ),
        ];
        for (name, attributes, reason, want) in cases {
            let got = forbidden(&user("alice"), &attributes, reason);
            assert_eq!(got.code, 403, "{name}");
            assert_eq!(String::from_utf8(got.body).expect("UTF-8"), want, "{name}");
        }
    }

    #[test]
    fn unauthorized_and_throttled_bodies_match_the_apiserver() {
        let cases = [
            (
                "unauthorized",
                unauthorized(),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
            ),
            (
                "too many requests",
                too_many_requests(),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#,
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(String::from_utf8(got.body).expect("UTF-8"), want, "{name}");
        }
    }

    #[test]
    fn echoed_request_data_is_escaped() {
        let got = forbidden(
            &user("<script>"),
            &Attributes::NonResource {
                verb: "get".into(),
                path: "/a&b".into(),
            },
            "",
        );
        let text = String::from_utf8(got.body).expect("UTF-8");
        assert!(
            text.contains(r#"User \"&lt;script&gt;\" cannot get path \"/a&amp;b\""#),
            "{text}"
        );
    }
}
