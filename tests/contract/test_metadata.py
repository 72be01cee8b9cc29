"""Resource versions, server-set metadata and generation (behaviours 1 and 2)."""

from __future__ import annotations

import re
import uuid

from tests.contract.builders import configmap, pod, widget
from tests.contract.conftest import ContractClient

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def test_every_write_bumps_one_cluster_wide_resource_version(api: ContractClient) -> None:
    first = await api.create("v1", "configmaps", api.namespace, configmap("first"))
    second = await api.create("v1", "configmaps", api.namespace, configmap("second"))
    patched = await api.patch("v1", "configmaps", api.namespace, "first", {"data": {"k": "v"}})
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in (first, second, patched)]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_a_write_that_changes_nothing_keeps_the_resource_version(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("same", labels={"a": "1"}))
    patched = await api.patch("v1", "configmaps", api.namespace, "same", {"metadata": {"labels": {"a": "1"}}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_lists_carry_their_kind_and_the_current_resource_version(api: ContractClient) -> None:
    created = await api.create("v1", "pods", api.namespace, pod("listed"))
    listing = await api.list("v1", "pods", api.namespace)
    assert listing["kind"] == "PodList" and listing["apiVersion"] == "v1"
    assert int(listing["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    assert [item["metadata"]["name"] for item in listing["items"]] == ["listed"]


async def test_items_of_builtin_lists_carry_no_kind_but_custom_ones_do(api: ContractClient, widgets: str) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("typed"))
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "unstructured"))
    typed = (await api.list("v1", "configmaps", api.namespace, params={"fieldSelector": "metadata.name=typed"}))["items"]
    custom = (await api.list(widgets, "widgets", api.namespace))["items"]
    assert "kind" not in typed[0] and "apiVersion" not in typed[0]
    assert custom[0]["kind"] == "Widget" and custom[0]["apiVersion"] == widgets


async def test_created_objects_get_a_uid_a_creation_timestamp_and_generation_1(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, widget(widgets, "fresh", replicas=1))
    meta = created["metadata"]
    assert uuid.UUID(meta["uid"]) and RFC3339.fullmatch(meta["creationTimestamp"])
    assert meta["generation"] == 1


async def test_generation_moves_only_when_the_spec_changes(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "gen", replicas=1))
    labelled = await api.patch(widgets, "widgets", api.namespace, "gen", {"metadata": {"labels": {"x": "y"}}})
    with_status = await api.patch(widgets, "widgets", api.namespace, "gen", {"status": {"replicas": 1}}, subresource="status")
    respecced = await api.patch(widgets, "widgets", api.namespace, "gen", {"spec": {"replicas": 2}})
    assert [labelled["metadata"]["generation"], with_status["metadata"]["generation"]] == [1, 1]
    assert respecced["metadata"]["generation"] == 2


async def test_generate_name_appends_five_random_characters(api: ContractClient) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "gen-"}
    created = await api.create("v1", "configmaps", api.namespace, body)
    assert re.fullmatch(r"gen-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])


async def test_a_create_answers_201_created(api: ContractClient) -> None:
    status, body = await api.request("POST", f"/api/v1/namespaces/{api.namespace}/configmaps", body=configmap("cm"))
    assert status == 201 and body["kind"] == "ConfigMap" and body["apiVersion"] == "v1"
