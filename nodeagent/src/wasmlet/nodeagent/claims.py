"""PersistentVolumeClaims: find the host directory a claim is bound to, as the kubelet does.

The kubelet's volume manager (`getPVCExtractPV`, `getPVSpec` in the desired-state-of-world
populator) reads the claim, requires it `Bound` to a volume, reads that PersistentVolume and
requires its `claimRef` to point back at the claim; the mount then checks the volume's node
affinity (`MountVolume.NodeAffinity`). Every refusal here is worded as the kubelet words it.
Until the claim is bound (or the volume exists) the Pod waits and retries, as a kubelet's does.

The agent mounts `hostPath` and `local` PersistentVolumes, which are directories on this node.
Volumes of other types (CSI, NFS, …) need a volume plugin or a CSI node publisher, which the
agent does not have: such a Pod fails with `UnsupportedVolume`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from wasmlet.kube import KubeClient, NotFound
from wasmlet.kube.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES
from wasmlet.nodeagent.errors import PodConfigError, UnsupportedPod
from wasmlet.nodeagent.runtime import Mount

Obj = dict[str, Any]


class ClaimSource(Protocol):
    """Read access to PersistentVolumeClaims and PersistentVolumes; None when one does not exist."""

    async def claim(self, namespace: str, name: str) -> Obj | None: ...

    async def volume(self, name: str) -> Obj | None: ...


class ApiClaims:
    """Reads claims and volumes from the API server when a Pod starts (the kubelet's Get)."""

    def __init__(self, api: KubeClient) -> None:
        self._api = api

    async def claim(self, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = await self._api.get(PERSISTENT_VOLUME_CLAIMS, name, namespace)
            return found
        except NotFound:
            return None

    async def volume(self, name: str) -> Obj | None:
        try:
            found: Obj = await self._api.get(PERSISTENT_VOLUMES, name)
            return found
        except NotFound:
            return None


class NoClaims:
    """Standalone mode: there is no API server to bind claims."""

    async def claim(self, namespace: str, name: str) -> Obj | None:
        raise UnsupportedPod(f"persistentVolumeClaim {namespace}/{name}: claims need an API server, and this "
                             "agent runs standalone", reason="UnsupportedVolume")

    async def volume(self, name: str) -> Obj | None:
        return None


@dataclass(frozen=True)
class ClaimedVolume:
    """A claim's volume on this node: its directory, and whether the Pod may only read it."""

    path: Path
    read_only: bool


async def resolve_claim(volume: Obj, namespace: str, claims: ClaimSource, node_name: str,
                        node_labels: dict[str, str]) -> ClaimedVolume:
    """The directory of a `persistentVolumeClaim` Pod volume, or the kubelet's refusal."""
    source = volume.get("persistentVolumeClaim") or {}
    claim_name = source.get("claimName") or ""
    pvc = await claims.claim(namespace, claim_name)
    if pvc is None:
        raise PodConfigError(f"failed to fetch PVC {namespace}/{claim_name} from API server: "
                             f'persistentvolumeclaims "{claim_name}" not found', reason="FailedMount")
    if (pvc.get("metadata") or {}).get("deletionTimestamp"):
        raise PodConfigError(f"can't start pod because PVC {namespace}/{claim_name} is being deleted",
                             reason="FailedMount")
    phase = (pvc.get("status") or {}).get("phase") or ""
    pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
    if phase != "Bound" or not pv_name:
        raise PodConfigError(f'PVC {namespace}/{claim_name} has non-bound phase ("{phase}") or empty '
                             f'pvc.Spec.VolumeName ("{pv_name}")', reason="FailedMount")
    pv = await claims.volume(pv_name)
    if pv is None:
        raise PodConfigError(f'failed to fetch PV "{pv_name}" from API server: persistentvolumes "{pv_name}" '
                             "not found", reason="FailedMount")
    spec = pv.get("spec") or {}
    claim_ref = spec.get("claimRef")
    claim_uid = (pvc.get("metadata") or {}).get("uid")
    if not claim_ref:
        raise PodConfigError(f'found PV object "{pv_name}" but it has a nil pv.Spec.ClaimRef indicating it is '
                             "not yet bound to the claim", reason="FailedMount")
    if claim_ref.get("uid") != claim_uid:
        raise PodConfigError(f'found PV object "{pv_name}" but its pv.Spec.ClaimRef.UID ("{claim_ref.get("uid")}") '
                             f'does not point to claim.UID ("{claim_uid}")', reason="FailedMount")
    if not node_affinity_matches(spec.get("nodeAffinity") or {}, node_name, node_labels):
        raise PodConfigError(f'MountVolume.NodeAffinity check failed for volume "{pv_name}" : '
                             "no matching NodeSelectorTerms", reason="FailedMount")
    return ClaimedVolume(_directory(spec, pv_name, volume.get("name", "")), bool(source.get("readOnly")))


def _directory(spec: Obj, pv_name: str, volume: str) -> Path:
    for kind in ("hostPath", "local"):
        path = (spec.get(kind) or {}).get("path")
        if path:
            return Path(path)
    kinds = [k for k in spec if isinstance(spec[k], dict) and k not in ("claimRef", "nodeAffinity", "capacity")]
    raise UnsupportedPod(f"volume {volume!r}: PersistentVolume {pv_name!r} is of type {', '.join(kinds) or 'unknown'}; "
                         "wasmlet mounts hostPath and local PersistentVolumes only (no CSI node publishing)",
                         reason="UnsupportedVolume")


def node_affinity_matches(affinity: Obj, node_name: str, labels: dict[str, str]) -> bool:
    """A PersistentVolume's `nodeAffinity.required`: any one term whose every requirement holds."""
    required = affinity.get("required")
    if not required:
        return True
    return any(_term_matches(term, node_name, labels) for term in required.get("nodeSelectorTerms") or [])


def _term_matches(term: Obj, node_name: str, labels: dict[str, str]) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node (v1 NodeSelectorTerm)
    return all(_requirement(r, labels) for r in expressions) and \
        all(_requirement(r, {"metadata.name": node_name}) for r in fields)


def _requirement(req: Obj, labels: dict[str, str]) -> bool:
    key, operator, values = req.get("key", ""), req.get("operator", ""), list(req.get("values") or [])
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


async def resolve_claims(volumes: list[Obj], namespace: str, claims: ClaimSource, node_name: str,
                         node_labels: dict[str, str]) -> dict[str, ClaimedVolume]:
    """{volume name: its claimed directory} for every `persistentVolumeClaim` volume of a Pod."""
    return {v["name"]: await resolve_claim(v, namespace, claims, node_name, node_labels)
            for v in volumes if "persistentVolumeClaim" in v}


def claim_mounts(mounts: list[Mount], volume_mounts: list[Obj], claimed: dict[str, ClaimedVolume]) -> list[Mount]:
    """A claim the Pod opened `readOnly` is read-only in every container that mounts it."""
    return [replace(m, read_only=True) if claimed.get(vm["name"], _WRITABLE).read_only else m
            for m, vm in zip(mounts, volume_mounts, strict=True)]


_WRITABLE = ClaimedVolume(Path("/"), False)
