"""Garbage collection of dependents (behaviour 10)."""

from __future__ import annotations

from tests.contract.builders import configmap, owner_reference, pod
from tests.contract.conftest import ContractClient, absent, eventually


async def test_deleting_an_owner_deletes_its_dependents(api: ContractClient) -> None:
    owner = await api.create("v1", "configmaps", api.namespace, configmap("owner"))
    await api.create("v1", "configmaps", api.namespace, configmap("dependent", ownerReferences=[owner_reference(owner)]))
    await api.delete("v1", "configmaps", api.namespace, "owner")
    assert await eventually(lambda: absent(api, "v1", "configmaps", api.namespace, "dependent"))


async def test_a_bound_pod_of_a_deleted_owner_goes_through_graceful_deletion(api: ContractClient) -> None:
    owner = await api.create("v1", "configmaps", api.namespace, configmap("owner"))
    await api.create("v1", "pods", api.namespace, {**pod("p"), "metadata": {"name": "p", "ownerReferences": [owner_reference(owner)]}})
    await api.delete("v1", "configmaps", api.namespace, "owner")

    async def marked() -> bool:
        return bool((await api.get("v1", "pods", api.namespace, "p"))["metadata"].get("deletionTimestamp"))

    assert await eventually(marked)


async def test_orphaning_keeps_the_dependents_without_the_reference(api: ContractClient) -> None:
    owner = await api.create("v1", "configmaps", api.namespace, configmap("owner"))
    await api.create("v1", "configmaps", api.namespace, configmap("dependent", ownerReferences=[owner_reference(owner)]))
    await api.delete("v1", "configmaps", api.namespace, "owner", body={"propagationPolicy": "Orphan"})
    assert await eventually(lambda: absent(api, "v1", "configmaps", api.namespace, "owner"))

    async def orphaned() -> bool:
        return not (await api.get("v1", "configmaps", api.namespace, "dependent"))["metadata"].get("ownerReferences")

    assert await eventually(orphaned)


async def test_a_dependent_of_an_absent_owner_is_collected(api: ContractClient) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-00000000dead"}}
    await api.create("v1", "configmaps", api.namespace, configmap("dependent", ownerReferences=[owner_reference(ghost)]))
    assert await eventually(lambda: absent(api, "v1", "configmaps", api.namespace, "dependent"))
