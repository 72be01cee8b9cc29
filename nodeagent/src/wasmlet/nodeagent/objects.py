"""Where ConfigMaps and Secrets come from: watches on the API server, reads through KubeEdge's
MetaServer, or the static manifest folder."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasmlet.api import keys
from wasmlet.kube import ApiUnavailable, KubeClient, NotFound
from wasmlet.kube.reflector import Reflector
from wasmlet.kube.resources import CONFIGMAPS, SECRETS, Resource
from wasmlet.nodeagent.podstore import PodStore

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
LINGER_SECONDS = 30.0  # how long an object no Pod references keeps its watch
MAX_LINGERING = 64  # watches kept for unreferenced objects at most: each holds a connection
AUTHORIZER_WAIT = 5.0  # how long a read waits for a watch the API refused (403) to be allowed


class ObjectStore(Protocol):
    """Read access to the ConfigMaps and Secrets a Pod references."""

    async def configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def secret(self, namespace: str, name: str) -> Obj | None: ...

    def prune(self, pods: list[Obj]) -> None:
        """Forget what none of `pods` (every Pod the node still knows) references."""


def referenced_objects(pod: Obj) -> set[ObjectKey]:
    """The ConfigMaps and Secrets a Pod reads, found where the kubelet's VisitPodConfigmapNames and
    VisitPodSecretNames look (volumes and their projected sources, env, envFrom, imagePullSecrets),
    plus the ConfigMaps of its `configmap://` modules."""
    spec = pod.get("spec") or {}
    found: set[tuple[str, Any]] = {("Secret", s.get("name")) for s in spec.get("imagePullSecrets") or []}
    for volume in spec.get("volumes") or []:
        for source in [volume, *((volume.get("projected") or {}).get("sources") or [])]:
            if "configMap" in source:
                found.add(("ConfigMap", (source["configMap"] or {}).get("name")))
            if "secret" in source:
                secret = source["secret"] or {}
                found.add(("Secret", secret.get("secretName") or secret.get("name")))
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        image = container.get("image") or ""
        if image.startswith(keys.CONFIGMAP_SCHEME):
            found.add(("ConfigMap", image[len(keys.CONFIGMAP_SCHEME):].partition("/")[0]))
        for source in container.get("envFrom") or []:
            found.add(("ConfigMap", (source.get("configMapRef") or {}).get("name")))
            found.add(("Secret", (source.get("secretRef") or {}).get("name")))
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            found.add(("ConfigMap", (value_from.get("configMapKeyRef") or {}).get("name")))
            found.add(("Secret", (value_from.get("secretKeyRef") or {}).get("name")))
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    return {(kind, namespace, name) for kind, name in found if name}


class WatchedObjects:
    """Reads them from one watch per referenced object, as the kubelet's watch-based manager
    (`configMapAndSecretChangeDetectionStrategy: Watch`) does: a list+watch with
    `fieldSelector=metadata.name=NAME` in the object's namespace — what the Node authorizer lets
    a node read for the objects its Pods reference. The first Pod to read an object starts its
    watch and waits for the first list; every later read is answered from memory, so Pods that
    share a ConfigMap cost no request each.

    An object no known Pod references any more keeps its watch for `linger` seconds (at most
    `max_lingering` of them), so Pods that come and go one after another do not list it again
    each time. The last version of each referenced object is also kept in the local store, so
    Pods restarted while the API is unreachable still get their configuration (edge autonomy,
    as KubeEdge's edged does).
    """

    def __init__(self, api: KubeClient, store: PodStore, *, linger: float = LINGER_SECONDS,
                 max_lingering: int = MAX_LINGERING) -> None:
        self._api = api
        self._store = store
        self._linger = linger
        self._max_lingering = max_lingering
        self._items: dict[ObjectKey, _Watched] = {}
        self._refs: dict[Any, set[ObjectKey]] = {}  # Pod uid → what it references (a Pod's spec never changes)
        self._sweep: asyncio.TimerHandle | None = None

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._read(("ConfigMap", namespace, name), lambda: Reflector(
            self._api, CONFIGMAPS, namespace=namespace, field_selector=f"metadata.name={name}"))

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self._read(("Secret", namespace, name), lambda: Reflector(
            self._api, SECRETS, namespace=namespace, field_selector=f"metadata.name={name}"))

    def watched(self) -> dict[ObjectKey, bool]:
        """Every object with a watch, and whether a known Pod references it."""
        return {key: item.idle_since is None for key, item in self._items.items()}

    async def _read(self, key: ObjectKey, new_reflector: Callable[[], Reflector]) -> Obj | None:
        """The object, from its watch (started by this read if it is the first)."""
        item = self._items.get(key) or self._watch(new_reflector(), key)
        if item.idle_since is not None:  # referenced again: back into the local store
            item.idle_since = None
            if item.reflector.synced.is_set():
                self._store.put_object(*key, item.obj)
        reflector = item.reflector
        if not reflector.synced.is_set():
            await reflector.tried.wait()
            if not reflector.synced.is_set() and not isinstance(reflector.error, ApiUnavailable):
                # A 403 while the Node authorizer has not yet seen the Pod that references the
                # object: the watch retries within a fraction of a second.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(AUTHORIZER_WAIT):
                        await reflector.synced.wait()
        if reflector.synced.is_set():
            return item.obj
        cached = self._store.object(*key) if isinstance(reflector.error, ApiUnavailable) else None
        if cached is not None:
            return cached
        raise reflector.error or ApiUnavailable(0, "Unreachable", f"cannot read {key[0]} {key[1]}/{key[2]}")

    def _watch(self, reflector: Reflector, key: ObjectKey) -> _Watched:
        item = _Watched(reflector)
        item.task = asyncio.create_task(reflector.run(_Handler(item, key, self._store)),
                                        name=f"watch {key[0]} {key[1]}/{key[2]}")
        self._items[key] = item
        return item

    def prune(self, pods: list[Obj]) -> None:
        """Drop the ConfigMaps and Secrets no known Pod references from the local store (a Secret
        must not outlive on disk every Pod that used it), and end their watches after `linger`."""
        keep = self._references(pods)
        for key in self._store.object_keys() - keep:
            self._store.put_object(*key, None)
        clock = time.monotonic()
        for key, item in self._items.items():
            if key not in keep and item.idle_since is None:
                item.idle_since = clock
        self._stop_idle(clock)
        if self._sweep is None and any(item.idle_since is not None for item in self._items.values()):
            self._sweep = asyncio.get_running_loop().call_later(self._linger, self._swept)

    def _references(self, pods: list[Obj]) -> set[ObjectKey]:
        """What `pods` reference, each Pod's references found once (a node deleting N Pods prunes N times)."""
        known = {(p.get("metadata") or {}).get("uid"): p for p in pods}
        self._refs = {uid: self._refs.get(uid) or referenced_objects(pod) for uid, pod in known.items()}
        return set().union(*self._refs.values())

    def _swept(self) -> None:
        self._sweep = None
        self._stop_idle(time.monotonic())
        if any(item.idle_since is not None for item in self._items.values()):
            self._sweep = asyncio.get_running_loop().call_later(self._linger, self._swept)

    def _stop_idle(self, clock: float) -> None:
        idle = sorted((item.idle_since, key) for key, item in self._items.items() if item.idle_since is not None)
        expired = [key for since, key in idle if clock - since >= self._linger]
        excess = [key for _, key in idle[:max(0, len(idle) - self._max_lingering)]]
        for key in {*expired, *excess}:
            self._items.pop(key).task.cancel()

    async def close(self) -> None:
        """End every watch."""
        if self._sweep is not None:
            self._sweep.cancel()
        tasks = [item.task for item in self._items.values()]
        self._items.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Watched:
    reflector: Reflector
    task: asyncio.Task[None] = field(init=False)
    obj: Obj | None = None
    idle_since: float | None = None  # when the last Pod referencing it went away


class _Handler:
    """Feeds one watched object into its cache entry and, when its version changed, the local store."""

    def __init__(self, item: _Watched, key: ObjectKey, store: PodStore) -> None:
        self._item = item
        self._key = key
        self._store = store

    async def replace(self, objects: list[Obj]) -> None:
        self._set(objects[0] if objects else None)

    async def apply(self, event_type: str, obj: Obj) -> None:
        self._set(None if event_type == "DELETED" else obj)

    def _set(self, obj: Obj | None) -> None:
        before = self._item.obj
        self._item.obj = obj
        version = (obj or {}).get("metadata", {}).get("resourceVersion")
        changed = before is None or obj is None or version != before.get("metadata", {}).get("resourceVersion")
        if changed and self._item.idle_since is None:
            self._store.put_object(*self._key, obj)


class ApiObjects:
    """Reads them on demand (the kubelet's `Get` strategy), for an agent behind KubeEdge's
    MetaServer: there a read is answered locally from edgecore's store (no request reaches the
    cloud), while a LIST made offline answers an empty list that a watch would take for a
    deletion. The last answer is kept in the local store, so that Pods restarted while the cloud
    is unreachable still get their configuration (edge autonomy, as KubeEdge's edged does)."""

    def __init__(self, api: KubeClient, store: PodStore) -> None:
        self._api = api
        self._store = store
        self._stored: dict[tuple[str, str, str], str | None] = {}  # what the store holds: resourceVersion

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._get(CONFIGMAPS, namespace, name)

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self._get(SECRETS, namespace, name)

    async def _get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        try:
            obj: Obj | None = await self._api.get(resource, name, namespace)
        except NotFound:
            obj = None
        except ApiUnavailable:
            cached = self._store.object(resource.kind, namespace, name)
            if cached is None:
                raise
            return cached
        key = (resource.kind, namespace, name)
        version = obj["metadata"].get("resourceVersion") if obj else None
        if key not in self._stored or self._stored[key] != version:  # every Pod start reads: write on change
            self._store.put_object(resource.kind, namespace, name, obj)
            self._stored[key] = version
        return obj

    def prune(self, pods: list[Obj]) -> None:
        """Drop the ConfigMaps and Secrets no known Pod references, here and from the local store:
        under Pod churn with a ConfigMap per Pod they would pile up, and a Secret would outlive on
        disk every Pod that used it."""
        keep = set().union(*map(referenced_objects, pods))
        for key in self._store.object_keys() - keep:
            self._store.put_object(*key, None)
        self._stored = {key: version for key, version in self._stored.items() if key in keep}


class StaticObjects:
    """ConfigMaps and Secrets found in the manifest folder, for static Pods."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Obj] = {}

    def replace(self, objects: list[Obj]) -> None:
        self.items = {(o["kind"], o["metadata"].get("namespace") or "default", o["metadata"]["name"]): o
                      for o in objects}

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return self.items.get(("ConfigMap", namespace, name))

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return self.items.get(("Secret", namespace, name))

    def prune(self, pods: list[Obj]) -> None:
        """Nothing to do: the folder's objects are replaced with every scan."""


class LayeredObjects:
    """Mixed mode: the manifest folder's ConfigMaps and Secrets first, then the API's."""

    def __init__(self, static: StaticObjects, api: ObjectStore) -> None:
        self.static = static
        self._api = api

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self.static.configmap(namespace, name) or await self._api.configmap(namespace, name)

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self.static.secret(namespace, name) or await self._api.secret(namespace, name)

    def prune(self, pods: list[Obj]) -> None:
        self._api.prune(pods)
