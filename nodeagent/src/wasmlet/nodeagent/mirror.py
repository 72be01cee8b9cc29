"""Mirror Pods: how static Pods show in the API when the agent also has an API server (mixed mode).

As the kubelet does: for each static Pod from the manifest folder the agent creates a *mirror*
Pod in the API — same name and spec, bound to this node, annotated
`kubernetes.io/config.mirror: <config hash>`, owned by the Node — and reports the static Pod's
status and events on it. The mirror is only a view: deleting it does not stop the static Pod
(the agent creates it again); editing the file replaces the static Pod and its mirror. The API
watch ignores mirror Pods, so the agent never runs them twice.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from wasmlet.api.podtemplate import MODULE_VOLUME
from wasmlet.kube import AlreadyExists, ApiError, Conflict, KubeClient, NotFound
from wasmlet.kube.resources import NODES, PODS
from wasmlet.nodeagent.pods import PodRef

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
HASH_ANNOTATION = "kubernetes.io/config.hash"


def is_mirror(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def mirror_of(static_pod: Obj, node: Obj) -> Obj:
    """The mirror Pod for a static Pod (pure): its metadata, annotations and spec, owned by the Node."""
    meta = static_pod["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[MIRROR_ANNOTATION] = annotations.get(HASH_ANNOTATION, meta["uid"])
    node_meta = node["metadata"]
    spec = copy.deepcopy(static_pod.get("spec") or {})
    # The module's ConfigMap of a static WasmWorkload is in the manifest folder, not the API; and
    # NodeRestriction refuses a node's mirror Pod that references a ConfigMap.
    if spec.get("volumes"):
        spec["volumes"] = [v for v in spec["volumes"] if v.get("name") != MODULE_VOLUME]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": meta["name"], "namespace": meta.get("namespace") or "default",
            "labels": dict(meta.get("labels") or {}), "annotations": annotations,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_meta["name"],
                                 "uid": node_meta["uid"], "controller": True}],
        },
        "spec": spec,
    }


class MirrorReporter:
    """Wraps the API reporter: static Pods' status and events go to their mirror Pods."""

    def __init__(self, inner: Any, api: KubeClient, node_name: str) -> None:
        self.inner = inner
        self._api = api
        self._node_name = node_name
        self._static: dict[str, Obj] = {}  # static uid → static Pod
        self._mirrors: dict[str, PodRef] = {}  # static uid → its mirror in the API
        self._latest: dict[str, Obj] = {}  # static uid → its newest status, for a new mirror

    def update(self, ref: PodRef, status: Obj) -> None:
        if ref.uid not in self._static:
            self.inner.update(ref, status)
            return
        self._latest[ref.uid] = status
        if ref.uid in self._mirrors:
            self.inner.update(self._mirrors[ref.uid], status)

    def event(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
        target = self._mirrors.get(ref.uid, ref) if ref.uid in self._static else ref
        self.inner.event(target, type_, reason, message, container)

    def gone(self, ref: PodRef) -> None:
        if ref.uid not in self._static:
            self.inner.gone(ref)

    async def finished(self, ref: PodRef, deleting: bool) -> None:
        if ref.uid in self._static:
            mirror = self._mirrors.get(ref.uid)
            if mirror is not None:
                await self.inner.flush_one(mirror)
            return  # a static Pod ends with its file, never through the API
        await self.inner.finished(ref, deleting)

    async def run(self) -> None:
        await self.inner.run()

    async def drain(self) -> None:
        await self.inner.drain()

    async def sync(self, static_pods: list[Obj]) -> None:
        """Make the API's mirror Pods match the static Pods (create, recreate, delete)."""
        self._static = {p["metadata"]["uid"]: p for p in static_pods}
        for gone in set(self._latest) - set(self._static):
            self._latest.pop(gone, None)
            self._mirrors.pop(gone, None)
        try:
            node = await self._api.get(NODES, self._node_name)
            listing = await self._api.list(PODS, field_selector=f"spec.nodeName={self._node_name}")
        except ApiError as exc:
            log.debug("mirror pods not synced: %s", exc)
            return
        existing = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in listing["items"] if is_mirror(p)}
        wanted = set()
        for uid, pod in self._static.items():
            mirror = mirror_of(pod, node)
            key = (mirror["metadata"]["namespace"], mirror["metadata"]["name"])
            wanted.add(key)
            current = existing.get(key)
            if current is not None and current["metadata"]["annotations"].get(MIRROR_ANNOTATION) == \
                    mirror["metadata"]["annotations"][MIRROR_ANNOTATION] and not current["metadata"].get("deletionTimestamp"):
                self._found(uid, current)
                continue
            if current is not None:
                await self._delete(current)
            await self._create(uid, mirror)
        for key, stale in existing.items():
            if key not in wanted:
                await self._delete(stale)

    def _found(self, uid: str, mirror: Obj) -> None:
        meta = mirror["metadata"]
        ref = PodRef(meta["namespace"], meta["name"], meta["uid"])
        if self._mirrors.get(uid) != ref:  # a new mirror (first, or made again): tell it everything
            self._mirrors[uid] = ref
            if uid in self._latest:
                self.inner.update(ref, self._latest[uid])

    async def _create(self, uid: str, mirror: Obj) -> None:
        try:
            self._found(uid, await self._api.create(PODS, mirror))
        except AlreadyExists:
            pass  # a late one from before: the next sync adopts or replaces it
        except ApiError as exc:
            log.warning("cannot create mirror pod %s/%s: %s", mirror["metadata"]["namespace"],
                        mirror["metadata"]["name"], exc)

    async def _delete(self, mirror: Obj) -> None:
        meta = mirror["metadata"]
        try:
            await self._api.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0, uid=meta["uid"])
        except (NotFound, Conflict):
            pass
        except ApiError as exc:
            log.warning("cannot delete mirror pod %s/%s: %s", meta["namespace"], meta["name"], exc)
