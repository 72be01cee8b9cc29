"""What a node may write about itself under kube-apiserver's NodeRestriction admission (pure).

An agent that runs as `system:node:<name>` (as a kubelet does) may set on its own Node only:
- labels outside the `kubernetes.io`/`k8s.io` namespaces, except `node-restriction.kubernetes.io/*`;
- within them, the kubelet's own labels (`kubernetes.io/hostname`, `kubernetes.io/arch`,
  `kubernetes.io/os`, topology zone/region, instance type, their `beta.` forms) and anything under
  `kubelet.kubernetes.io/` and `node.kubernetes.io/` (the kubelet's `IsKubeletLabel`).
  So `node-role.kubernetes.io/edge` is the cluster's to set (`kubectl label node`), not the node's;
- taints only when it creates the Node: an update that changes `spec.taints` is refused.

On an existing Node the agent therefore patches only labels that differ, and adds its taints
only when they are missing; what NodeRestriction refuses is reported once, never retried in a loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
    "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})  # fmt: skip
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def _namespace(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _within(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def forbidden_label(key: str) -> bool:
    """Whether NodeRestriction refuses a node that sets (or changes) this label on itself."""
    namespace = _namespace(key)
    if _within(namespace, RESTRICTION_NAMESPACE):
        return True
    if not (_within(namespace, "kubernetes.io") or _within(namespace, "k8s.io")):
        return False
    return key not in KUBELET_LABELS and not any(_within(namespace, ns) for ns in KUBELET_LABEL_NAMESPACES)


def labels_to_change(wanted: Mapping[str, str], current: Mapping[str, str]) -> dict[str, str]:
    """The labels an existing Node lacks or has with another value."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def missing_taints(wanted: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The taints of `wanted` the Node does not carry (same key, value and effect)."""
    have = {(t.get("key"), t.get("value"), t.get("effect")) for t in current}
    return [t for t in wanted if (t.get("key"), t.get("value"), t.get("effect")) not in have]


def node_restriction_note(labels: Mapping[str, str]) -> str:
    """Why some labels were left off, and who sets them instead."""
    keys = ", ".join(sorted(labels))
    return (f"NodeRestriction forbids a node to set label(s) {keys} on itself; the agent left them off "
            f"(set them with `kubectl label node`, as kubeadm does for node-role labels)")
