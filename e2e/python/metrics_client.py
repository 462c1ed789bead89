"""Reads the metrics API the way Python consumers do, for the e2e tests.

Usage: metrics_client.py KUBECONFIG MODE [ARGS...]
  custom-nodes                 CustomObjectsApi list of nodes (no discovery)
  custom-node NAME             CustomObjectsApi get of one node
  custom-pods NAMESPACE [SEL]  CustomObjectsApi namespaced pod list, optional label selector
  dynamic-nodes CACHE_FILE     DynamicClient: discovery, then list NodeMetrics
Prints one JSON document on stdout: {"status": <http status or 200>, "items": [...]} or {"status": N, "error": "..."}.
"""
import json
import sys

from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException


def main() -> int:
    kubeconfig, mode, *args = sys.argv[1:]
    api_client = config.new_client_from_config(config_file=kubeconfig)
    try:
        if mode == "custom-nodes":
            body = client.CustomObjectsApi(api_client).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        elif mode == "custom-node":
            body = client.CustomObjectsApi(api_client).get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", args[0])
        elif mode == "custom-pods":
            kwargs = {"label_selector": args[1]} if len(args) > 1 else {}
            body = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", args[0], "pods", **kwargs
            )
        elif mode == "dynamic-nodes":
            dyn = dynamic.DynamicClient(api_client, cache_file=args[0])
            resource = dyn.resources.get(api_version="metrics.k8s.io/v1beta1", kind="NodeMetrics")
            body = resource.get().to_dict()
        else:
            print(json.dumps({"status": 0, "error": f"unknown mode {mode}"}))
            return 2
    except ApiException as e:
        print(json.dumps({"status": e.status, "error": e.reason}))
        return 0
    items = body.get("items", [body]) if isinstance(body, dict) else []
    print(json.dumps({"status": 200, "items": items}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
