"""Graceful deletion, preconditions and finalizers (behaviour 9)."""

from __future__ import annotations

import datetime

import pytest

from tests.contract.builders import configmap, pod, widget
from tests.contract.conftest import SETTLE_TIMEOUT, ContractClient, absent, eventually
from tests.fixtures.kubeclient import ApiError


def _moment(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


async def test_deleting_a_bound_pod_only_marks_it(api: ContractClient) -> None:
    created = await api.create("v1", "pods", api.namespace, pod("p"))
    async with api.watch("v1", "pods", api.namespace, params={"resourceVersion": created["metadata"]["resourceVersion"]}) as events:
        answer = await api.delete("v1", "pods", api.namespace, "p")
        event = await events.next()
    stored = await api.get("v1", "pods", api.namespace, "p")
    assert answer["kind"] == "Pod" and answer["metadata"]["deletionGracePeriodSeconds"] == 30
    assert stored["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
    assert event["type"] == "MODIFIED" and event["object"]["metadata"]["deletionTimestamp"]
    grace = _moment(stored["metadata"]["deletionTimestamp"]) - _moment(stored["metadata"]["creationTimestamp"])
    assert 25 <= grace.total_seconds() <= 40


async def test_the_grace_period_comes_from_delete_options_or_the_pod(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("by-body"))
    await api.create("v1", "pods", api.namespace, pod("by-query"))
    await api.create("v1", "pods", api.namespace, pod("by-spec", terminationGracePeriodSeconds=12))
    body = await api.delete("v1", "pods", api.namespace, "by-body", body={"gracePeriodSeconds": 7})
    query = await api.delete("v1", "pods", api.namespace, "by-query", params={"gracePeriodSeconds": 8})
    spec = await api.delete("v1", "pods", api.namespace, "by-spec")
    graces = [obj["metadata"]["deletionGracePeriodSeconds"] for obj in (body, query, spec)]
    assert graces == [7, 8, 12]


async def test_a_second_delete_may_shorten_but_never_lengthen_the_grace(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    first = await api.delete("v1", "pods", api.namespace, "p", body={"gracePeriodSeconds": 30})
    longer = await api.delete("v1", "pods", api.namespace, "p", body={"gracePeriodSeconds": 60})
    shorter = await api.delete("v1", "pods", api.namespace, "p", body={"gracePeriodSeconds": 5})
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 30
    assert longer["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    moved = _moment(first["metadata"]["deletionTimestamp"]) - _moment(shorter["metadata"]["deletionTimestamp"])
    assert moved.total_seconds() == 25


async def test_a_grace_zero_delete_removes_a_marked_pod(api: ContractClient) -> None:
    created = await api.create("v1", "pods", api.namespace, pod("p"))
    await api.delete("v1", "pods", api.namespace, "p")
    since = (await api.get("v1", "pods", api.namespace, "p"))["metadata"]["resourceVersion"]
    async with api.watch("v1", "pods", api.namespace, params={"resourceVersion": since}) as events:
        precondition = {"gracePeriodSeconds": 0, "preconditions": {"uid": created["metadata"]["uid"]}}
        await api.delete("v1", "pods", api.namespace, "p", body=precondition)
        seen = [await events.next()]
        while seen[-1]["type"] != "DELETED":
            seen.append(await events.next())
    assert await absent(api, "v1", "pods", api.namespace, "p")
    assert seen[-1]["object"]["metadata"]["name"] == "p"


async def test_a_grace_zero_delete_of_a_bound_pod_marks_it_and_removes_it_in_one_request(api: ContractClient) -> None:
    """What a node agent sees of `delete --grace-period=0 --force`: the mark, then the removal,
    both done when the DELETE answers (a status written after the mark only finds a 404)."""
    created = await api.create("v1", "pods", api.namespace, pod("p"))
    async with api.watch("v1", "pods", api.namespace,
                         params={"resourceVersion": created["metadata"]["resourceVersion"]}) as events:
        await api.delete("v1", "pods", api.namespace, "p", body={"gracePeriodSeconds": 0})
        assert await absent(api, "v1", "pods", api.namespace, "p")
        marked, deleted = await events.next(), await events.next()
    assert marked["type"] == "MODIFIED" and marked["object"]["metadata"]["deletionTimestamp"]
    assert marked["object"]["metadata"]["deletionGracePeriodSeconds"] == 0
    assert deleted["type"] == "DELETED"


@pytest.mark.parametrize("phase", ["unbound", "Succeeded", "Failed"])
async def test_unbound_and_terminated_pods_are_deleted_at_once(api: ContractClient, phase: str) -> None:
    await api.create("v1", "pods", api.namespace, pod("p", node=None if phase == "unbound" else "contract-nowhere"))
    if phase != "unbound":
        await api.patch("v1", "pods", api.namespace, "p", {"status": {"phase": phase}}, subresource="status")
    answer = await api.delete("v1", "pods", api.namespace, "p")
    assert answer["kind"] == "Pod"
    assert await absent(api, "v1", "pods", api.namespace, "p")


async def test_a_uid_precondition_mismatch_conflicts(api: ContractClient) -> None:
    created = await api.create("v1", "pods", api.namespace, pod("p"))
    other = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ApiError) as error:
        await api.delete("v1", "pods", api.namespace, "p", body={"preconditions": {"uid": other}})
    assert error.value.status == 409 and error.value.reason == "Conflict"
    assert error.value.message == (
        f'Operation cannot be fulfilled on Pod "p": the UID in the precondition ({other}) does not match '
        f"the UID in record ({created['metadata']['uid']}). The object might have been deleted and then recreated"
    )


async def test_objects_with_finalizers_wait_for_their_removal(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", finalizers=["contract.wasmlet.dev/hold"]))
    marked = await api.delete("v1", "configmaps", api.namespace, "cm", body={"propagationPolicy": "Background"})
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert not await absent(api, "v1", "configmaps", api.namespace, "cm")
    await api.patch("v1", "configmaps", api.namespace, "cm", {"metadata": {"finalizers": None}})
    assert await absent(api, "v1", "configmaps", api.namespace, "cm")


async def test_marking_for_deletion_bumps_the_generation(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, {**widget(widgets, "w"), "metadata": {"name": "w",
                                                                                              "finalizers": ["contract.wasmlet.dev/hold"]}})
    marked = await api.delete(widgets, "widgets", api.namespace, "w")
    assert marked["metadata"]["generation"] == 2
    await api.patch(widgets, "widgets", api.namespace, "w", {"metadata": {"finalizers": None}})
    assert await absent(api, widgets, "widgets", api.namespace, "w")


async def test_an_immediate_delete_of_a_config_map_answers_with_a_success_status(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    answer = await api.delete("v1", "configmaps", api.namespace, "cm")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"] == {"name": "cm", "kind": "configmaps", "uid": created["metadata"]["uid"]}


async def test_a_deleted_namespace_terminates_then_goes_with_its_content(api: ContractClient) -> None:
    namespace = api.unique("contract-doomed")
    await api.create("v1", "namespaces", None, {"metadata": {"name": namespace}})
    api.owns("v1", "namespaces", namespace)
    await api.create("v1", "configmaps", namespace, configmap("cm"))
    answer = await api.delete("v1", "namespaces", None, namespace)
    assert answer["kind"] == "Namespace" and answer["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", namespace, configmap("late"))
    assert error.value.status == 403
    assert error.value.message.endswith(f"unable to create new content in namespace {namespace} because it is being terminated")
    assert await eventually(lambda: absent(api, "v1", "namespaces", None, namespace), timeout=SETTLE_TIMEOUT * 3)


async def test_an_eviction_deletes_the_pod_gracefully(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}, "deleteOptions": {"gracePeriodSeconds": 9}}
    answer = await api.create("v1", "pods", api.namespace, eviction, name="p", subresource="eviction")
    marked = await api.get("v1", "pods", api.namespace, "p")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 9


async def test_a_resource_version_precondition_mismatch_conflicts(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    current = await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"k": "v"}})
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as error:
        await api.delete("v1", "configmaps", api.namespace, "cm", body={"preconditions": {"resourceVersion": stale}})
    assert error.value.status == 409
    assert error.value.message == (
        f'Operation cannot be fulfilled on ConfigMap "cm": the ResourceVersion in the precondition ({stale}) does not '
        f"match the ResourceVersion in record ({current['metadata']['resourceVersion']}). The object might have been modified"
    )
