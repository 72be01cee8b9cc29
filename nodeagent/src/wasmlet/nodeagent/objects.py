"""Where ConfigMaps and Secrets come from: the API server, or the static manifest folder."""

from __future__ import annotations

from typing import Any, Protocol

from wasmlet.kube import ApiUnavailable, KubeClient, NotFound
from wasmlet.kube.resources import CONFIGMAPS, SECRETS, Resource
from wasmlet.nodeagent.podstore import PodStore

Obj = dict[str, Any]


class ObjectStore(Protocol):
    """Read access to the ConfigMaps and Secrets a Pod references."""

    async def configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def secret(self, namespace: str, name: str) -> Obj | None: ...


class ApiObjects:
    """Reads them from the API server on demand (the kubelet's `Get` strategy), and keeps the last
    answer in the local store, so that Pods restarted while the API is unreachable still get
    their configuration (edge autonomy, as KubeEdge's edged does)."""

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


class LayeredObjects:
    """Mixed mode: the manifest folder's ConfigMaps and Secrets first, then the API's."""

    def __init__(self, static: StaticObjects, api: ObjectStore) -> None:
        self.static = static
        self._api = api

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self.static.configmap(namespace, name) or await self._api.configmap(namespace, name)

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self.static.secret(namespace, name) or await self._api.secret(namespace, name)
