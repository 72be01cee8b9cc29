"""Patch formats (behaviour 4): merge, JSON and strategic merge patches as the real server applies them."""

from __future__ import annotations

import pytest

from tests.contract.builders import configmap, node, owner_reference, pod, widget
from tests.contract.conftest import ContractClient
from tests.fixtures.kubeclient import ApiError


async def test_a_merge_patch_deletes_keys_with_null_and_replaces_lists(api: ContractClient, widgets: str) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", labels={"a": "1", "b": "2"}, data={"k": "v"}))
    patched = await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {"labels": {"a": None, "c": "3"}}})
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", items=[1, 2, 3], keep={"x": 1}))
    replaced = await api.patch(widgets, "widgets", api.namespace, "w", {"spec": {"items": [9]}})
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"} and patched["data"] == {"k": "v"}
    assert replaced["spec"] == {"items": [9], "keep": {"x": 1}, "mode": "auto"}


async def test_a_json_patch_applies_its_operations_in_order(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", data={"a": "1", "b": "2"}, annotations={"x": "y"}))
    operations = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/annotations/example.com~1note", "value": "3"},  # ~1 is a slash
        {"op": "copy", "from": "/data/a", "path": "/data/e"},
    ]
    patched = await api.patch("v1", "configmaps", api.namespace, "cm", operations, content_type="json")
    assert patched["data"] == {"a": "10", "e": "10"}
    assert patched["metadata"]["annotations"] == {"x": "y", "example.com/note": "3"}


async def test_a_json_patch_whose_test_fails_is_rejected_with_422(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", data={"a": "1"}))
    operations = [{"op": "test", "path": "/data/a", "value": "2"}, {"op": "remove", "path": "/data/a"}]
    with pytest.raises(ApiError) as error:
        await api.patch("v1", "configmaps", api.namespace, "cm", operations, content_type="json")
    assert error.value.status == 422 and error.value.reason == "Invalid"
    assert error.value.message == "the server rejected our request due to an error in our request"
    assert (await api.get("v1", "configmaps", api.namespace, "cm"))["data"] == {"a": "1"}


async def test_a_strategic_merge_patch_merges_pod_containers_by_name(api: ContractClient) -> None:
    body = pod("p")
    body["spec"]["containers"].append({"name": "side", "image": "registry.example/wasm/side:1.0"})
    await api.create("v1", "pods", api.namespace, body)
    change = {"spec": {"containers": [{"name": "side", "image": "registry.example/wasm/side:2.0"}]}}
    patched = await api.patch("v1", "pods", api.namespace, "p", change, content_type="strategic")
    images = {c["name"]: c["image"] for c in patched["spec"]["containers"]}
    assert images == {"main": "registry.example/wasm/app:1.0", "side": "registry.example/wasm/side:2.0"}


async def test_a_strategic_merge_patch_merges_pod_conditions_by_type(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    first = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}
    await api.patch("v1", "pods", api.namespace, "p", first, content_type="strategic", subresource="status")
    second = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "$patch": "delete"}]}}
    patched = await api.patch("v1", "pods", api.namespace, "p", second, content_type="strategic", subresource="status")
    conditions = {c["type"]: c["status"] for c in patched["status"]["conditions"]}
    assert conditions["Ready"] == "True" and "Initialized" not in conditions


async def test_a_strategic_merge_patch_merges_node_addresses_by_type(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    addresses = [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": name}]
    await api.create("v1", "nodes", None, node(name, addresses=addresses))
    change = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}
    patched = await api.patch("v1", "nodes", None, name, change, content_type="strategic", subresource="status")
    assert {a["type"]: a["address"] for a in patched["status"]["addresses"]} == {"InternalIP": "10.0.0.2", "Hostname": name}


async def test_a_strategic_merge_patch_replaces_lists_without_a_merge_key(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    created = await api.create("v1", "nodes", None, node(name))
    taint = {"key": "example.com/only", "effect": "NoSchedule"}
    patched = await api.patch("v1", "nodes", None, name, {"spec": {"taints": [taint]}}, content_type="strategic")
    # Admission added the not-ready taint to the two the Node was created with; the patch replaced all.
    assert len(created["spec"]["taints"]) == 3 and patched["spec"]["taints"] == [taint]


async def test_a_strategic_merge_patch_unions_finalizers(api: ContractClient) -> None:
    finalizers = ["contract.wasmlet.dev/a"]
    await api.create("v1", "configmaps", api.namespace, configmap("cm", finalizers=finalizers))
    added = await api.patch("v1", "configmaps", api.namespace, "cm",
                            {"metadata": {"finalizers": ["contract.wasmlet.dev/b"]}}, content_type="strategic")
    removal = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["contract.wasmlet.dev/a", "contract.wasmlet.dev/b"]}}
    removed = await api.patch("v1", "configmaps", api.namespace, "cm", removal, content_type="strategic")
    # The server's order: the patch's items first, then the ones only the server had.
    assert added["metadata"]["finalizers"] == ["contract.wasmlet.dev/b", "contract.wasmlet.dev/a"]
    assert not removed["metadata"].get("finalizers")


async def test_a_strategic_merge_patch_on_a_custom_resource_is_unsupported(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w"))
    with pytest.raises(ApiError) as error:
        await api.patch(widgets, "widgets", api.namespace, "w", {"spec": {"a": 1}}, content_type="strategic")
    assert error.value.status == 415 and error.value.reason == "UnsupportedMediaType"
    assert error.value.message.startswith(
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json"
    )


async def test_a_strategic_merge_patch_merges_owner_references_by_uid(api: ContractClient) -> None:
    first = await api.create("v1", "configmaps", api.namespace, configmap("first"))
    second = await api.create("v1", "configmaps", api.namespace, configmap("second"))
    await api.create("v1", "configmaps", api.namespace, configmap("dependent", ownerReferences=[owner_reference(first)]))
    change = {"metadata": {"ownerReferences": [owner_reference(second)]}}
    patched = await api.patch("v1", "configmaps", api.namespace, "dependent", change, content_type="strategic")
    assert [ref["name"] for ref in patched["metadata"]["ownerReferences"]] == ["second", "first"]


async def test_a_replace_directive_replaces_a_merged_list(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    first = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}
    await api.patch("v1", "pods", api.namespace, "p", first, content_type="strategic", subresource="status")
    replace = {"status": {"conditions": [{"$patch": "replace"}, {"type": "PodScheduled", "status": "True"}]}}
    patched = await api.patch("v1", "pods", api.namespace, "p", replace, content_type="strategic", subresource="status")
    assert [c["type"] for c in patched["status"]["conditions"]] == ["PodScheduled"]


async def test_a_strategic_merge_patch_interleaves_server_only_items_in_the_servers_order(api: ContractClient) -> None:
    finalizers = [f"contract.wasmlet.dev/{name}" for name in "abc"]
    await api.create("v1", "configmaps", api.namespace, configmap("cm", finalizers=finalizers))
    change = {"metadata": {"finalizers": ["contract.wasmlet.dev/d", "contract.wasmlet.dev/b"]}}
    patched = await api.patch("v1", "configmaps", api.namespace, "cm", change, content_type="strategic")
    reordered = await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {
        "$setElementOrder/finalizers": [f"contract.wasmlet.dev/{name}" for name in "cdab"]}}, content_type="strategic")
    await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {"finalizers": None}})
    assert [f.rsplit("/", 1)[1] for f in patched["metadata"]["finalizers"]] == ["d", "a", "b", "c"]
    assert [f.rsplit("/", 1)[1] for f in reordered["metadata"]["finalizers"]] == ["c", "d", "a", "b"]


async def test_a_strategic_merge_patch_updates_an_owner_reference_in_place(api: ContractClient) -> None:
    owners = [await api.create("v1", "configmaps", api.namespace, configmap(name)) for name in ("first", "second")]
    refs = [owner_reference(owner) for owner in owners]
    await api.create("v1", "configmaps", api.namespace, configmap("dependent", ownerReferences=refs))
    change = {"metadata": {"ownerReferences": [{**refs[1], "blockOwnerDeletion": True}]}}
    patched = await api.patch("v1", "configmaps", api.namespace, "dependent", change, content_type="strategic")
    assert [(ref["name"], ref.get("blockOwnerDeletion")) for ref in patched["metadata"]["ownerReferences"]] == [
        ("first", None), ("second", True)
    ]
