"""Pod and Node events: queue the workloads they may affect (never reconcile inline).

A Pod event queues its owner (from the `wasmlet.dev/workload` label). A Node event queues every
known workload, but only when something placement looks at changed: agents update their Node
status every few seconds, and heartbeats alone must not cause reconciles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from wasmlet.api import keys
from wasmlet.operator import objects
from wasmlet.operator.memo import OperatorMemo


async def pod_event(namespace: str | None, labels: Mapping[str, str], memo: OperatorMemo, **_: Any) -> None:
    """Any change of a workload's Pod may change its status or call for a replacement."""
    assert namespace is not None  # Pods are namespaced
    memo.require_services().queue.add((namespace, labels[keys.LABEL_WORKLOAD]))


async def node_event(type: str | None, name: str, body: Mapping[str, Any], memo: OperatorMemo, **_: Any) -> None:
    """A wasm node appeared, vanished, or changed in a way placement cares about."""
    services = memo.require_services()
    fingerprint = None if type == "DELETED" else node_fingerprint(body)
    if services.node_fingerprints.get(name) == fingerprint:
        return
    if fingerprint is None:
        services.node_fingerprints.pop(name, None)
    else:
        services.node_fingerprints[name] = fingerprint
    services.queue.add_all()


def node_fingerprint(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What placement and lost-node handling read from a Node; heartbeats are not in it."""
    return (
        objects.node_ready(node),
        objects.is_unschedulable(node),
        tuple(sorted(objects.node_labels(node).items())),
        tuple(sorted((t.get("key"), t.get("value"), t.get("effect")) for t in objects.node_taints(node))),
        objects.node_pod_capacity(node),
    )


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the Pod and Node event handlers on `registry` (label-filtered by kopf)."""
    kopf.on.event("", "v1", "pods", labels={keys.LABEL_WORKLOAD: kopf.PRESENT}, registry=registry)(pod_event)
    kopf.on.event("", "v1", "nodes", labels={keys.LABEL_AGENT: "true"}, registry=registry)(node_event)
