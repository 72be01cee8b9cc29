"""An agent running as `system:node:<name>`: what NodeRestriction refuses it is left off once,
never retried in a loop (the test API has no NodeRestriction; its refusals are injected here
as kube-apiserver answers them, with 403)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wasmlet.kube.resources import LEASES, NODES, PODS
from tests.integration.agent_helpers import (
    api_client, container_state, module_bytes, put_module_configmap, running_agent, wait_for, wasm_pod,
)  # fmt: skip

NODE = "wasm-node-1"
EDGE = "node-role.kubernetes.io/edge"


def ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_a_node_created_under_node_restriction_leaves_off_the_labels_it_may_not_set(
        kube_api: Any, tmp_path: Path) -> None:
    kube_api.server["post /api/v1/nodes"][:1] << 403  # the first create carries node-role.kubernetes.io/edge
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api, tmp_path, node_labels={EDGE: "", "zone": "a", "node.kubernetes.io/pool": "wasm"}):
        node = await wait_for(api, NODES, NODE, None, ready)
        labels = node["metadata"]["labels"]
        assert EDGE not in labels
        assert labels["zone"] == "a" and labels["node.kubernetes.io/pool"] == "wasm"
        assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
            ("kubernetes.io/arch", "NoSchedule"), ("kubernetes.io/arch", "NoExecute")}
    assert len(kube_api.server["post /api/v1/nodes"]) == 2


async def test_an_existing_node_is_patched_once_and_a_refused_patch_is_not_retried(
        kube_api: Any, tmp_path: Path) -> None:
    """A Node registered before (here without our taints, with an old label): the agent asks once
    for what differs, once more without the taints and restricted labels, then runs on."""
    kube_api.put({"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": NODE, "labels": {"zone": "old", "kubernetes.io/hostname": NODE}}})
    patches = kube_api.server[f"patch /api/v1/nodes/{NODE}"]
    patches << 403  # every patch of the Node itself is refused, as NodeRestriction refuses taint changes
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api, tmp_path, node_labels={EDGE: "", "zone": "a"}) as agent:
        await wait_for(api, NODES, NODE, None, ready)
        first = await wait_for(api, LEASES, NODE, "kube-node-lease", lambda lease: True)
        await wait_for(api, LEASES, NODE, "kube-node-lease",
                       lambda lease: lease["spec"]["renewTime"] != first["spec"]["renewTime"])
        assert agent.node is not None and agent.node.registered.is_set()
    sent = [request.data for request in patches]
    assert len(sent) == 2
    assert sent[0]["spec"]["taints"] and EDGE in sent[0]["metadata"]["labels"]
    assert sent[1] == {"metadata": {"labels": {"zone": "a", "type": "wasmlet", "wasmlet.dev/agent": "true",
                                               "wasmlet.dev/runtime.wasmer": "true",
                                               "wasmlet.dev/runtime.wasmtime": "true",
                                               "kubernetes.io/arch": "wasm32-wasi", "kubernetes.io/os": "wasm32-wasi"}}}


async def test_a_module_configmap_the_node_may_not_read_is_a_clear_config_error(kube_api: Any, tmp_path: Path) -> None:
    """A hand-written Pod whose `configmap://` module no volume or env references: the Node
    authorizer refuses the read (injected 403), and the container says why and what to add."""
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_module_configmap(api, "default", "mods", {"hello.wasm": module_bytes("hello")})
        kube_api.server["get /api/v1/namespaces/default/configmaps/mods"] << 403
        await api.create(PODS, wasm_pod("unreferenced", NODE, "configmap://mods/hello.wasm"))
        pod = await wait_for(api, PODS, "unreferenced", "default",
                             lambda p: "waiting" in container_state(p) and
                             container_state(p)["waiting"].get("reason") == "CreateContainerConfigError")
        message = container_state(pod)["waiting"]["message"]
        assert 'configmap "mods" is forbidden to this node' in message
        assert '{"name": "wasmlet-module", "configMap": {"name": "mods"}}' in message
