"""The labels NodeRestriction lets a node set on itself (kube-apiserver's noderestriction plugin)."""

from __future__ import annotations

import pytest

from wasmlet.nodeagent.noderestriction import forbidden_label, labels_to_change, missing_taints


@pytest.mark.parametrize(("key", "forbidden"), [
    ("node-role.kubernetes.io/edge", True),
    ("node-role.kubernetes.io/control-plane", True),
    ("node-restriction.kubernetes.io/trusted", True),
    ("example.node-restriction.kubernetes.io/x", True),
    ("foo.k8s.io/bar", True),
    ("kubernetes.io/role", True),
    ("kubernetes.io/hostname", False),
    ("kubernetes.io/arch", False),
    ("kubernetes.io/os", False),
    ("topology.kubernetes.io/zone", False),
    ("node.kubernetes.io/instance-type", False),
    ("node.kubernetes.io/pool", False),
    ("x.kubelet.kubernetes.io/y", False),
    ("wasmlet.dev/agent", False),
    ("type", False),
    ("zone", False),
])  # fmt: skip
def test_kubernetes_io_labels_outside_the_kubelets_set_are_forbidden(key: str, forbidden: bool) -> None:
    assert forbidden_label(key) is forbidden


def test_only_differing_labels_and_missing_taints_are_asked_for() -> None:
    assert labels_to_change({"a": "1", "b": "2", "c": ""}, {"a": "1", "b": "3"}) == {"b": "2", "c": ""}
    ours = [{"key": "k", "value": "v", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "NoExecute"}]
    current = [{"key": "k", "value": "v", "effect": "NoSchedule"}, {"key": "other", "effect": "NoSchedule"}]
    assert missing_taints(ours, current) == [ours[1]]
    assert missing_taints(ours, ours) == []


def test_a_node_certificate_is_renewed_between_70_and_90_percent_of_its_lifetime() -> None:
    import random

    from wasmlet.nodeagent.bootstrap import rotation_deadline

    deadlines = [rotation_deadline(1000.0, 2000.0, random.Random(seed)) for seed in range(200)]
    assert all(1700.0 <= d <= 1900.0 for d in deadlines)
    assert max(deadlines) - min(deadlines) > 100  # jittered, so a fleet does not renew at once
