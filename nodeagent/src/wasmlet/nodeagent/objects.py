"""Where ConfigMaps and Secrets come from: the API server, or the static manifest folder."""

from __future__ import annotations

from typing import Any, Protocol

from wasmlet.kube import KubeClient, NotFound
from wasmlet.kube.resources import CONFIGMAPS, SECRETS

Obj = dict[str, Any]


class ObjectStore(Protocol):
    """Read access to the ConfigMaps and Secrets a Pod references."""

    async def configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def secret(self, namespace: str, name: str) -> Obj | None: ...


class ApiObjects:
    """Reads them from the API server on demand (the kubelet's `Get` strategy, without a cache)."""

    def __init__(self, api: KubeClient) -> None:
        self._api = api

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self._api.get(CONFIGMAPS, name, namespace)
        except NotFound:
            return None

    async def secret(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self._api.get(SECRETS, name, namespace)
        except NotFound:
            return None


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
