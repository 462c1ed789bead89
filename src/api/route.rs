//! Paths and query strings: which document or resource a request names, and its list options.
//!
//! Paths are percent-decoded per segment; queries are decoded with form-urlencoded rules (`+` is a space). This
//! module must not read metrics or build bodies.

use std::borrow::Cow;

/// The metrics API group.
pub(crate) const GROUP: &str = "metrics.k8s.io";

/// A served version of `metrics.k8s.io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupVersion {
    /// `metrics.k8s.io/v1` (preferred).
    V1,
    /// `metrics.k8s.io/v1beta1`.
    V1beta1,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/apis`.
    Apis,
    /// `/apis/metrics.k8s.io`.
    Group,
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/apis/metrics.k8s.io/<version>`.
    OpenApiV3(GroupVersion),
    /// `/apis/metrics.k8s.io/<version>`.
    ResourceList(GroupVersion),
    /// `…/nodes` and `…/nodes/<name>`.
    Nodes {
        /// Version from the path.
        version: GroupVersion,
        /// Node name of a get.
        name: Option<Cow<'a, str>>,
    },
    /// `…/pods`, `…/namespaces/<ns>/pods` and `…/namespaces/<ns>/pods/<name>`.
    Pods {
        /// Version from the path.
        version: GroupVersion,
        /// Namespace, `None` for all namespaces.
        namespace: Option<Cow<'a, str>>,
        /// Pod name of a get (always with a namespace).
        name: Option<Cow<'a, str>>,
    },
}

/// The query parameters the API honours (`limit`, `continue`, `resourceVersion`, `timeout` are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Query {
    /// `labelSelector`, decoded.
    pub(crate) label_selector: String,
    /// `fieldSelector`, decoded.
    pub(crate) field_selector: String,
    /// `watch` present with a value other than `false`/`0` (apiserver's `RequestInfo` rule).
    pub(crate) watch: bool,
    /// `includeObject` for Tables.
    pub(crate) include_object: IncludeObject,
}

/// How Table rows carry their object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

// === impl GroupVersion ===

impl GroupVersion {
    /// Served versions in preference order.
    pub(crate) const ALL: [GroupVersion; 2] = [GroupVersion::V1, GroupVersion::V1beta1];

    /// `v1` or `v1beta1`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GroupVersion::V1 => "v1",
            GroupVersion::V1beta1 => "v1beta1",
        }
    }

    /// `metrics.k8s.io/<version>`, the objects' `apiVersion`.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            GroupVersion::V1 => "metrics.k8s.io/v1",
            GroupVersion::V1beta1 => "metrics.k8s.io/v1beta1",
        }
    }

    /// Position in [`GroupVersion::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            GroupVersion::V1 => 0,
            GroupVersion::V1beta1 => 1,
        }
    }

    fn parse(segment: &str) -> Option<Self> {
        GroupVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == segment)
    }
}

// === routing ===

/// Decoded path segments after a leading `/`; `None` when a segment is not valid percent-encoded UTF-8.
pub(crate) fn segments(path: &str) -> Option<Vec<Cow<'_, str>>> {
    let trimmed = path.strip_prefix('/')?;
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    trimmed.split('/').map(percent_decode).collect()
}

/// The route of a path, `None` when the path is not served.
pub(crate) fn route(path: &str) -> Option<Route<'_>> {
    let path = match path.strip_suffix('/') {
        // A trailing slash is tolerated on discovery documents only.
        Some(stripped) if matches!(stripped, "/apis" | "/apis/metrics.k8s.io") => stripped,
        _ => path,
    };
    let segments = segments(path)?;
    let parts: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
    let (version, rest) = match parts.as_slice() {
        ["apis"] => return Some(Route::Apis),
        ["apis", GROUP] => return Some(Route::Group),
        ["openapi", "v2"] => return Some(Route::OpenApiV2),
        ["openapi", "v3"] => return Some(Route::OpenApiV3Index),
        ["openapi", "v3", "apis", GROUP, version] => {
            return GroupVersion::parse(version).map(Route::OpenApiV3);
        }
        ["apis", GROUP, version, rest @ ..] => (GroupVersion::parse(version)?, rest),
        _ => return None,
    };
    let owned = |i: usize| -> Option<Cow<'_, str>> {
        let name = segments.get(i + 3)?.clone();
        (!name.is_empty()).then_some(name)
    };
    Some(match rest {
        [] => Route::ResourceList(version),
        ["nodes"] => Route::Nodes {
            version,
            name: None,
        },
        ["nodes", _] => Route::Nodes {
            version,
            name: Some(owned(1)?),
        },
        ["pods"] => Route::Pods {
            version,
            namespace: None,
            name: None,
        },
        ["namespaces", _, "pods"] => Route::Pods {
            version,
            namespace: Some(owned(1)?),
            name: None,
        },
        ["namespaces", _, "pods", _] => Route::Pods {
            version,
            namespace: Some(owned(1)?),
            name: Some(owned(3)?),
        },
        _ => return None,
    })
}

/// Percent-decodes one path segment; `None` on a bad escape or invalid UTF-8.
fn percent_decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            let high = char::from(hex[0]).to_digit(16)?;
            let low = char::from(hex[1]).to_digit(16)?;
            // Two hex digits are at most 0xff.
            out.push((high * 16 + low) as u8);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

// === impl Query ===

impl Query {
    /// Decodes the options from a raw query string; the first occurrence of a parameter wins.
    pub(crate) fn parse(raw: &str) -> Self {
        let mut query = Query::default();
        let (mut label, mut field, mut watch, mut include) = (false, false, false, false);
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            match key.as_ref() {
                "labelSelector" if !label => {
                    label = true;
                    query.label_selector = value.into_owned();
                }
                "fieldSelector" if !field => {
                    field = true;
                    query.field_selector = value.into_owned();
                }
                "watch" if !watch => {
                    watch = true;
                    query.watch = !matches!(value.to_ascii_lowercase().as_str(), "false" | "0");
                }
                "includeObject" if !include => {
                    include = true;
                    query.include_object = match value.as_ref() {
                        "None" => IncludeObject::None,
                        "Object" => IncludeObject::Object,
                        _ => IncludeObject::Metadata,
                    };
                }
                _ => {}
            }
        }
        query
    }
}

/// Whether a raw query asks for a watch (used for authorization attributes).
pub(crate) fn is_watch(raw: &str) -> bool {
    Query::parse(raw).watch
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        let v1 = GroupVersion::V1;
        let b1 = GroupVersion::V1beta1;
        let some = |s: &'static str| Some(Cow::Borrowed(s));
        let cases: Vec<(&str, &str, Option<Route<'_>>)> = vec![
            ("apis", "/apis", Some(Route::Apis)),
            ("apis with slash", "/apis/", Some(Route::Apis)),
            ("group", "/apis/metrics.k8s.io", Some(Route::Group)),
            (
                "v1 resources",
                "/apis/metrics.k8s.io/v1",
                Some(Route::ResourceList(v1)),
            ),
            (
                "v1beta1 resources",
                "/apis/metrics.k8s.io/v1beta1",
                Some(Route::ResourceList(b1)),
            ),
            (
                "node list",
                "/apis/metrics.k8s.io/v1beta1/nodes",
                Some(Route::Nodes {
                    version: b1,
                    name: None,
                }),
            ),
            (
                "node get",
                "/apis/metrics.k8s.io/v1/nodes/node-a",
                Some(Route::Nodes {
                    version: v1,
                    name: some("node-a"),
                }),
            ),
            (
                "all pods",
                "/apis/metrics.k8s.io/v1/pods",
                Some(Route::Pods {
                    version: v1,
                    namespace: None,
                    name: None,
                }),
            ),
            (
                "namespaced pods",
                "/apis/metrics.k8s.io/v1/namespaces/default/pods",
                Some(Route::Pods {
                    version: v1,
                    namespace: some("default"),
                    name: None,
                }),
            ),
            (
                "pod get",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
                Some(Route::Pods {
                    version: b1,
                    namespace: some("default"),
                    name: some("web-1"),
                }),
            ),
            (
                "percent-encoded name",
                "/apis/metrics.k8s.io/v1/nodes/node%2Da",
                Some(Route::Nodes {
                    version: v1,
                    name: some("node-a"),
                }),
            ),
            ("openapi v2", "/openapi/v2", Some(Route::OpenApiV2)),
            (
                "openapi v3 index",
                "/openapi/v3",
                Some(Route::OpenApiV3Index),
            ),
            (
                "openapi v3 group version",
                "/openapi/v3/apis/metrics.k8s.io/v1beta1",
                Some(Route::OpenApiV3(b1)),
            ),
            ("openapi v3 other group", "/openapi/v3/apis/apps/v1", None),
            ("core api is not ours", "/api", None),
            ("core v1 is not ours", "/api/v1/nodes", None),
            ("unknown version", "/apis/metrics.k8s.io/v2/nodes", None),
            ("unknown resource", "/apis/metrics.k8s.io/v1/services", None),
            (
                "cluster-scoped pod get",
                "/apis/metrics.k8s.io/v1/pods/web-1",
                None,
            ),
            (
                "namespace object",
                "/apis/metrics.k8s.io/v1/namespaces/default",
                None,
            ),
            (
                "subresource",
                "/apis/metrics.k8s.io/v1/nodes/a/status",
                None,
            ),
            ("empty name", "/apis/metrics.k8s.io/v1/nodes/", None),
            ("bad escape", "/apis/metrics.k8s.io/v1/nodes/%zz", None),
            ("other group", "/apis/apps/v1", None),
            ("root", "/", None),
            ("no leading slash", "apis", None),
        ];
        for (name, path, want) in cases {
            assert_eq!(route(path), want, "{name}");
        }
    }

    #[test]
    fn queries_are_form_decoded() {
        let cases: Vec<(&str, &str, Query)> = vec![
            ("empty", "", Query::default()),
            (
                "plus is a space",
                "labelSelector=app+in+%28x%2Cy%29%2C%21legacy%2Ctier%21%3Ddb&limit=500",
                Query {
                    label_selector: "app in (x,y),!legacy,tier!=db".into(),
                    ..Query::default()
                },
            ),
            (
                "field selector",
                "fieldSelector=spec.nodeName%3Dnode-a",
                Query {
                    field_selector: "spec.nodeName=node-a".into(),
                    ..Query::default()
                },
            ),
            (
                "watch true",
                "watch=true",
                Query {
                    watch: true,
                    ..Query::default()
                },
            ),
            (
                "watch 1",
                "watch=1",
                Query {
                    watch: true,
                    ..Query::default()
                },
            ),
            (
                "watch without value",
                "watch",
                Query {
                    watch: true,
                    ..Query::default()
                },
            ),
            ("watch false", "watch=false", Query::default()),
            ("watch 0", "watch=0", Query::default()),
            (
                "include none",
                "includeObject=None",
                Query {
                    include_object: IncludeObject::None,
                    ..Query::default()
                },
            ),
            (
                "include object",
                "includeObject=Object",
                Query {
                    include_object: IncludeObject::Object,
                    ..Query::default()
                },
            ),
            (
                "first occurrence wins",
                "labelSelector=a&labelSelector=b",
                Query {
                    label_selector: "a".into(),
                    ..Query::default()
                },
            ),
        ];
        for (name, raw, want) in cases {
            assert_eq!(Query::parse(raw), want, "{name}");
        }
    }
}
