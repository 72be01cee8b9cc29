"""Pure readers of Pod and Node bodies: the few facts the operator decides on.

Everything here reads Kubernetes JSON as the API returns it and tolerates missing fields (a
Pod the agent has not reported on yet has no status at all).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from wasmlet.api import keys
from wasmlet.api.quantity import parse_quantity

Json = dict[str, Any]
TERMINAL_PHASES = ("Succeeded", "Failed")
# Pod `status.reason`s of a Failed Pod that say the node or the cluster ended it, not the module:
# kubelet eviction and admission rejections (OutOf*), preemption, graceful node shutdown.
DISRUPTION_REASONS = frozenset({
    "Evicted", "Preempting", "NodeShutdown", "Terminated", "Shutdown", "NodeLost", "NodeAffinity",
    "OutOfpods", "OutOfcpu", "OutOfmemory", "UnexpectedAdmissionError",
})


def parse_time(value: str | None) -> datetime.datetime | None:
    """An RFC 3339 timestamp of the API (`2024-05-01T10:00:00Z`) as an aware datetime."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def format_time(value: datetime.datetime) -> str:
    """The API's timestamp format: UTC, whole seconds, `Z`."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- Pods ------------------------------------------------------------------------------------


def pod_name(pod: Mapping[str, Any]) -> str:
    """metadata.name."""
    return str(pod.get("metadata", {}).get("name", ""))


def pod_node(pod: Mapping[str, Any]) -> str | None:
    """spec.nodeName (None while unbound)."""
    return pod.get("spec", {}).get("nodeName") or None


def pod_phase(pod: Mapping[str, Any]) -> str:
    """status.phase; Pending until the agent reports one."""
    return str(pod.get("status", {}).get("phase") or "Pending")


def pod_hash(pod: Mapping[str, Any]) -> str | None:
    """The template hash the Pod was built from (its wasmlet.dev/template-hash label)."""
    return (pod.get("metadata", {}).get("labels") or {}).get(keys.LABEL_TEMPLATE_HASH)


def is_terminating(pod: Mapping[str, Any]) -> bool:
    """Deleted but still there: a bound Pod stays until its node's agent removes it."""
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """Finished for good: Succeeded or Failed never change again."""
    return pod_phase(pod) in TERMINAL_PHASES


def is_active(pod: Mapping[str, Any]) -> bool:
    """Counts as a running replica: neither terminating nor finished (the ReplicaSet's notion)."""
    return not is_terminating(pod) and not is_terminal(pod)


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The Pod's Ready condition is True."""
    return _condition_status(pod.get("status", {}), "Ready") == "True"


def created_at(obj: Mapping[str, Any]) -> float:
    """creationTimestamp as seconds since the epoch (0 when unknown)."""
    stamp = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return stamp.timestamp() if stamp else 0.0


def is_controlled_by(pod: Mapping[str, Any], name: str, uid: str | None) -> bool:
    """Whether the Pod belongs to the workload: its label and its controller reference.

    A Pod left by a deleted workload of the same name (another uid) is not ours, and neither is
    a hand-written Pod that merely carries the label: the operator never adopts orphans, so it
    never deletes a Pod it did not create.
    """
    meta = pod.get("metadata", {})
    if (meta.get("labels") or {}).get(keys.LABEL_WORKLOAD) != name:
        return False
    controllers = [ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")]
    if uid:
        return any(ref.get("uid") == uid for ref in controllers)
    # Without a uid (a manifest never stored by an API server) only the name can tell.
    return all(ref.get("name") == name for ref in controllers)


def is_disrupted(pod: Mapping[str, Any]) -> bool:
    """Failed because of its node or the cluster (evicted, preempted, rejected at admission, node
    shutdown), as the `DisruptionTarget` condition or the kubelet's reason says: such a Pod says
    nothing about the module, so it is replaced even for run-to-completion workloads."""
    if pod_phase(pod) != "Failed":
        return False
    status = pod.get("status") or {}
    return status.get("reason") in DISRUPTION_REASONS or _condition_status(status, "DisruptionTarget") == "True"


def failure(pod: Mapping[str, Any]) -> tuple[str, str]:
    """Why a Failed Pod failed: its `status.reason` (or the container's), and the message."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated and not status.get("reason"):
            code = terminated.get("exitCode")
            return str(terminated.get("reason") or "Error"), str(terminated.get("message") or f"exit code {code}")
    return str(status.get("reason") or "Failed"), str(status.get("message") or "")


def pod_memory_request(pod_spec: Mapping[str, Any]) -> float:
    """The memory a Pod asks of its node, as kube-scheduler counts it: the containers' requests
    (a limit without a request counts as the request, as API defaulting makes it), or the
    largest init container's if more, plus the RuntimeClass overhead."""

    def wanted(container: Mapping[str, Any]) -> float:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get("memory") or (resources.get("limits") or {}).get("memory")
        return _quantity(value)

    total = sum(wanted(c) for c in pod_spec.get("containers") or [])
    init = max((wanted(c) for c in pod_spec.get("initContainers") or []), default=0.0)
    return max(total, init) + _quantity((pod_spec.get("overhead") or {}).get("memory"))


def pod_ports(pod_spec: Mapping[str, Any]) -> frozenset[int]:
    """The node ports a Pod claims: every TCP `containerPort` of its containers. A wasm Pod shares
    its node's network (its IP is the node's), so two Pods holding one port cannot share a node,
    as two Pods with the same hostPort cannot (kube-scheduler's NodePorts)."""
    return frozenset(
        port["containerPort"]
        for container in pod_spec.get("containers") or []
        for port in container.get("ports") or []
        if (port.get("protocol") or "TCP") == "TCP" and isinstance(port.get("containerPort"), int)
    )


def waiting_problem(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first container stuck in a kubelet problem state (reason, message), if any."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PROBLEM_REASONS:
            return str(waiting["reason"]), str(waiting.get("message") or "")
    return None


# The kubelet's waiting reasons that mean "this will not get better by itself".
PROBLEM_REASONS = frozenset({
    "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})


def image_digest(pod: Mapping[str, Any]) -> str | None:
    """The resolved module digest the agent reported (containerStatuses[].imageID)."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        image_id = str(status.get("imageID") or "")
        if "sha256:" in image_id:
            return "sha256:" + image_id.rsplit("sha256:", 1)[1]
    return None


# -- Nodes -----------------------------------------------------------------------------------


def node_name(node: Mapping[str, Any]) -> str:
    """metadata.name."""
    return str(node.get("metadata", {}).get("name", ""))


def node_labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    """metadata.labels (empty when none)."""
    return node.get("metadata", {}).get("labels") or {}


def node_ready(node: Mapping[str, Any]) -> bool:
    """The Node's Ready condition is True (Unknown, as after a lost lease, is not ready)."""
    return _condition_status(node.get("status", {}), "Ready") == "True"


def node_not_ready_since(node: Mapping[str, Any]) -> datetime.datetime | None:
    """When a NotReady node stopped being Ready (None if it is Ready or never said)."""
    if node_ready(node):
        return None
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def node_pod_capacity(node: Mapping[str, Any]) -> int | None:
    """status.allocatable.pods (None when the node does not say: no limit is assumed)."""
    value = (node.get("status", {}).get("allocatable") or {}).get("pods")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def node_allocatable_memory(node: Mapping[str, Any]) -> float | None:
    """status.allocatable.memory in bytes (None when the node does not say: no limit is assumed)."""
    value = (node.get("status", {}).get("allocatable") or {}).get("memory")
    try:
        return parse_quantity(value) if value is not None else None
    except ValueError:
        return None


def node_taints(node: Mapping[str, Any]) -> list[Json]:
    """spec.taints."""
    return list(node.get("spec", {}).get("taints") or [])


def is_unschedulable(node: Mapping[str, Any]) -> bool:
    """Cordoned (`kubectl cordon`): no new replicas, the running ones stay."""
    return bool(node.get("spec", {}).get("unschedulable"))


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """The Kubernetes toleration match: empty effect matches all effects, an empty key with
    Exists matches every taint, Equal compares values."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def _quantity(value: Any) -> float:
    """A quantity, or 0 when absent or unreadable (the API validated it; be lenient here)."""
    if value is None:
        return 0.0
    try:
        return parse_quantity(value)
    except ValueError:
        return 0.0


def _condition_status(status: Mapping[str, Any], kind: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None
