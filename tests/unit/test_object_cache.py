"""The agent's copies of ConfigMaps and Secrets: which a Pod references, one watch per object shared by
every Pod that reads it, and that the rest is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from wasmlet.kube.resources import Resource
from wasmlet.nodeagent.objects import WatchedObjects, referenced_objects
from wasmlet.nodeagent.podstore import PodStore

Obj = dict[str, Any]


def pod(namespace: str = "team", **spec: Any) -> Obj:
    return {"metadata": {"name": "p", "namespace": namespace, "uid": "u"}, "spec": spec}


def test_references_are_found_where_the_kubelet_looks_and_in_configmap_modules() -> None:
    spec = {
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "a", "configMap": {"name": "vol-cm"}},
            {"name": "b", "secret": {"secretName": "vol-secret"}},
            {"name": "c", "projected": {"sources": [{"configMap": {"name": "proj-cm"}},
                                                    {"secret": {"name": "proj-secret"}},
                                                    {"downwardAPI": {"items": []}}]}},
            {"name": "d", "emptyDir": {}},
        ],
        "initContainers": [{"name": "init", "image": "configmap://init-modules/init.wasm"}],
        "containers": [{
            "name": "main", "image": "ghcr.io/example/app:1",
            "envFrom": [{"configMapRef": {"name": "from-cm"}}, {"secretRef": {"name": "from-secret"}}],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "k"}}},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "D", "value": "plain"}],
        }],
    }
    assert referenced_objects(pod(**spec)) == {
        ("Secret", "team", "pull"), ("ConfigMap", "team", "vol-cm"), ("Secret", "team", "vol-secret"),
        ("ConfigMap", "team", "proj-cm"), ("Secret", "team", "proj-secret"), ("ConfigMap", "team", "init-modules"),
        ("ConfigMap", "team", "from-cm"), ("Secret", "team", "from-secret"), ("ConfigMap", "team", "key-cm"),
        ("Secret", "team", "key-secret"),
    }
    assert referenced_objects({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "m"}]}}) == set()


class FakeApi:
    """Answers the object watches' LISTs (by `metadata.name` field selector) from a dict of objects by
    (kind, namespace, name), and counts them; each watch streams what `push` sends it."""

    def __init__(self, objects: dict[tuple[str, str, str], Obj]) -> None:
        self.objects = objects
        self.lists: list[tuple[str, str, str]] = []
        self.streams: dict[tuple[str, str, str], asyncio.Queue[Obj]] = {}

    async def list(self, resource: Resource, namespace: str, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> Obj:
        key = (resource.kind, namespace, (field_selector or "").removeprefix("metadata.name="))
        self.lists.append(key)
        found = self.objects.get(key)
        return {"metadata": {"resourceVersion": "1"}, "items": [found] if found else []}

    async def watch(self, resource: Resource, namespace: str, *, field_selector: str | None = None,
                    **_: Any) -> AsyncIterator[Obj]:
        key = (resource.kind, namespace, (field_selector or "").removeprefix("metadata.name="))
        queue = self.streams.setdefault(key, asyncio.Queue())
        while True:
            yield await queue.get()


def configmap(name: str, version: str = "1") -> Obj:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "resourceVersion": version},
            "data": {"k": name}}


async def test_pods_sharing_an_object_list_it_once_and_see_its_changes_through_the_watch(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "agent.db")
    api = FakeApi({("ConfigMap", "default", "shared"): configmap("shared")})
    objects = WatchedObjects(cast(Any, api), store)
    try:
        for _ in range(20):  # twenty Pods start, each reading the ConfigMap
            assert (await objects.configmap("default", "shared") or {})["data"] == {"k": "shared"}
        assert await objects.configmap("default", "missing") is None
        assert api.lists == [("ConfigMap", "default", "shared"), ("ConfigMap", "default", "missing")]

        changed = {**configmap("shared", "2"), "data": {"k": "new"}}
        await api.streams[("ConfigMap", "default", "shared")].put({"type": "MODIFIED", "object": changed})
        async with asyncio.timeout(5):
            while (await objects.configmap("default", "shared") or {}).get("data") != {"k": "new"}:
                await asyncio.sleep(0.001)
        assert store.object("ConfigMap", "default", "shared") == changed  # for a restart without the API
        assert len(api.lists) == 2
    finally:
        await objects.close()
        store.close()


async def test_objects_no_known_pod_references_leave_the_local_store_and_their_watches_end(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "agent.db")
    names = [f"cm-{i}" for i in range(50)]
    api = FakeApi({("ConfigMap", "default", n): configmap(n) for n in names})
    objects = WatchedObjects(cast(Any, api), store, linger=0.05, max_lingering=10)
    try:
        for name in names:  # one ConfigMap per Pod, each read once as its Pod starts
            assert await objects.configmap("default", name) is not None
        assert len(store.object_keys()) == 50
        still_running = pod("default", containers=[{"name": "m", "image": "configmap://cm-7/app.wasm"}])

        objects.prune([still_running])

        assert store.object_keys() == {("ConfigMap", "default", "cm-7")}
        watched = objects.watched()
        assert watched[("ConfigMap", "default", "cm-7")] is True
        assert len(watched) == 11  # the referenced one, and at most 10 lingering
        async with asyncio.timeout(5):
            while len(objects.watched()) > 1:  # the lingering ones end after `linger`
                await asyncio.sleep(0.01)
        objects.prune([])
        assert store.object_keys() == set()
    finally:
        await objects.close()
        store.close()
