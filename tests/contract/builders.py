"""Manifests the contract tests create: small, valid on a real cluster, named by the caller."""

from __future__ import annotations

from typing import Any

# A node name no real node has: bound Pods then stay as they are (no kubelet acts on them).
NOWHERE = "contract-nowhere"
# A scheduler no cluster runs: unbound Pods stay unbound until a test binds them.
NO_SCHEDULER = "wasmlet-contract-none"


def pod(name: str, *, node: str | None = NOWHERE, image: str = "registry.example/wasm/app:1.0", **spec: Any) -> dict[str, Any]:
    """A one-container Pod, bound to a node that does not exist, or (`node=None`) left unscheduled."""
    body: dict[str, Any] = {"containers": [{"name": "main", "image": image}], **spec}
    if node is not None:
        body["nodeName"] = node
    else:
        body.setdefault("schedulerName", NO_SCHEDULER)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def configmap(name: str, *, labels: dict[str, str] | None = None, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """A ConfigMap with optional labels, data and other metadata."""
    metadata: dict[str, Any] = {"name": name, **meta}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data or {}}


def node(name: str, **status: Any) -> dict[str, Any]:
    """A Node that no scheduler or DaemonSet will use: unschedulable and tainted like a wasm node."""
    taints = [{"key": "kubernetes.io/arch", "value": "wasm32-wasi", "effect": effect} for effect in ("NoSchedule", "NoExecute")]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "wasmlet-contract"}},
        "spec": {"unschedulable": True, "taints": taints},
        "status": status,
    }


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to `obj`."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}


def widget_crd(group: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A namespaced CRD `widgets.<group>` (v1) with the status and scale subresources, and `schema` if given."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = schema or {
        "type": "object",
        "properties": {
            "spec": {**open_object, "properties": {"replicas": {"type": "integer"}, "mode": {"type": "string", "default": "auto"}}},
            "status": {**open_object, "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wdg"],
                "categories": ["contract"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                }
            ],
        },
    }


def widget(api_version: str, name: str, **spec: Any) -> dict[str, Any]:
    """A Widget custom resource."""
    return {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def service(name: str, selector: dict[str, str] | None, *ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A ClusterIP Service with the given ports (default: one on port 80) selecting `selector` (None: no selector)."""
    body: dict[str, Any] = {"ports": list(ports) or [{"port": 80}], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def backend_pod(name: str, node: str, labels: dict[str, str], *ports: dict[str, Any]) -> dict[str, Any]:
    """A labelled Pod bound to `node` with the given container ports, tolerating every taint.

    The toleration keeps a real cluster's taint-eviction controller away: contract Nodes carry
    NoExecute taints (see `node`), and one without a kubelet turns unreachable in time.
    """
    body = pod(name, node=node, tolerations=[{"operator": "Exists"}])
    body["metadata"]["labels"] = labels
    if ports:
        body["spec"]["containers"][0]["ports"] = list(ports)
    return body


def running_status(ip: str | None, *, ready: bool) -> dict[str, Any]:
    """A running Pod's status as a kubelet reports it, with the Pod's IP (wasm Pods: the Node's) or none yet."""
    status: dict[str, Any] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip is not None:
        status.update(podIP=ip, podIPs=[{"ip": ip}], hostIP=ip, hostIPs=[{"ip": ip}])
    return status
