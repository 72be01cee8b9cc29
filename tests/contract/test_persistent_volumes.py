"""PersistentVolumeClaims and PersistentVolumes as the agent reads them: a claim is created
`Pending`, names its volume in `spec.volumeName`, and is `Bound` through `/status` (by the PV
controller on a real cluster); the cluster-scoped volume points back with `claimRef.uid`."""

from __future__ import annotations

from typing import Any

from tests.contract.conftest import ContractClient, eventually


def claim(name: str, volume: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}},
                     "storageClassName": "", "volumeName": volume}}


def volume(name: str, namespace: str, claim_name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/srv/contract"},
                     "claimRef": {"namespace": namespace, "name": claim_name, "uid": uid}}}


async def test_a_new_claim_is_pending(api: ContractClient) -> None:
    created = await api.create("v1", "persistentvolumeclaims", api.namespace, claim("c", "nowhere"))
    assert created["status"]["phase"] == "Pending"
    assert created["spec"]["volumeName"] == "nowhere"


async def test_a_claim_bound_to_a_volume_is_read_back_as_the_agent_reads_it(api: ContractClient) -> None:
    pv_name = api.unique("pv")
    made = await api.create("v1", "persistentvolumeclaims", api.namespace, claim("data", pv_name))
    api.owns("v1", "persistentvolumes", pv_name)
    await api.create("v1", "persistentvolumes", None, volume(pv_name, api.namespace, "data", made["metadata"]["uid"]))
    await api.patch("v1", "persistentvolumeclaims", api.namespace, "data", {"status": {"phase": "Bound"}},
                    subresource="status")

    async def bound() -> Any:
        found = await api.get("v1", "persistentvolumeclaims", api.namespace, "data")
        return found if (found.get("status") or {}).get("phase") == "Bound" else None

    found = await eventually(bound)
    assert found["spec"]["volumeName"] == pv_name
    pv = await api.get("v1", "persistentvolumes", None, pv_name)
    assert pv["spec"]["claimRef"]["uid"] == made["metadata"]["uid"]
    assert pv["spec"]["hostPath"]["path"] == "/srv/contract"
