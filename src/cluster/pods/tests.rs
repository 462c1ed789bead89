#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

use super::*;

fn meta(
    namespace: Option<&str>,
    name: Option<&str>,
    labels: &[(&str, &str)],
) -> PartialObjectMeta<Pod> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    PartialObjectMeta {
        metadata: ObjectMeta {
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(BTreeMap::from([("big".to_owned(), "x".repeat(100))])),
            ..ObjectMeta::default()
        },
        ..PartialObjectMeta::default()
    }
}

#[test]
fn trimming_keeps_namespace_name_and_labels() {
    struct Case {
        name: &'static str,
        input: PartialObjectMeta<Pod>,
        want: Option<(&'static str, &'static str, usize)>,
    }
    let cases = [
        Case {
            name: "a labelled pod keeps its labels",
            input: meta(Some("ns"), Some("p"), &[("app", "web")]),
            want: Some(("ns", "p", 1)),
        },
        Case {
            name: "no labels is an empty map",
            input: meta(Some("ns"), Some("p"), &[]),
            want: Some(("ns", "p", 0)),
        },
        Case {
            name: "a pod without namespace is dropped",
            input: meta(None, Some("p"), &[]),
            want: None,
        },
        Case {
            name: "a pod without name is dropped",
            input: meta(Some("ns"), None, &[]),
            want: None,
        },
    ];
    for case in cases {
        let got = trim_pod(&case.input);
        let got = got
            .as_ref()
            .map(|(ns, name, labels)| (ns.as_str(), name.as_str(), labels.len()));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[tokio::test]
async fn the_watch_lists_running_pods_metadata_only_and_applies_events() {
    use http::{Request, Response};
    use kube::client::Body;

    use crate::cluster::ClusterView;

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let index = Arc::new(Index::default());
    let (trigger, signal) = crate::shutdown::channel();
    let task = tokio::spawn(watch(client, index.clone(), signal));
    let timeout = std::time::Duration::from_secs(10);

    let next = tokio::time::timeout(timeout, handle.next_request());
    let (request, respond) = next.await.expect("list request").expect("mock open");
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldSelector=status.phase%3DRunning"),
        "{query}"
    );
    let accept = request
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        accept.contains("as=PartialObjectMetadataList"),
        "metadata only: {accept}"
    );
    let item = |ns: &str, name: &str, rv: &str| {
        serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"namespace": ns, "name": name, "resourceVersion": rv, "labels": {"app": "web"}}
        })
    };
    let list = serde_json::json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"},
        "items": [item("ns", "a", "1"), item("ns", "b", "1")]
    });
    respond.send_response(Response::new(Body::from(list.to_string().into_bytes())));

    let next = tokio::time::timeout(timeout, handle.next_request());
    let (_watch, respond) = next.await.expect("watch request").expect("mock open");
    assert_eq!(
        index.pods(Some("ns")).len(),
        2,
        "the list was applied before watching"
    );
    let events = format!(
        "{}\n{}\n",
        serde_json::json!({"type": "ADDED", "object": item("other", "c", "2")}),
        serde_json::json!({"type": "DELETED", "object": item("ns", "a", "3")}),
    );
    respond.send_response(Response::new(Body::from(events.into_bytes())));

    let deadline = tokio::time::Instant::now() + timeout;
    while index.pod("ns", "a").is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pods: Vec<String> = index
        .pods(None)
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(pods, ["ns/b", "other/c"]);
    assert_eq!(
        index
            .pod("ns", "b")
            .and_then(|p| p.labels.get("app").map(str::to_owned))
            .as_deref(),
        Some("web")
    );
    trigger.fire();
    task.await.expect("watch stops on shutdown");
}
