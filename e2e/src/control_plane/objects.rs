//! Kubernetes wire shapes of the fake API server: Node, Pod, ConfigMap, their lists, PartialObjectMetadata,
//! Tables (what `kubectl get` prints), watch events and Status errors.
//!
//! Pure rendering from model snapshots to `serde_json::Value`; it must not do I/O or read the clock (callers pass
//! `now_ms` for ages).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::{Node, Pod, PodPhase};

/// Kubernetes version reported by `/version` and in node info.
pub const KUBERNETES_VERSION: &str = "v1.33.1";

/// A ConfigMap the fake serves (only `kube-system/extension-apiserver-authentication` in practice).
#[derive(Debug, Clone)]
pub struct ConfigMap {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `data`.
    pub data: BTreeMap<String, String>,
}

/// RFC 3339 UTC timestamp with whole seconds, as `metav1.Time` serialises.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// kubectl's `HumanDuration`-style age (`45s`, `3m10s`, `5h`, `2d3h`).
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 if s % 60 != 0 => format!("{}m{}s", s / 60, s % 60),
        120..10_800 => format!("{}m", s / 60),
        10_800..28_800 if (s / 60) % 60 != 0 => format!("{}h{}m", s / 3600, (s / 60) % 60),
        10_800..172_800 => format!("{}h", s / 3600),
        172_800..691_200 if (s / 3600) % 24 != 0 => format!("{}d{}h", s / 86_400, (s / 3600) % 24),
        _ => format!("{}d", s / 86_400),
    }
}

fn quantity_millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

fn quantity_bytes(b: u64) -> String {
    if b.is_multiple_of(1 << 30) {
        format!("{}Gi", b >> 30)
    } else if b.is_multiple_of(1 << 20) {
        format!("{}Mi", b >> 20)
    } else if b.is_multiple_of(1024) {
        format!("{}Ki", b >> 10)
    } else {
        b.to_string()
    }
}

fn phase(p: PodPhase) -> &'static str {
    match p {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
    }
}

/// The value of a supported field-selector field of a pod.
pub fn pod_field(pod: &Pod, field: &str) -> String {
    match field {
        "metadata.name" => pod.spec.name.clone(),
        "metadata.namespace" => pod.spec.namespace.clone(),
        "spec.nodeName" => pod.spec.node.clone(),
        "status.phase" => phase(pod.spec.phase).to_owned(),
        _ => String::new(),
    }
}

/// Field-selector fields pods support here.
pub const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

/// Field-selector fields nodes support here.
pub const NODE_FIELDS: &[&str] = &["metadata.name"];

/// Field-selector fields ConfigMaps support here.
pub const CONFIGMAP_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

fn node_metadata(node: &Node) -> Value {
    json!({
        "name": node.spec.name,
        "uid": node.uid,
        "resourceVersion": node.resource_version.to_string(),
        "creationTimestamp": rfc3339(node.created_ms),
        "labels": node.spec.labels,
    })
}

fn pod_metadata(pod: &Pod) -> Value {
    json!({
        "name": pod.spec.name,
        "namespace": pod.spec.namespace,
        "uid": pod.uid,
        "resourceVersion": pod.resource_version.to_string(),
        "creationTimestamp": rfc3339(pod.created_ms),
        "labels": pod.spec.labels,
    })
}

fn configmap_metadata(cm: &ConfigMap) -> Value {
    json!({
        "name": cm.name,
        "namespace": cm.namespace,
        "uid": format!("00000000-0000-4000-8000-{:012x}", cm.name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) & 0xffff_ffff_ffff),
        "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    })
}

/// A full Node object.
pub fn node_json(node: &Node) -> Value {
    let s = &node.spec;
    let address = s.address.map(|a| a.to_string()).unwrap_or_default();
    let resources = |cpu: u64, mem: u64| json!({"cpu": quantity_millicores(cpu), "memory": quantity_bytes(mem), "pods": "110", "ephemeral-storage": "100Gi"});
    let mut node_info = json!({
        "kubeletVersion": KUBERNETES_VERSION,
        "kubeProxyVersion": KUBERNETES_VERSION,
        "operatingSystem": "linux",
        "architecture": "amd64",
        "containerRuntimeVersion": "containerd://2.0.0",
        "kernelVersion": "6.1.0",
        "osImage": "e2e fake node",
        "machineID": node.uid,
        "systemUUID": node.uid,
        "bootID": node.uid,
    });
    if let Some(swap) = s.swap_capacity_bytes {
        node_info["swap"] = json!({"capacity": swap});
    }
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": node_metadata(node),
        "spec": {},
        "status": {
            "capacity": resources(s.cpu_capacity_millicores, s.memory_capacity_bytes),
            "allocatable": resources(s.cpu_allocatable_millicores, s.memory_allocatable_bytes),
            "conditions": [{
                "type": "Ready",
                "status": if s.ready { "True" } else { "False" },
                "reason": if s.ready { "KubeletReady" } else { "KubeletNotReady" },
                "message": if s.ready { "kubelet is posting ready status" } else { "fake node marked NotReady" },
                "lastHeartbeatTime": rfc3339(node.created_ms),
                "lastTransitionTime": rfc3339(node.created_ms),
            }],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": s.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": s.kubelet_port}},
            "nodeInfo": node_info,
        },
    })
}

/// A full Pod object.
pub fn pod_json(pod: &Pod) -> Value {
    let s = &pod.spec;
    let containers: Vec<Value> = s
        .containers
        .iter()
        .map(|c| {
            let mut requests = serde_json::Map::new();
            if let Some(cpu) = c.cpu_request_millicores {
                requests.insert("cpu".into(), json!(quantity_millicores(cpu)));
            }
            if let Some(mem) = c.memory_request_bytes {
                requests.insert("memory".into(), json!(quantity_bytes(mem)));
            }
            json!({"name": c.name, "image": format!("registry.example/{}:1", c.name), "resources": {"requests": requests}})
        })
        .collect();
    let running = s.phase == PodPhase::Running;
    let statuses: Vec<Value> = s
        .containers
        .iter()
        .zip(&pod.container_statuses)
        .map(|(c, st)| {
            let state = if running {
                json!({"running": {"startedAt": rfc3339(st.started_ms)}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            json!({
                "name": c.name,
                "ready": running && s.ready,
                "restartCount": st.restart_count,
                "started": running,
                "image": format!("registry.example/{}:1", c.name),
                "imageID": "",
                "state": state,
            })
        })
        .collect();
    let ready = if running && s.ready { "True" } else { "False" };
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": pod_metadata(pod),
        "spec": {"nodeName": s.node, "containers": containers},
        "status": {
            "phase": phase(s.phase),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(pod.created_ms)},
                {"type": "Ready", "status": ready, "lastTransitionTime": rfc3339(pod.started_ms)},
            ],
            "startTime": rfc3339(pod.started_ms),
            "containerStatuses": statuses,
        },
    })
}

/// A full ConfigMap object.
pub fn configmap_json(cm: &ConfigMap) -> Value {
    json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": configmap_metadata(cm), "data": cm.data})
}

/// `PartialObjectMetadata` of any object rendered by this module.
pub fn metadata_only(full: &Value, version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": full["metadata"]})
}

/// A list of full objects.
pub fn list(kind: &str, resource_version: u64, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": resource_version.to_string()}, "items": items})
}

/// A `PartialObjectMetadataList`.
pub fn metadata_list(version: &str, resource_version: u64, items: &[Value]) -> Value {
    let items: Vec<Value> = items.iter().map(|i| metadata_only(i, version)).collect();
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items,
    })
}

fn column(name: &str, kind: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

/// A Table of nodes, columns as kube-apiserver prints them (`NAME STATUS ROLES AGE VERSION`).
pub fn node_table(version: &str, resource_version: u64, nodes: &[&Node], now_ms: i64) -> Value {
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let roles = n
                .spec
                .labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect::<Vec<_>>()
                .join(",");
            json!({
                "cells": [
                    n.spec.name,
                    if n.spec.ready { "Ready" } else { "NotReady" },
                    if roles.is_empty() { "<none>".to_owned() } else { roles },
                    age((now_ms - n.created_ms) / 1000),
                    KUBERNETES_VERSION,
                    n.spec.address.map(|a| a.to_string()).unwrap_or_default(),
                ],
                "object": metadata_only(&node_json(n), version),
            })
        })
        .collect();
    table(
        version,
        resource_version,
        vec![
            column(
                "Name",
                "string",
                "name",
                "Name must be unique within a namespace.",
                0,
            ),
            column("Status", "string", "", "The status of the node", 0),
            column("Roles", "string", "", "The roles of the node", 0),
            column(
                "Age",
                "string",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
            column(
                "Version",
                "string",
                "",
                "Kubelet Version reported by the node.",
                0,
            ),
            column(
                "Internal-IP",
                "string",
                "",
                "List of internal IPs for the node.",
                1,
            ),
        ],
        rows,
    )
}

/// A Table of pods (`NAME READY STATUS RESTARTS AGE`, wide adds `IP NODE`).
pub fn pod_table(version: &str, resource_version: u64, pods: &[&Pod], now_ms: i64) -> Value {
    let rows: Vec<Value> = pods
        .iter()
        .map(|p| {
            let total = p.spec.containers.len();
            let ready = if p.spec.phase == PodPhase::Running && p.spec.ready {
                total
            } else {
                0
            };
            let restarts: u32 = p.container_statuses.iter().map(|c| c.restart_count).sum();
            json!({
                "cells": [
                    p.spec.name,
                    format!("{ready}/{total}"),
                    phase(p.spec.phase),
                    restarts.to_string(),
                    age((now_ms - p.created_ms) / 1000),
                    "<none>",
                    p.spec.node,
                ],
                "object": metadata_only(&pod_json(p), version),
            })
        })
        .collect();
    table(
        version,
        resource_version,
        vec![
            column(
                "Name",
                "string",
                "name",
                "Name must be unique within a namespace.",
                0,
            ),
            column(
                "Ready",
                "string",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            column(
                "Status",
                "string",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            column(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted.",
                0,
            ),
            column(
                "Age",
                "string",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
            column("IP", "string", "", "IP address allocated to the pod.", 1),
            column(
                "Node",
                "string",
                "",
                "Name of the Node this pod is bound to.",
                1,
            ),
        ],
        rows,
    )
}

/// A Table of ConfigMaps (`NAME DATA AGE`).
pub fn configmap_table(version: &str, resource_version: u64, cms: &[&ConfigMap]) -> Value {
    let rows: Vec<Value> = cms
        .iter()
        .map(|c| json!({"cells": [c.name, c.data.len(), "1d"], "object": metadata_only(&configmap_json(c), version)}))
        .collect();
    table(
        version,
        resource_version,
        vec![
            column(
                "Name",
                "string",
                "name",
                "Name must be unique within a namespace.",
                0,
            ),
            column(
                "Data",
                "string",
                "",
                "Data contains the configuration data.",
                0,
            ),
            column(
                "Age",
                "string",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
        ],
        rows,
    )
}

fn table(version: &str, resource_version: u64, columns: Vec<Value>, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A `Status` failure body.
pub fn status(code: u16, reason: &str, message: &str, details: Option<(&str, &str)>) -> Value {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some((kind, name)) = details {
        body["details"] = json!({"name": name, "kind": kind});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        struct Case {
            name: &'static str,
            seconds: i64,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "seconds",
                seconds: 45,
                want: "45s",
            },
            Case {
                name: "minutes and seconds",
                seconds: 190,
                want: "3m10s",
            },
            Case {
                name: "whole minutes",
                seconds: 600,
                want: "10m",
            },
            Case {
                name: "hours",
                seconds: 3 * 3600,
                want: "3h",
            },
            Case {
                name: "days and hours",
                seconds: 2 * 86_400 + 3 * 3600,
                want: "2d3h",
            },
        ];
        for case in cases {
            assert_eq!(age(case.seconds), case.want, "{}", case.name);
        }
    }

    #[test]
    fn quantities_use_the_largest_exact_suffix() {
        assert_eq!(quantity_millicores(3800), "3800m");
        assert_eq!(quantity_millicores(4000), "4");
        assert_eq!(quantity_bytes(16 << 30), "16Gi");
        assert_eq!(quantity_bytes(1536 << 20), "1536Mi");
        assert_eq!(rfc3339(1_750_705_768_415), "2025-06-23T19:09:28Z");
    }
}
