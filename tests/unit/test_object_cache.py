"""The agent's copies of ConfigMaps and Secrets: which a Pod references, and that the rest is dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from wasmlet.kube import NotFound
from wasmlet.kube.resources import Resource
from wasmlet.nodeagent.objects import ApiObjects, referenced_objects
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
    """Answers GETs from a dict of objects by (kind, namespace, name)."""

    def __init__(self, objects: dict[tuple[str, str, str], Obj]) -> None:
        self.objects = objects

    async def get(self, resource: Resource, name: str, namespace: str) -> Obj:
        try:
            return self.objects[(resource.kind, namespace, name)]
        except KeyError:
            raise NotFound(404, "NotFound", f"{name} not found") from None


def configmap(name: str) -> Obj:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
            "data": {"k": name}}


async def test_objects_no_known_pod_references_leave_memory_and_the_local_store(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "agent.db")
    names = [f"cm-{i}" for i in range(50)]
    api = FakeApi({("ConfigMap", "default", n): configmap(n) for n in names})
    objects = ApiObjects(cast(Any, api), store)
    try:
        for name in names:  # one ConfigMap per Pod, each read once as its Pod starts
            assert await objects.configmap("default", name) is not None
        assert len(store.object_keys()) == 50
        still_running = pod("default", containers=[{"name": "m", "image": "configmap://cm-7/app.wasm"}])

        objects.prune([still_running])

        assert store.object_keys() == {("ConfigMap", "default", "cm-7")}
        assert list(objects._stored) == [("ConfigMap", "default", "cm-7")]
        objects.prune([])
        assert store.object_keys() == set() and objects._stored == {}
    finally:
        store.close()
