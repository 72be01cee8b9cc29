"""Label and field selectors on lists and watches (behaviour 7)."""

from __future__ import annotations

import pytest

from tests.contract.builders import configmap, node, pod, widget
from tests.contract.conftest import ContractClient
from tests.fixtures.kubeclient import ApiError


async def _names(api: ContractClient, api_version: str, plural: str, namespace: str | None, **params: str) -> list[str]:
    listing = await api.list(api_version, plural, namespace, params=params)
    return sorted(item["metadata"]["name"] for item in listing["items"])


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("a=1", ["one"]),
        ("a==1", ["one"]),
        ("a!=1", ["none", "two"]),
        ("a in (1,2)", ["one", "two"]),
        ("a notin (1)", ["none", "two"]),
        ("a", ["one", "two"]),
        ("!a", ["none"]),
        ("a,b=x", ["two"]),
    ],
)
async def test_label_selectors_filter_lists(api: ContractClient, selector: str, expected: list[str]) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("one", labels={"a": "1", "t": "y"}))
    await api.create("v1", "configmaps", api.namespace, configmap("two", labels={"a": "2", "b": "x", "t": "y"}))
    await api.create("v1", "configmaps", api.namespace, configmap("none", labels={"t": "y"}))
    assert await _names(api, "v1", "configmaps", api.namespace, labelSelector=f"t=y,{selector}") == expected


async def test_field_selectors_filter_pods(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("bound", node="contract-n1"))
    await api.create("v1", "pods", api.namespace, pod("elsewhere", node="contract-n2"))
    await api.create("v1", "pods", api.namespace, pod("unbound", node=None, restartPolicy="Never"))
    ns = api.namespace
    assert await _names(api, "v1", "pods", ns, fieldSelector="spec.nodeName=contract-n1") == ["bound"]
    assert await _names(api, "v1", "pods", ns, fieldSelector="spec.nodeName!=contract-n1") == ["elsewhere", "unbound"]
    assert await _names(api, "v1", "pods", ns, fieldSelector="spec.nodeName==") == ["unbound"]
    assert await _names(api, "v1", "pods", ns, fieldSelector="status.phase=Pending,spec.restartPolicy=Never") == ["unbound"]
    assert await _names(api, "v1", "pods", ns, fieldSelector=f"metadata.name=bound,metadata.namespace={ns}") == ["bound"]
    by_defaults = "spec.schedulerName=default-scheduler,spec.serviceAccountName=default"
    assert await _names(api, "v1", "pods", ns, fieldSelector=by_defaults) == ["bound", "elsewhere"]


async def test_nodes_can_be_selected_by_unschedulable(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    await api.create("v1", "nodes", None, node(name))
    assert name in await _names(api, "v1", "nodes", None, fieldSelector="spec.unschedulable=true")
    assert name not in await _names(api, "v1", "nodes", None, fieldSelector="spec.unschedulable=false")


async def test_custom_resources_support_only_name_and_namespace_fields(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", color="red"))
    assert await _names(api, widgets, "widgets", api.namespace, fieldSelector="metadata.name=w") == ["w"]
    with pytest.raises(ApiError) as error:
        await api.list(widgets, "widgets", api.namespace, params={"fieldSelector": "spec.color=red"})
    assert (error.value.status, error.value.message) == (400, "field label not supported: spec.color")


async def test_other_builtin_kinds_refuse_unknown_fields_with_the_generic_message(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.list("v1", "configmaps", api.namespace, params={"fieldSelector": "data.k=v"})
    assert error.value.status == 400
    assert error.value.message == '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"'


async def test_a_label_selector_on_a_watch_turns_relabelling_into_added_and_deleted(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", labels={"app": "a"}))
    async with api.watch("v1", "configmaps", api.namespace, params={"labelSelector": "app=a"}) as events:
        added = await events.next()
        await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {"labels": {"app": "b"}}})
        gone = await events.next()
        await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {"labels": {"app": "a"}}})
        back = await events.next()
    assert [added["type"], gone["type"], back["type"]] == ["ADDED", "DELETED", "ADDED"]
    assert int(gone["object"]["metadata"]["resourceVersion"]) < int(back["object"]["metadata"]["resourceVersion"])


async def test_a_node_watch_sees_a_pod_bound_later_as_added(api: ContractClient) -> None:
    node_name = api.unique("contract-n")
    await api.create("v1", "pods", api.namespace, pod("later", node=None))
    async with api.watch("v1", "pods", None, params={"fieldSelector": f"spec.nodeName={node_name}"}) as events:
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "later"}, "target": {"kind": "Node", "name": node_name}}
        await api.create("v1", "pods", api.namespace, binding, name="later", subresource="binding")
        event = await events.next()
    assert event["type"] == "ADDED" and event["object"]["spec"]["nodeName"] == node_name


async def test_events_can_be_selected_by_involved_object_reason_type_and_source(api: ContractClient) -> None:
    involved = {"apiVersion": "v1", "kind": "Pod", "namespace": api.namespace, "name": "p", "uid": "1234"}
    for name, reason in (("e1", "Pulled"), ("e2", "Started")):
        event = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name}, "involvedObject": involved,
            "reason": reason, "message": reason, "type": "Normal", "source": {"component": "wasmlet"},
        }  # fmt: skip
        await api.create("v1", "events", api.namespace, event)
    selector = "involvedObject.name=p,involvedObject.kind=Pod,reason=Started,type=Normal,source=wasmlet"
    assert await _names(api, "v1", "events", api.namespace, fieldSelector=selector) == ["e2"]
