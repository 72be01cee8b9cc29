"""The operator, embedded in the test's event loop, against the test Kubernetes API over HTTP.

The CRD is installed from crds/ exactly as a user would, Nodes are registered as an agent
registers them, and Pod status is written through /status as an agent writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from wasmlet.api import keys
from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import CRDS, NAMESPACES, PODS, WASM_WORKLOADS
from wasmlet.operator.main import run_operator
from wasmlet.operator.settings import OperatorSettings

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "wasmworkloads.wasmlet.dev.yaml"
NS = "apps"
SHA = "0123456789abcdef" * 4
T = TypeVar("T")


def wasm_node(name: str, *, pods: int = 110, runtimes: tuple[str, ...] = ("wasmer",)) -> dict[str, Any]:
    """A Node as the agent registers it (DESIGN.md §4)."""
    labels = {
        "kubernetes.io/arch": "wasm32-wasi", "kubernetes.io/os": "wasm32-wasi", "kubernetes.io/hostname": name,
        "type": "wasmlet", "wasmlet.dev/agent": "true", **{keys.runtime_label(r): "true" for r in runtimes},
    }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "kubernetes.io/arch", "value": "wasm32-wasi", "effect": e}
                            for e in ("NoSchedule", "NoExecute")]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "wasmlet is ready",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": {"pods": str(pods), "cpu": "2", "memory": "1Gi"},
            "allocatable": {"pods": str(pods), "cpu": "2", "memory": "1Gi"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.34.0-wasmlet", "containerRuntimeVersion": "wasmer://5.0",
                         "architecture": "wasm32-wasi", "operatingSystem": "wasm32-wasi"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }


def workload(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("module", {"image": "registry.local/hello:1"})
    return {"apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND,
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture()
async def api(kube_api: KubeAPI) -> AsyncIterator[KubeClient]:
    """A client for the test's own requests, with the CRD installed as a user would install it."""
    async with KubeClient(load_config(kube_api.url)) as client:
        await client.create(CRDS, yaml.safe_load(CRD_PATH.read_text()))
        yield client


@contextlib.asynccontextmanager
async def running_operator(kube_api: KubeAPI, **overrides: Any) -> AsyncIterator[None]:
    """The operator in this event loop, stopped through kopf's stop flag (its cleanup runs)."""
    settings = OperatorSettings(**{"namespace": NS, "retry_seconds": 0.2, **overrides})
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_operator(settings, load_config(kube_api.url),
                                            stop_flag=stop, ready_flag=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED, timeout=10)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    try:
        if task.done():
            task.result()  # the operator died at startup: raise why
        if not ready.is_set():
            raise TimeoutError("the operator did not start within 10s")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def live_pods(api: KubeClient, name: str) -> list[dict[str, Any]]:
    listing = await api.list(PODS, NS, label_selector=f"{keys.LABEL_WORKLOAD}={name}")
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


async def pods_count(api: KubeClient, name: str, count: int, *,
                     exclude: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    pods = [p for p in await live_pods(api, name)
            if not exclude or p["metadata"]["name"] != exclude["metadata"]["name"]]
    return pods if len(pods) == count else None


async def make_ready(api: KubeClient, pod: dict[str, Any]) -> None:
    """What the agent reports once the module runs: Running, Ready, a running container."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = [{"type": t, "status": "True", "lastTransitionTime": now}
             for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    status = {"phase": "Running", "conditions": ready, "startTime": now, "containerStatuses": [{
        "name": "main", "ready": True, "started": True, "restartCount": 0,
        "image": pod["spec"]["containers"][0]["image"], "imageID": f"registry.local/hello@sha256:{SHA}",
        "state": {"running": {"startedAt": now}},
    }]}
    await api.patch(PODS, pod["metadata"]["name"], {"status": status}, NS, subresource="status")


def condition(body: dict[str, Any] | None, kind: str = "Ready") -> dict[str, Any]:
    for entry in ((body or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return {}


async def test_replicas_are_placed_made_ready_and_scaled(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    for name in ("wasm-1", "wasm-2"):
        kube_api.put(wasm_node(name))
    async with running_operator(kube_api):
        created = await api.create(WASM_WORKLOADS, workload("hello", replicas=2), NS)
        uid = created["metadata"]["uid"]

        pods = await eventually(lambda: pods_count(api, "hello", 2), what="two pods")
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["wasm-1", "wasm-2"]  # spread
        for pod in pods:
            assert pod["metadata"]["name"].startswith("hello-")
            assert pod["metadata"]["ownerReferences"] == [{
                "apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND, "name": "hello", "uid": uid,
                "controller": True, "blockOwnerDeletion": True}]
            assert pod["spec"]["runtimeClassName"] == "wasmer"
            for toleration in keys.wasm_tolerations():
                assert toleration in pod["spec"]["tolerations"]
            assert pod["spec"]["nodeSelector"]["kubernetes.io/arch"] == "wasm32-wasi"
            assert pod["spec"]["containers"][0]["image"] == "registry.local/hello:1"

        for pod in pods:
            await make_ready(api, pod)

        def all_ready(body: dict[str, Any] | None) -> bool:
            status = (body or {}).get("status") or {}
            return status.get("readyReplicas") == 2 and condition(body)["status"] == "True"

        ready = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "hello", all_ready, timeout=10)
        assert ready is not None
        status = ready["status"]
        assert (status["replicas"], status["updatedReplicas"], status["readyText"]) == (2, 2, "2/2")
        assert status["selector"] == "wasmlet.dev/workload=hello"
        assert status["moduleDigest"] == f"sha256:{SHA}"
        assert condition(ready)["reason"] == "AllReplicasReady"
        assert status["observedGeneration"] == ready["metadata"]["generation"]

        # kubectl scale: through the scale subresource.
        await api.patch(WASM_WORKLOADS, "hello", {"spec": {"replicas": 3}}, NS, subresource="scale")
        pods = await eventually(lambda: pods_count(api, "hello", 3), what="three pods")
        assert {p["spec"]["nodeName"] for p in pods} == {"wasm-1", "wasm-2"}

        await api.patch(WASM_WORKLOADS, "hello", {"spec": {"replicas": 1}}, NS, subresource="scale")
        [survivor] = await eventually(lambda: pods_count(api, "hello", 1), what="one pod left")
        # The unready third replica goes first; one of the Ready ones survives.
        assert survivor["status"]["phase"] == "Running"

        def one_replica(body: dict[str, Any] | None) -> bool:
            return ((body or {}).get("status") or {}).get("replicas") == 1

        await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "hello", one_replica, timeout=10)


async def test_a_workload_without_fitting_nodes_is_unschedulable(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("jit", runtime="wasmtime"), NS)

        def unschedulable(body: dict[str, Any] | None) -> bool:
            return condition(body).get("reason") == "Unschedulable"

        body = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "jit", unschedulable, timeout=10)
        assert condition(body)["message"] == "0/1 nodes are available: 1 node(s) did not offer runtime wasmtime."
        assert await live_pods(api, "jit") == []

        # An agent offering wasmtime registers: the Node event brings the workload back.
        kube_api.put(wasm_node("wasm-jit", runtimes=("wasmtime",)))
        [pod] = await eventually(lambda: pods_count(api, "jit", 1), what="a pod on the new node")
        assert pod["spec"]["nodeName"] == "wasm-jit"


async def test_an_invalid_workload_reports_invalid_spec(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        # Both image and url: a real API server's CEL rule rejects this; the test API has no CEL,
        # so it shows what the operator does with whatever gets past admission.
        bad = workload("bad", module={"image": "registry.local/x:1", "url": "https://m.example/x.wasm", "sha256": SHA})
        await api.create(WASM_WORKLOADS, bad, NS)

        def invalid(body: dict[str, Any] | None) -> bool:
            return condition(body).get("reason") == "InvalidSpec"

        body = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "bad", invalid, timeout=10)
        ready = condition(body)
        assert ready["status"] == "False"
        assert ready["message"].startswith("invalid spec: spec.module: exactly one of image, url and configMap")
        assert await live_pods(api, "bad") == []

        # Fixing the spec is reconciled like any change.
        await api.patch(WASM_WORKLOADS, "bad", {"spec": {"module": {"url": None, "sha256": None}}}, NS)
        await eventually(lambda: pods_count(api, "bad", 1), what="a pod once the spec is fixed")


@pytest.mark.kmock(service_account_delay=1.0)
async def test_pods_of_a_new_namespace_are_created_once_its_service_account_exists(
        kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await api.create(WASM_WORKLOADS, workload("early"), NS)

        def failed_create(body: dict[str, Any] | None) -> bool:
            return condition(body).get("reason") == "FailedCreate"

        body = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "early", failed_create, timeout=10)
        assert "serviceaccount" in condition(body)["message"].lower()
        await eventually(lambda: pods_count(api, "early", 1), what="a pod after the ServiceAccount appeared")


async def test_replicas_of_a_lost_node_are_replaced_elsewhere(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("edge", placement={"rescheduleAfterSeconds": 0}), NS)
        [first] = await eventually(lambda: pods_count(api, "edge", 1), what="a pod on wasm-1")
        assert first["spec"]["nodeName"] == "wasm-1"

        kube_api.put(wasm_node("wasm-2"))
        lost = wasm_node("wasm-1")
        lost["status"]["conditions"][0].update(status="Unknown", reason="NodeStatusUnknown",
                                               message="Kubelet stopped posting node status.")
        kube_api.put_status(lost)

        [replacement] = await eventually(lambda: pods_count(api, "edge", 1, exclude=first), what="a replacement")
        assert replacement["spec"]["nodeName"] == "wasm-2"
        # The lost Pod is deleted gracefully: it stays Terminating until an agent confirms.
        gone = kube_api.get("v1", "Pod", NS, first["metadata"]["name"])
        assert gone is not None and gone["metadata"]["deletionTimestamp"]


async def test_a_changed_template_rolls_out_within_max_unavailable(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    kube_api.put(wasm_node("wasm-2"))
    rolling = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("roll", replicas=2, args=["v1"], updateStrategy=rolling), NS)
        old = await eventually(lambda: pods_count(api, "roll", 2), what="two v1 pods")
        for pod in old:
            await make_ready(api, pod)
        await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "roll",
                                lambda b: ((b or {}).get("status") or {}).get("readyReplicas") == 2, timeout=10)

        await api.patch(WASM_WORKLOADS, "roll", {"spec": {"args": ["v2"]}}, NS)
        old_names = {p["metadata"]["name"] for p in old}

        async def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            pods = await live_pods(api, "roll")
            return ([p for p in pods if p["metadata"]["name"] in old_names],
                    [p for p in pods if p["metadata"]["name"] not in old_names])

        for step in range(2):
            async def surged(old_left: int = 2 - step) -> dict[str, Any] | None:
                still_old, new = await split()
                unready = [p for p in new if (p.get("status") or {}).get("phase") != "Running"]
                return unready[0] if len(unready) == 1 and len(still_old) == old_left else None

            surge = await eventually(surged, what=f"surge pod {step + 1}")
            assert surge["spec"]["containers"][0]["args"] == ["v2"]
            # maxSurge 1: never more than 3 Pods; maxUnavailable 0: no v1 Pod goes before it is Ready.
            assert sum(map(len, await split())) == 3
            await make_ready(api, surge)

            async def retired(old_left: int = 1 - step) -> bool:
                return len((await split())[0]) == old_left

            await eventually(retired, what=f"a v1 pod retired ({step + 1})")

        await eventually(lambda: pods_count(api, "roll", 2), what="two v2 pods")
        pods = await live_pods(api, "roll")
        assert all(p["spec"]["containers"][0]["args"] == ["v2"] for p in pods)

        def rolled(body: dict[str, Any] | None) -> bool:
            status = (body or {}).get("status") or {}
            return status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 2

        body = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, "roll", rolled, timeout=10)
        assert condition(body, "Progressing")["reason"] == "ReplicasUpToDate"


def test_the_console_script_explains_itself() -> None:
    out = subprocess.run([sys.executable, "-m", "wasmlet.operator.main", "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    for flag in ("--kubeconfig", "--namespace", "--verbose", "WASMLET_NAMESPACE"):
        assert flag in out.stdout


async def test_the_console_script_runs_against_a_kubeconfig_and_stops_on_sigterm(
        kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.operator.main", "--kubeconfig", str(kube_api.kubeconfig), "--namespace", NS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await api.create(WASM_WORKLOADS, workload("cli"), NS)
        [pod] = await eventually(lambda: pods_count(api, "cli", 1), timeout=30, what="a pod from the CLI operator")
        assert pod["spec"]["nodeName"] == "wasm-1"
    finally:
        if process.returncode is None:
            process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()
    assert f"API server {kube_api.url}" in output.decode()
