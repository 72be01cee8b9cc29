"""Where ConfigMaps and Secrets come from: the API server, or the static manifest folder."""

from __future__ import annotations

from typing import Any, Protocol

from wasmlet.api import keys
from wasmlet.kube import ApiUnavailable, KubeClient, NotFound
from wasmlet.kube.resources import CONFIGMAPS, SECRETS, Resource
from wasmlet.nodeagent.podstore import PodStore

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


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
