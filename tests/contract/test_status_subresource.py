"""The status subresource (behaviour 3): status goes through `/status`, everything else does not."""

from __future__ import annotations

from tests.contract.builders import node, pod, widget
from tests.contract.conftest import ContractClient


async def test_a_write_to_the_main_resource_ignores_status(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", replicas=1))
    await api.patch(widgets, "widgets", api.namespace, "w", {"status": {"replicas": 1}}, subresource="status")
    patched = await api.patch(widgets, "widgets", api.namespace, "w", {"spec": {"replicas": 3}, "status": {"replicas": 9}})
    current = await api.get(widgets, "widgets", api.namespace, "w")
    replaced = await api.put(widgets, "widgets", api.namespace, "w", {**current, "status": {"replicas": 7}})
    assert patched["spec"]["replicas"] == 3 and patched["status"] == {"replicas": 1}
    assert replaced["status"] == {"replicas": 1}


async def test_a_write_to_status_changes_only_status(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", replicas=1))
    change = {"metadata": {"labels": {"new": "label"}}, "spec": {"replicas": 5}, "status": {"replicas": 2}}
    written = await api.patch(widgets, "widgets", api.namespace, "w", change, subresource="status")
    assert written["status"] == {"replicas": 2}
    assert written["spec"] == {"replicas": 1, "mode": "auto"} and "labels" not in written["metadata"]


async def test_a_pod_status_write_keeps_the_spec(api: ContractClient) -> None:
    created = await api.create("v1", "pods", api.namespace, pod("p"))
    change = {"spec": {"nodeName": "elsewhere"}, "status": {"phase": "Running"}}
    written = await api.patch("v1", "pods", api.namespace, "p", change, subresource="status")
    assert written["status"]["phase"] == "Running"
    assert written["spec"] == created["spec"]


async def test_a_create_drops_the_status_of_a_custom_resource(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, {**widget(widgets, "w"), "status": {"replicas": 4}})
    assert "status" not in created


async def test_a_created_pod_starts_pending_with_its_qos_class(api: ContractClient) -> None:
    best_effort = await api.create("v1", "pods", api.namespace, {**pod("p1"), "status": {"phase": "Running"}})
    limited = pod("p2")
    limited["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    burstable = await api.create("v1", "pods", api.namespace, limited)
    assert best_effort["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert burstable["status"] == {"phase": "Pending", "qosClass": "Burstable"}
    assert burstable["spec"]["containers"][0]["resources"]["requests"] == {"memory": "64Mi"}


async def test_a_node_keeps_the_status_it_was_created_with(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    created = await api.create("v1", "nodes", None, node(name, addresses=[{"type": "InternalIP", "address": "10.0.0.7"}]))
    assert created["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.7"}]
