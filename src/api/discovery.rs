//! Discovery documents: `/apis` (legacy `APIGroupList` or aggregated `APIGroupDiscoveryList`),
//! `/apis/metrics.k8s.io` (`APIGroup`) and `/apis/metrics.k8s.io/<version>` (`APIResourceList`).
//!
//! The documents never change, so they are rendered once in [`Discovery::new`] with their `ETag`s. Versions are
//! listed in preference order (v1 first). This module must not read metrics or the cluster: the aggregator's
//! availability check must succeed before any metrics exist.

use sha2::{Digest, Sha256};

use super::negotiate::{self, DiscoveryFormat, DiscoveryVersion};
use super::route::GroupVersion;
use crate::api::ApiResponse;

/// Pre-rendered discovery documents.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    group_list: Document,
    group: Document,
    resource_lists: [Document; 2],
    aggregated: [Document; 2],
}

/// A fixed JSON document and its strong `ETag` (the quoted SHA-256 of the body).
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// The JSON body.
    pub(crate) body: Vec<u8>,
    /// `"<hex sha256>"`.
    pub(crate) etag: String,
}

/// The group's resources: (resource, kind, namespaced).
const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

// === impl Document ===

impl Document {
    /// Wraps a body and computes its `ETag`.
    pub(crate) fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let mut etag = String::with_capacity(66);
        etag.push('"');
        for byte in digest {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            etag.push(char::from(HEX[usize::from(byte >> 4)]));
            etag.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        etag.push('"');
        Document { body, etag }
    }
}

// === impl Discovery ===

impl Discovery {
    /// Renders every document.
    pub(crate) fn new() -> Self {
        Discovery {
            group_list: Document::new(
                [br#"{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"metrics.k8s.io","#.as_slice(), &versions_fields(), b"}]}"]
                    .concat(),
            ),
            group: Document::new(
                [br#"{"kind":"APIGroup","apiVersion":"v1","name":"metrics.k8s.io","#.as_slice(), &versions_fields(), b"}"].concat(),
            ),
            resource_lists: GroupVersion::ALL.map(|v| Document::new(resource_list(v))),
            aggregated: [DiscoveryVersion::V2, DiscoveryVersion::V2beta1].map(|v| Document::new(aggregated(v))),
        }
    }

    /// `GET /apis`: aggregated in the version the client offered first, legacy otherwise; `Vary: Accept` and
    /// `ETag` on both.
    pub(crate) fn apis(&self, format: DiscoveryFormat) -> ApiResponse {
        let (document, content_type) = match format {
            DiscoveryFormat::Legacy => (&self.group_list, negotiate::JSON),
            DiscoveryFormat::Aggregated(v) => {
                let index = match v {
                    DiscoveryVersion::V2 => 0,
                    DiscoveryVersion::V2beta1 => 1,
                };
                (&self.aggregated[index], v.content_type())
            }
        };
        ApiResponse {
            status: 200,
            content_type: content_type.to_owned(),
            headers: vec![
                ("Vary", "Accept".to_owned()),
                ("ETag", document.etag.clone()),
            ],
            body: document.body.clone(),
        }
    }

    /// `GET /apis/metrics.k8s.io`.
    pub(crate) fn group(&self) -> ApiResponse {
        plain(&self.group)
    }

    /// `GET /apis/metrics.k8s.io/<version>`.
    pub(crate) fn resource_list(&self, version: GroupVersion) -> ApiResponse {
        plain(&self.resource_lists[version.index()])
    }
}

/// A 200 `application/json` response with the document's `ETag`.
pub(crate) fn plain(document: &Document) -> ApiResponse {
    ApiResponse {
        status: 200,
        content_type: negotiate::JSON.to_owned(),
        headers: vec![("ETag", document.etag.clone())],
        body: document.body.clone(),
    }
}

/// `"versions":[…],"preferredVersion":{…}` shared by `APIGroupList` and `APIGroup`.
fn versions_fields() -> Vec<u8> {
    let mut out = b"\"versions\":[".to_vec();
    for (i, version) in GroupVersion::ALL.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_group_version(&mut out, *version);
    }
    out.extend_from_slice(b"],\"preferredVersion\":");
    push_group_version(&mut out, GroupVersion::ALL[0]);
    out
}

fn push_group_version(out: &mut Vec<u8>, version: GroupVersion) {
    out.extend_from_slice(b"{\"groupVersion\":\"");
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(b"\",\"version\":\"");
    out.extend_from_slice(version.as_str().as_bytes());
    out.extend_from_slice(b"\"}");
}

fn resource_list(version: GroupVersion) -> Vec<u8> {
    let mut out = br#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":""#.to_vec();
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(b"\",\"resources\":[");
    for (i, (resource, kind, namespaced)) in RESOURCES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(resource.as_bytes());
        out.extend_from_slice(b"\",\"singularName\":\"\",\"namespaced\":");
        out.extend_from_slice(if *namespaced { b"true" } else { b"false" });
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"verbs\":[\"get\",\"list\"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn aggregated(version: DiscoveryVersion) -> Vec<u8> {
    let mut out = br#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/"#.to_vec();
    out.extend_from_slice(version.as_str().as_bytes());
    out.extend_from_slice(
        br#"","metadata":{},"items":[{"metadata":{"name":"metrics.k8s.io"},"versions":["#,
    );
    for (i, group_version) in GroupVersion::ALL.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"version\":\"");
        out.extend_from_slice(group_version.as_str().as_bytes());
        out.extend_from_slice(b"\",\"resources\":[");
        for (j, (resource, kind, namespaced)) in RESOURCES.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"resource\":\"");
            out.extend_from_slice(resource.as_bytes());
            out.extend_from_slice(
                b"\",\"responseKind\":{\"group\":\"\",\"version\":\"\",\"kind\":\"",
            );
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\"},\"scope\":\"");
            out.extend_from_slice(if *namespaced {
                b"Namespaced"
            } else {
                b"Cluster"
            });
            out.extend_from_slice(b"\",\"singularResource\":\"\",\"verbs\":[\"get\",\"list\"]}");
        }
        out.extend_from_slice(b"],\"freshness\":\"Current\"}");
    }
    out.extend_from_slice(b"]}]}");
    out
}
