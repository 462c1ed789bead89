#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which invariant broke.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
};
use kube::api::ObjectMeta;

use super::*;

fn options(types: &[&str], use_status_port: bool) -> TargetOptions {
    TargetOptions {
        preferred_address_types: types.iter().map(|t| (*t).to_owned()).collect(),
        kubelet_port: 10250,
        use_node_status_port: use_status_port,
    }
}

/// A Node fixture that reads as prose: `node("n1").internal_ip("10.0.0.1").ready()`.
struct NodeFixture(Node);

fn node(name: &str) -> NodeFixture {
    NodeFixture(Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus::default()),
        ..Node::default()
    })
}

impl NodeFixture {
    fn status(&mut self) -> &mut NodeStatus {
        self.0.status.get_or_insert_with(NodeStatus::default)
    }
    fn address(mut self, type_: &str, address: &str) -> Self {
        let addresses = self.status().addresses.get_or_insert_with(Vec::new);
        addresses.push(NodeAddress {
            type_: type_.to_owned(),
            address: address.to_owned(),
        });
        self
    }
    fn internal_ip(self, address: &str) -> Self {
        self.address("InternalIP", address)
    }
    fn condition(mut self, type_: &str, status: &str) -> Self {
        let conditions = self.status().conditions.get_or_insert_with(Vec::new);
        conditions.push(NodeCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            ..NodeCondition::default()
        });
        self
    }
    fn ready(self) -> Self {
        self.condition("Ready", "True")
    }
    fn status_port(mut self, port: i32) -> Self {
        self.status().daemon_endpoints = Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port }),
        });
        self
    }
    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }
    fn resource_version(mut self, version: &str) -> Self {
        self.0.metadata.resource_version = Some(version.to_owned());
        self
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }
}

#[test]
fn trimming_picks_address_port_path_and_readiness() {
    struct Case {
        name: &'static str,
        node: NodeFixture,
        options: TargetOptions,
        want: Option<(&'static str, u16, &'static str, bool)>,
    }
    let all = [
        "Hostname",
        "InternalDNS",
        "InternalIP",
        "ExternalDNS",
        "ExternalIP",
    ];
    let cases = [
        Case {
            name: "first matching type wins over address order",
            node: node("n")
                .address("ExternalIP", "1.2.3.4")
                .internal_ip("10.0.0.1")
                .ready(),
            options: options(&["InternalIP", "ExternalIP"], false),
            want: Some(("10.0.0.1", 10250, "/metrics/resource", true)),
        },
        Case {
            name: "first address of the matching type wins",
            node: node("n").internal_ip("10.0.0.1").internal_ip("10.0.0.2"),
            options: options(&all, false),
            want: Some(("10.0.0.1", 10250, "/metrics/resource", false)),
        },
        Case {
            name: "hostname is preferred by the binary default",
            node: node("n")
                .internal_ip("10.0.0.1")
                .address("Hostname", "node-a"),
            options: options(&all, false),
            want: Some(("node-a", 10250, "/metrics/resource", false)),
        },
        Case {
            name: "no address of a preferred type gives no target",
            node: node("n").address("ExternalIP", "1.2.3.4"),
            options: options(&["InternalIP"], false),
            want: None,
        },
        Case {
            name: "node status port is used when asked and non-zero",
            node: node("n").internal_ip("fd00::1").status_port(10255),
            options: options(&all, true),
            want: Some(("fd00::1", 10255, "/metrics/resource", false)),
        },
        Case {
            name: "zero node status port falls back to the flag",
            node: node("n").internal_ip("10.0.0.1").status_port(0),
            options: options(&all, true),
            want: Some(("10.0.0.1", 10250, "/metrics/resource", false)),
        },
        Case {
            name: "node status port is ignored unless asked",
            node: node("n").internal_ip("10.0.0.1").status_port(10255),
            options: options(&all, false),
            want: Some(("10.0.0.1", 10250, "/metrics/resource", false)),
        },
        Case {
            name: "annotation overrides the path",
            node: node("n")
                .internal_ip("10.0.0.1")
                .annotation(METRICS_PATH_ANNOTATION, "/metrics/nodes/n/metrics/resource"),
            options: options(&all, false),
            want: Some((
                "10.0.0.1",
                10250,
                "/metrics/nodes/n/metrics/resource",
                false,
            )),
        },
        Case {
            name: "ready false is not ready",
            node: node("n")
                .internal_ip("10.0.0.1")
                .condition("MemoryPressure", "True")
                .condition("Ready", "False"),
            options: options(&all, false),
            want: Some(("10.0.0.1", 10250, "/metrics/resource", false)),
        },
    ];
    for case in cases {
        let info = trim_node(&case.node.0, &case.options);
        assert_eq!(&*info.name, "n", "{}", case.name);
        let got = info
            .target
            .as_ref()
            .map(|t| (t.host.as_str(), t.port, t.path.as_str(), t.ready));
        assert_eq!(got, case.want, "{}", case.name);
        if let Some(target) = &info.target {
            assert!(
                Arc::ptr_eq(&target.node, &info.name),
                "{}: the target shares the interned name",
                case.name
            );
        }
    }
}

#[test]
fn trimming_keeps_labels_and_drops_everything_else() {
    let info = trim_node(
        &node("n")
            .label("zone", "a")
            .annotation("big", "x")
            .internal_ip("10.0.0.1")
            .0,
        &options(&["InternalIP"], false),
    );
    assert_eq!(info.labels.get("zone"), Some("a"));
    assert_eq!(info.labels.len(), 1);
}

/// Drives `watch` against a mocked API server: one list, then one watch answering with `events`.
mod watch_stream {
    use http::{Request, Response};
    use k8s_openapi::List;
    use kube::client::Body;

    use super::*;
    use crate::cluster::ClusterView;

    async fn next_request(
        handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), handle.next_request());
        next.await
            .expect("the watch sends a request")
            .expect("mock is open")
    }

    #[tokio::test]
    async fn the_list_syncs_the_index_and_watch_events_apply_and_delete() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let index = Arc::new(Index::default());
        let (trigger, signal) = crate::shutdown::channel();
        let task = tokio::spawn(watch(
            client,
            index.clone(),
            options(&["InternalIP"], false),
            signal,
        ));

        let (request, respond) = next_request(&mut handle).await;
        assert!(
            request.uri().path().ends_with("/api/v1/nodes"),
            "{}",
            request.uri()
        );
        let mut list = List::<Node>::default();
        list.metadata.resource_version = Some("1".to_owned());
        list.items = vec![node("b").internal_ip("10.0.0.2").0, node("a").0];
        respond.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).expect("json"),
        )));

        let (request, respond) = next_request(&mut handle).await;
        assert!(
            request
                .uri()
                .query()
                .unwrap_or_default()
                .contains("watch=true"),
            "{}",
            request.uri()
        );
        assert!(
            index.node("a").is_some() && index.node("b").is_some(),
            "the list was applied before watching"
        );
        let added = serde_json::json!({"type": "ADDED", "object": node("c").internal_ip("10.0.0.3").resource_version("2").0});
        let deleted =
            serde_json::json!({"type": "DELETED", "object": node("b").resource_version("3").0});
        let events = format!("{added}\n{deleted}\n");
        respond.send_response(Response::new(Body::from(events.into_bytes())));

        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while index.node("b").is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let names: Vec<String> = index.nodes().iter().map(|n| n.name.to_string()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(
            index.node("a").is_some_and(|n| n.target.is_none()),
            "a has no InternalIP"
        );
        trigger.fire();
        task.await.expect("watch stops on shutdown");
    }
}
