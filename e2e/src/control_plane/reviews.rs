//! Who is who and who may do what: bearer-token identities (used both to authenticate callers of the fake API
//! server and to answer TokenReviews) and allow/deny rules answering SubjectAccessReviews.
//!
//! Pure decision logic over JSON review bodies; it must not do I/O. Counting happens in the caller.

use serde_json::{Value, json};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `user.username`.
    pub name: String,
    /// `user.uid`.
    pub uid: String,
    /// `user.groups`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with groups (uid derived from the name).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let name = name.into();
        Self {
            uid: format!("uid-{name}"),
            name,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// What a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every user.
    Anyone,
    /// This user name.
    User(String),
    /// Members of this group.
    Group(String),
}

/// One authorization rule; the first rule matching a review decides it, no match means "no opinion" (not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Who.
    pub subject: Subject,
    /// Verbs (`get`, `list`, `watch`, `create`, …); `*` for all.
    pub verbs: Vec<String>,
    /// Resources as `group/resource[/subresource]` (`metrics.k8s.io/pods`, `/nodes/metrics` for the core group);
    /// `*` for all. Empty: resource requests never match.
    pub resources: Vec<String>,
    /// Non-resource paths; a trailing `*` is a prefix match. Empty: path requests never match.
    pub paths: Vec<String>,
    /// Allow (true) or deny (false).
    pub allow: bool,
}

impl Rule {
    /// Allows `subject` everything.
    pub fn allow_all(subject: Subject) -> Self {
        Self {
            subject,
            verbs: vec!["*".into()],
            resources: vec!["*".into()],
            paths: vec!["*".into()],
            allow: true,
        }
    }

    /// Denies `subject` everything.
    pub fn deny_all(subject: Subject) -> Self {
        Self {
            allow: false,
            ..Self::allow_all(subject)
        }
    }

    /// Allows `subject` the verbs on the resources (`group/resource`).
    pub fn allow(subject: Subject, verbs: &[&str], resources: &[&str]) -> Self {
        Self {
            subject,
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
            paths: Vec::new(),
            allow: true,
        }
    }

    /// Denies `subject` the verbs on the resources.
    pub fn deny(subject: Subject, verbs: &[&str], resources: &[&str]) -> Self {
        Self {
            allow: false,
            ..Self::allow(subject, verbs, resources)
        }
    }

    fn applies_to(&self, user: &str, groups: &[String]) -> bool {
        match &self.subject {
            Subject::Anyone => true,
            Subject::User(u) => u == user,
            Subject::Group(g) => groups.iter().any(|x| x == g),
        }
    }
}

/// Answers a TokenReview body given a token lookup.
pub fn token_review(request: &Value, lookup: impl Fn(&str) -> Option<UserInfo>) -> Value {
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let audiences = request["spec"]["audiences"].clone();
    let status = match lookup(token) {
        Some(user) => json!({
            "authenticated": true,
            "user": {"username": user.name, "uid": user.uid, "groups": user.groups},
            "audiences": if audiences.is_null() { json!([]) } else { audiences },
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": request["spec"],
        "status": status,
    })
}

/// Answers a SubjectAccessReview body from `rules`.
pub fn access_review(request: &Value, rules: &[Rule]) -> Value {
    let spec = &request["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (verb, target) = if let Some(attrs) = spec["resourceAttributes"].as_object() {
        let field = |k: &str| {
            attrs
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut resource = format!("{}/{}", field("group"), field("resource"));
        if !field("subresource").is_empty() {
            resource = format!("{resource}/{}", field("subresource"));
        }
        (field("verb"), Target::Resource(resource))
    } else {
        let attrs = &spec["nonResourceAttributes"];
        (
            attrs["verb"].as_str().unwrap_or_default().to_owned(),
            Target::Path(attrs["path"].as_str().unwrap_or_default().to_owned()),
        )
    };
    let decision = rules.iter().find(|rule| {
        rule.applies_to(user, &groups)
            && rule.verbs.iter().any(|v| v == "*" || *v == verb)
            && match &target {
                Target::Resource(r) => rule.resources.iter().any(|x| x == "*" || x == r),
                Target::Path(p) => rule.paths.iter().any(|x| match x.strip_suffix('*') {
                    Some(prefix) => p.starts_with(prefix),
                    None => x == p,
                }),
            }
    });
    let status = match decision {
        Some(rule) if rule.allow => json!({"allowed": true, "reason": "allowed by e2e rule"}),
        Some(_) => json!({"allowed": false, "denied": true, "reason": "denied by e2e rule"}),
        None => json!({"allowed": false, "reason": "no e2e rule matched"}),
    };
    json!({
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    })
}

enum Target {
    Resource(String),
    Path(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sar(user: &str, groups: &[&str], verb: &str, group: &str, resource: &str) -> Value {
        json!({"spec": {"user": user, "groups": groups, "resourceAttributes": {"verb": verb, "group": group, "resource": resource}}})
    }

    #[test]
    fn first_matching_rule_decides_access_reviews() {
        let rules = vec![
            Rule::deny(Subject::User("mallory".into()), &["*"], &["*"]),
            Rule::allow(
                Subject::Group("viewers".into()),
                &["get", "list"],
                &["metrics.k8s.io/pods"],
            ),
            Rule::allow_all(Subject::Group("system:masters".into())),
        ];
        struct Case {
            name: &'static str,
            review: Value,
            allowed: bool,
        }
        let cases = [
            Case {
                name: "viewer lists pod metrics",
                review: sar("v", &["viewers"], "list", "metrics.k8s.io", "pods"),
                allowed: true,
            },
            Case {
                name: "viewer cannot list node metrics",
                review: sar("v", &["viewers"], "list", "metrics.k8s.io", "nodes"),
                allowed: false,
            },
            Case {
                name: "denied user even in masters",
                review: sar("mallory", &["system:masters"], "get", "", "nodes"),
                allowed: false,
            },
            Case {
                name: "masters may do anything",
                review: sar("admin", &["system:masters"], "delete", "", "nodes"),
                allowed: true,
            },
            Case {
                name: "path rules match prefixes",
                review: json!({"spec": {"user": "admin", "groups": ["system:masters"], "nonResourceAttributes": {"verb": "get", "path": "/metrics"}}}),
                allowed: true,
            },
        ];
        for case in cases {
            assert_eq!(
                access_review(&case.review, &rules)["status"]["allowed"],
                case.allowed,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn token_reviews_report_the_mapped_user() {
        let review = json!({"spec": {"token": "t1", "audiences": ["api"]}});
        let answer = token_review(&review, |t| {
            (t == "t1").then(|| UserInfo::new("alice", &["devs"]))
        });
        assert_eq!(answer["status"]["authenticated"], true);
        assert_eq!(answer["status"]["user"]["username"], "alice");
        let answer = token_review(&json!({"spec": {"token": "nope"}}), |_| None);
        assert_eq!(answer["status"]["authenticated"], false);
    }
}
