"""Kubelet semantics on a real control plane: the agent as a process, registered as its own Node,
runs the scenarios the integration tests run on the test API — two containers crashing on their
own schedules with `--previous` logs per container through the API server, the phase through a
crash loop, PodInitializing, ErrImagePull then ImagePullBackOff, a claim bound to a hostPath
PersistentVolume, and an agent SIGTERM + restart that ends no Pod; and WASI 0.2 components
(argv/env and logs through the API server, exit status, a deadline, wasmer refusing one).

The agent uses the e2e kubeconfig, or with WASMLET_E2E_AGENT_KUBECONFIG and WASMLET_E2E_AGENT_NODE
a node identity (`system:node:<node>`), so that the Node authorizer and NodeRestriction confine it
as they confine a kubelet; every Pod then references its module ConfigMap as a volume, which is
what lets a node identity read it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.kube import AlreadyExists, ApiError, Forbidden, KubeClient, NotFound, load_config
from wasmlet.kube.resources import (
    NAMESPACES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    RUNTIME_CLASSES,
)

from tests.integration.agent_helpers import module_bytes, put_module_configmap, wait_for, wasm_pod
from tests.integration.component_helpers import component_path
from tests.integration.faults import AgentProcess

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]


class Cluster:
    """One run's namespace, Node and PersistentVolume on the real cluster, taken down after."""

    def __init__(self, api: KubeClient, kubeconfig: Path, run_id: str, work: Path) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.ns = f"kubelet-{run_id}"
        self.agent_kubeconfig = Path(os.environ.get("WASMLET_E2E_AGENT_KUBECONFIG") or kubeconfig)
        self.node = os.environ.get("WASMLET_E2E_AGENT_NODE") or f"kubelet-{run_id}"
        self.pv = f"kubelet-{run_id}-pv"
        self.work = work
        self.created_runtime_classes: list[str] = []

    async def setup(self) -> None:
        for doc in yaml.safe_load_all((ROOT / "manifests" / "10-runtimeclasses.yaml").read_text()):
            if doc and doc.get("kind") == "RuntimeClass":
                with contextlib.suppress(AlreadyExists):
                    await self.api.create(RUNTIME_CLASSES, doc)
                    self.created_runtime_classes.append(doc["metadata"]["name"])
        await self.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})
        modules = {f"{m}.wasm": module_bytes(m) for m in ("exit", "ticker", "files", "hello")}
        modules.update({f"{c}-component.wasm": component_path(c).read_bytes() for c in ("echo", "exit", "loop")})
        await put_module_configmap(self.api, self.ns, "modules", modules)

    async def create_pod(self, pod: Obj) -> Obj:
        """Create, retrying while the namespace's default ServiceAccount does not exist yet."""
        pod["metadata"]["namespace"] = self.ns
        pod["spec"]["automountServiceAccountToken"] = False
        # A node identity may read only the ConfigMaps its Pods reference (the Node authorizer).
        pod["spec"].setdefault("volumes", []).append({"name": "modules", "configMap": {"name": "modules"}})
        for _ in range(100):
            try:
                created: Obj = await self.api.create(PODS, pod)
                return created
            except Forbidden:
                await asyncio.sleep(0.2)
        raise AssertionError("the namespace's default ServiceAccount never appeared")

    async def drain(self) -> None:
        """Delete the namespace while the agent still runs, so that it ends its Pods as a kubelet does
        (graceful deletion), the claim and then the volume can go; wait until they are gone."""
        with contextlib.suppress(ApiError):
            await self.api.delete(NAMESPACES, self.ns)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(120):
                while not await _gone(self.api, NAMESPACES, self.ns):
                    await asyncio.sleep(0.5)
        with contextlib.suppress(ApiError):
            await self.api.delete(PERSISTENT_VOLUMES, self.pv)

    async def cleanup(self) -> None:
        for resource, namespace, name in ((NAMESPACES, None, self.ns), (PERSISTENT_VOLUMES, None, self.pv),
                                          (NODES, None, self.node),
                                          *((RUNTIME_CLASSES, None, n) for n in self.created_runtime_classes)):
            with contextlib.suppress(ApiError):
                await self.api.delete(resource, name, namespace)


@pytest.fixture()
async def cluster(e2e_kubeconfig: Path, run_id: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with KubeClient(load_config(str(e2e_kubeconfig))) as api:
        trip = Cluster(api, e2e_kubeconfig, run_id, tmp_path)
        try:
            await trip.setup()
            yield trip
        finally:
            await trip.cleanup()


async def eventually(api: KubeClient, ns: str, name: str, predicate: Any, timeout: float = 90.0) -> Obj:
    return await wait_for(api, PODS, name, ns, predicate, timeout=timeout)


async def _gone(api: KubeClient, resource: Any, name: str) -> bool:
    try:
        await api.get(resource, name)
    except NotFound:
        return True
    return False


def statuses(pod: Obj, key: str = "containerStatuses") -> dict[str, Obj]:
    return {s["name"]: s for s in (pod.get("status") or {}).get(key) or []}


def waiting(status: Obj) -> str:
    return str(((status.get("state") or {}).get("waiting") or {}).get("reason", ""))


@pytest.mark.timeout(900)
async def test_kubelet_semantics_on_a_real_control_plane(cluster: Cluster) -> None:
    agent = AgentProcess(str(cluster.agent_kubeconfig), cluster.work / "state", node_name=cluster.node,
                         WASMLET_RESTART_BACKOFF_SECONDS="1")
    await agent.start()
    try:
        await _scenarios(cluster, agent)
    except BaseException:
        print(f"--- the agent's log ---\n{agent.log()[-8000:]}")
        raise
    finally:
        await cluster.drain()
        await agent.stop()


async def _scenarios(cluster: Cluster, agent: AgentProcess) -> None:
    api, ns, node = cluster.api, cluster.ns, cluster.node
    image = "configmap://modules/"
    cats = wasm_pod("cats", node, image + "exit.wasm", restart="Always")
    cats["spec"]["containers"] = [
        {"name": "floofycat", "image": image + "exit.wasm", "args": ["1"]},
        {"name": "neatcat", "image": image + "ticker.wasm", "args": ["--interval-ms", "100", "--count", "3"]}]
    await cluster.create_pod(cats)
    init = wasm_pod("init", node, image + "ticker.wasm", container={"args": ["--interval-ms", "100", "--count", "2"]})
    init["spec"]["initContainers"] = [{"name": "setup", "image": image + "ticker.wasm",
                                       "args": ["--interval-ms", "100", "--count", "50"]}]
    await cluster.create_pod(init)
    pulling = await cluster.create_pod(wasm_pod("pull", node, "127.0.0.1:9/nowhere/module:v1"))
    reasons = asyncio.create_task(_pull_reasons(api, ns, pulling["metadata"]["resourceVersion"]))
    await cluster.create_pod(wasm_pod("svc", node, image + "ticker.wasm", restart="Always",
                                      terminationGracePeriodSeconds=0, container={"args": ["--interval-ms", "500"]}))
    await cluster.create_pod(wasm_pod("job", node, image + "hello.wasm", restart="Never"))

    seen = await eventually(api, ns, "init", lambda p: "running" in (
        statuses(p, "initContainerStatuses").get("setup", {}).get("state") or {}))
    assert waiting(statuses(seen)["main"]) == "PodInitializing" and seen["status"]["phase"] == "Pending"

    assert await reasons == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"]

    seen = await eventually(api, ns, "cats", lambda p: statuses(p).get("floofycat", {}).get("restartCount", 0) >= 3
                            and waiting(statuses(p)["floofycat"]) == "CrashLoopBackOff"
                            and statuses(p).get("neatcat", {}).get("restartCount", 0) >= 2, timeout=180)
    assert seen["status"]["phase"] == "Running"
    assert statuses(seen)["floofycat"]["lastState"]["terminated"]["exitCode"] == 1
    assert statuses(seen)["neatcat"]["lastState"]["terminated"]["reason"] == "Completed"
    text = await _log(cluster, "cats", container="floofycat", previous="true")
    assert text.strip() == "exit: exiting with code 1"
    text = await _log(cluster, "cats", container="neatcat", previous="true")
    assert len(text.splitlines()) == 3

    await _claim(cluster)

    await eventually(api, ns, "svc", lambda p: "running" in (statuses(p).get("main", {}).get("state") or {}))
    await eventually(api, ns, "job", lambda p: p["status"].get("phase") == "Succeeded")
    assert await agent.stop() == 0
    assert (await api.get(PODS, "svc", ns))["status"]["phase"] == "Running"
    await agent.start()
    seen = await eventually(api, ns, "svc", lambda p: statuses(p).get("main", {}).get("restartCount") == 1
                            and "running" in statuses(p)["main"]["state"])
    assert seen["status"]["phase"] == "Running"
    assert seen["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 143
    job = await api.get(PODS, "job", ns)
    assert job["status"]["phase"] == "Succeeded" and job["status"]["containerStatuses"][0]["restartCount"] == 0


async def _pull_reasons(api: KubeClient, ns: str, since: str) -> list[str]:
    """The first four waiting reasons of the failing pull, as the API server's watch saw them."""
    reasons: list[str] = []
    async with asyncio.timeout(120):
        async for event in api.watch(PODS, ns, field_selector="metadata.name=pull", resource_version=since):
            reason = waiting(statuses(event.get("object") or {}).get("main", {}))
            if reason in ("ErrImagePull", "ImagePullBackOff") and (not reasons or reasons[-1] != reason):
                reasons.append(reason)
            if len(reasons) == 4:
                return reasons
    return reasons


async def _log(cluster: Cluster, pod: str, **params: str) -> str:
    """GET pods/NAME/log through the real API server (and its kubelet proxy), as `kubectl logs` does."""
    status, text = await cluster.api.get_text(PODS.path(cluster.ns, pod, "log"), params=params)
    assert status == 200, (status, text)
    return text


async def _claim(cluster: Cluster) -> None:
    api, ns = cluster.api, cluster.ns
    disk = cluster.work / "disk"
    disk.mkdir()
    (disk / "hello.txt").write_text("from a persistent volume\n")
    claim = await api.create(PERSISTENT_VOLUME_CLAIMS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}},
                 "storageClassName": "", "volumeName": cluster.pv}})
    await api.create(PERSISTENT_VOLUMES, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": cluster.pv},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(disk)},
                 "claimRef": {"namespace": ns, "name": "data", "uid": claim["metadata"]["uid"]}}})
    with contextlib.suppress(ApiError):  # the PV controller binds it too, if it runs
        await api.patch(PERSISTENT_VOLUME_CLAIMS, "data", {"status": {"phase": "Bound"}}, ns, subresource="status")
    pod = wasm_pod("reader", cluster.node, "configmap://modules/files.wasm", restart="Never", runtime="wasmtime",
                   container={"args": ["read", "/data/hello.txt"],
                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                   volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    await cluster.create_pod(pod)
    await eventually(api, ns, "reader", lambda p: p["status"].get("phase") == "Succeeded")
    assert await _log(cluster, "reader") == "from a persistent volume\n"


@pytest.mark.timeout(600)
async def test_components_on_a_real_control_plane(cluster: Cluster) -> None:
    agent = AgentProcess(str(cluster.agent_kubeconfig), cluster.work / "state", node_name=cluster.node)
    await agent.start()
    try:
        await _components(cluster)
    except BaseException:
        print(f"--- the agent's log ---\n{agent.log()[-8000:]}")
        raise
    finally:
        await cluster.drain()
        await agent.stop()


async def _components(cluster: Cluster) -> None:
    api, ns, node = cluster.api, cluster.ns, cluster.node
    image = "configmap://modules/"
    await cluster.create_pod(wasm_pod("echo", node, image + "echo-component.wasm", runtime="wasmtime", container={
        "args": ["a b"], "env": [{"name": "GREETING", "value": "hi"}]}))
    await cluster.create_pod(wasm_pod("exit", node, image + "exit-component.wasm", runtime="wasmtime",
                                      container={"args": ["3"]}))
    await cluster.create_pod(wasm_pod("spin", node, image + "loop-component.wasm", runtime="wasmtime",
                                      activeDeadlineSeconds=2, terminationGracePeriodSeconds=0))
    await cluster.create_pod(wasm_pod("wasmer", node, image + "echo-component.wasm", runtime="wasmer"))
    await eventually(api, ns, "echo", lambda p: p["status"].get("phase") == "Succeeded")
    assert await _log(cluster, "echo") == "argv[0]=main\nargv[1]=a b\nGREETING=hi\n"
    seen = await eventually(api, ns, "exit", lambda p: p["status"].get("phase") == "Failed")
    assert statuses(seen)["main"]["state"]["terminated"]["exitCode"] == 1  # a component exits 0 or 1
    seen = await eventually(api, ns, "spin", lambda p: p["status"].get("phase") == "Failed")
    assert seen["status"]["reason"] == "DeadlineExceeded"
    seen = await eventually(api, ns, "wasmer", lambda p: p["status"].get("phase") == "Failed")
    assert seen["status"]["reason"] == "UnsupportedComponent" and "wasmtime" in seen["status"]["message"]
