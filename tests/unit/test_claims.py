"""PersistentVolumeClaims as the kubelet's volume manager judges them: the claim, the volume it is
bound to, the volume's node affinity and type; each refusal worded as the kubelet words it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wasmlet.nodeagent.claims import node_affinity_matches, resolve_claim
from wasmlet.nodeagent.errors import PodConfigError, UnsupportedPod

Obj = dict[str, Any]


class Claims:
    def __init__(self, pvc: Obj | None, pv: Obj | None) -> None:
        self.pvc, self.pv = pvc, pv

    async def claim(self, namespace: str, name: str) -> Obj | None:
        return self.pvc

    async def volume(self, name: str) -> Obj | None:
        return self.pv


def pvc(phase: str = "Bound", volume: str = "pv1", deleting: bool = False) -> Obj:
    meta: Obj = {"name": "c", "namespace": "ns", "uid": "claim-uid"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"volumeName": volume}, "status": {"phase": phase}}


def pv(uid: str | None = "claim-uid", **spec: Any) -> Obj:
    claim_ref = {"uid": uid} if uid else None
    return {"metadata": {"name": "pv1"}, "spec": {"claimRef": claim_ref, **(spec or {"hostPath": {"path": "/srv"}})}}


VOLUME = {"name": "data", "persistentVolumeClaim": {"claimName": "c"}}
AWAY = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["other"]}]}]}}


@pytest.mark.parametrize(("claim", "volume", "message"), [
    (None, None, 'failed to fetch PVC ns/c from API server: persistentvolumeclaims "c" not found'),
    (pvc(deleting=True), pv(), "can't start pod because PVC ns/c is being deleted"),
    (pvc("Pending", ""), None, 'PVC ns/c has non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")'),
    (pvc(), None, 'failed to fetch PV "pv1" from API server: persistentvolumes "pv1" not found'),
    (pvc(), pv(uid=None), 'found PV object "pv1" but it has a nil pv.Spec.ClaimRef indicating it is not yet '
                          "bound to the claim"),
    (pvc(), pv(uid="other"), 'found PV object "pv1" but its pv.Spec.ClaimRef.UID ("other") does not point to '
                             'claim.UID ("claim-uid")'),
    (pvc(), pv(hostPath={"path": "/srv"}, nodeAffinity=AWAY),
     'MountVolume.NodeAffinity check failed for volume "pv1" : no matching NodeSelectorTerms'),
])
async def test_a_claim_that_cannot_be_mounted_yet_waits_with_the_kubelets_message(
        claim: Obj | None, volume: Obj | None, message: str) -> None:
    with pytest.raises(PodConfigError) as error:
        await resolve_claim(VOLUME, "ns", Claims(claim, volume), "node-1", {"kubernetes.io/hostname": "node-1"})
    assert (error.value.reason, error.value.message) == ("FailedMount", message)


@pytest.mark.parametrize(("spec", "read_only", "path"), [
    ({"hostPath": {"path": "/srv/a"}}, False, "/srv/a"),
    ({"local": {"path": "/mnt/disk"}}, True, "/mnt/disk"),
])
async def test_host_path_and_local_volumes_are_directories_on_the_node(spec: Obj, read_only: bool, path: str) -> None:
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "c", "readOnly": read_only}}
    claimed = await resolve_claim(volume, "ns", Claims(pvc(), pv(**spec)), "node-1", {})
    assert (claimed.path, claimed.read_only) == (Path(path), read_only)


async def test_a_csi_volume_is_refused_for_good_naming_what_is_supported() -> None:
    with pytest.raises(UnsupportedPod, match="hostPath and local PersistentVolumes only .no CSI node publishing"):
        await resolve_claim(VOLUME, "ns", Claims(pvc(), pv(csi={"driver": "x", "volumeHandle": "h"})), "n", {})


LABELS = {"kubernetes.io/hostname": "node-1", "zone": "a", "gen": "5"}


@pytest.mark.parametrize(("terms", "matches"), [
    ([], True),  # no required affinity: anywhere
    ([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}], True),
    ([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}], False),
    ([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}], False),
    ([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}], True),
    ([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}], True),
    ([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}], False),
    ([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}], True),
    ([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},  # terms are ORed
      {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}], True),
    ([{}], False),  # an empty term matches nothing
])
def test_node_affinity_is_a_node_selector(terms: list[Obj], matches: bool) -> None:
    affinity = {"required": {"nodeSelectorTerms": terms}} if terms else {}
    assert node_affinity_matches(affinity, "node-1", LABELS) is matches
