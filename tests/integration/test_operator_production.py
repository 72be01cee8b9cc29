"""What running the operator in production relies on: one active replica among several (kopf's
peering), metrics and liveness endpoints, idempotent reconciles, restarts that change nothing,
deletion by garbage collection, cluster-wide and standalone modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import yaml

from wasmlet.api import keys
from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import CLUSTER_KOPF_PEERINGS, CRDS, KOPF_PEERINGS, WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from tests.integration.operator_helpers import (
    CRD_PATH,
    NS,
    condition,
    eventually,
    free_port,
    http_get,
    live_pods,
    make_ready,
    operator_requests,
    operator_writes,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)  # fmt: skip  # fmt: skip
from tests.integration.operator_helpers import api as api  # the fixture

WORKLOAD = (keys.API_VERSION, keys.WORKLOAD_KIND)


async def metric(url: str, name: str) -> float | None:
    """One sample of the operator's /metrics (the first whose name and labels start with `name`)."""
    try:
        status, body = await http_get(url)
    except OSError:
        return None
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextlib.asynccontextmanager
async def operator_process(kube_api: KubeAPI, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`wasmlet-operator` as a separate process (a second replica), stopped with SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.operator.main", "--kubeconfig", str(kube_api.kubeconfig), "--namespace", NS,
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, output.decode()


async def test_two_replicas_never_act_at_once(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    first, second = (f"http://127.0.0.1:{free_port()}/metrics" for _ in range(2))
    async with running_operator(kube_api, peering_priority=10, metrics_endpoint=first):
        await eventually(lambda: metric(first, "wasmlet_operator_active"), what="the first replica active")
        async with operator_process(kube_api, "--peering-priority", "20", "--metrics-endpoint", second):
            # The higher priority takes over; the other pauses (kopf's watches and our queue alike).
            await eventually(lambda: metric(second, "wasmlet_operator_active"), timeout=20, what="the second active")

            async def first_paused() -> bool:
                return await metric(first, "wasmlet_operator_active") == 0.0

            await eventually(first_paused, what="the first replica paused")
            peering = await api.get(KOPF_PEERINGS, "wasmlet", NS)
            assert sorted(entry["priority"] for entry in peering["status"].values()) == [10, 20]

            await api.create(WASM_WORKLOADS, workload("one", replicas=2), NS)
            await eventually(lambda: pods_count(api, "one", 2), what="two pods from the active replica")
            await asyncio.sleep(0.5)
            assert len(await live_pods(api, "one")) == 2
            assert await metric(first, "wasmlet_operator_placements_total") == 0.0

        # The active replica stopped and left the peering: the other one resumes at once.
        await eventually(lambda: metric(first, "wasmlet_operator_active"), what="the first replica active again")
        await api.patch(WASM_WORKLOADS, "one", {"spec": {"replicas": 3}}, NS)
        await eventually(lambda: pods_count(api, "one", 3), what="a third pod from the first replica")
        assert await metric(first, "wasmlet_operator_placements_total") == 1.0


async def test_metrics_and_liveness_are_served(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    async with running_operator(kube_api, metrics_endpoint=metrics, liveness_endpoint=liveness):
        await api.create(WASM_WORKLOADS, workload("seen", replicas=2), NS)
        await api.create(WASM_WORKLOADS, workload("nowhere", nodeSelector={"zone": "mars"}), NS)
        await eventually(lambda: pods_count(api, "seen", 2), what="two pods")
        await wait_workload(kube_api, "nowhere", lambda b: condition(b).get("reason") == "Unschedulable")

        status, body = await http_get(metrics)
        text = body.decode()
        assert status == 200
        for name in ("wasmlet_operator_reconciles_total{result=\"success\"}",
                     "wasmlet_operator_reconcile_duration_seconds_bucket", "wasmlet_operator_reconcile_errors_total",
                     "wasmlet_operator_placements_total 2.0", "wasmlet_operator_unschedulable_workloads 1.0",
                     "wasmlet_operator_workloads 2.0", "wasmlet_operator_active 1.0",
                     "wasmlet_operator_api_writes_total{resource=\"pods\",verb=\"create\"} 2.0"):
            assert name in text, name

        status, body = await http_get(liveness)
        assert status == 200
        report = json.loads(body)["wasmlet"]
        assert report["active"] is True and report["workloads"] == 2


async def test_reconciling_an_unchanged_world_writes_nothing(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    async with running_operator(kube_api, resync_seconds=0.2, metrics_endpoint=metrics):
        await api.create(WASM_WORKLOADS, workload("calm", replicas=2), NS)
        await api.create(WASM_WORKLOADS, workload("stuck", runtime="wasmtime"), NS)
        for pod in await eventually(lambda: pods_count(api, "calm", 2), what="two pods"):
            await make_ready(api, pod)
        await wait_workload(kube_api, "calm", lambda b: condition(b).get("status") == "True")
        await wait_workload(kube_api, "stuck", lambda b: condition(b).get("reason") == "Unschedulable")

        before = await metric(metrics, "wasmlet_operator_reconciles_total{result=\"success\"}") or 0.0
        since = len(list(kube_api.server))
        await asyncio.sleep(1.0)  # five resyncs of every workload
        after = await metric(metrics, "wasmlet_operator_reconciles_total{result=\"success\"}") or 0.0
        assert after - before >= 6
        assert operator_writes(kube_api, since) == []
        assert operator_requests(kube_api, since) == []  # not even a read: everything comes from the caches


async def test_a_restarted_operator_finds_its_pods_and_changes_nothing(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    kube_api.put(wasm_node("wasm-2"))
    async with running_operator(kube_api):
        for name in ("a", "b", "c"):
            await api.create(WASM_WORKLOADS, workload(name, replicas=2), NS)
        for name in ("a", "b", "c"):
            await eventually(lambda name=name: pods_count(api, name, 2), what=f"two pods of {name}")
            await wait_workload(kube_api, name, lambda b: b.get("status", {}).get("replicas") == 2)
    before = {name: sorted(p["metadata"]["uid"] for p in await live_pods(api, name)) for name in ("a", "b", "c")}
    await api.patch(WASM_WORKLOADS, "c", {"spec": {"replicas": 3}}, NS)  # while no operator runs

    since = len(list(kube_api.server))
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    async with running_operator(kube_api, metrics_endpoint=metrics):
        await eventually(lambda: pods_count(api, "c", 3), what="the change made meanwhile")
        await asyncio.sleep(0.5)
        after = {name: sorted(p["metadata"]["uid"] for p in await live_pods(api, name)) for name in ("a", "b")}
        assert after == {name: before[name] for name in ("a", "b")}
        writes = operator_writes(kube_api, since)
        assert sorted(w.split(" ")[0] + " " + w.rsplit("/", 1)[-1] for w in writes
                      if "kopfpeerings" not in w) == ["PATCH status", "POST events", "POST pods"]


async def test_a_deleted_workload_takes_its_pods_along_without_a_finalizer(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        body = await api.create(WASM_WORKLOADS, workload("brief", replicas=2), NS)
        await eventually(lambda: pods_count(api, "brief", 2), what="two pods")
        await wait_workload(kube_api, "brief", lambda b: b.get("status", {}).get("replicas") == 2)
        assert not kube_api.get(*WORKLOAD, NS, "brief")["metadata"].get("finalizers")  # type: ignore[index]
        assert set(kube_api.get(*WORKLOAD, NS, "brief")["metadata"].get("annotations") or {}) == set()  # type: ignore[index]

        since = len(list(kube_api.server))
        await api.delete(WASM_WORKLOADS, "brief", NS)
        assert kube_api.get(*WORKLOAD, NS, "brief") is None  # gone at once: nothing holds it
        # The garbage collector deletes the Pods (ownerReferences); the operator writes nothing.
        async def collected() -> bool:
            pods = kube_api.list("v1", "Pod", NS, labels="wasmlet.dev/workload=brief")
            return all(p["metadata"].get("deletionTimestamp") for p in pods)

        await eventually(collected, what="the pods garbage-collected")
        await asyncio.sleep(0.3)
        assert operator_writes(kube_api, since) == []
        assert all(ref["uid"] == body["metadata"]["uid"] for p in kube_api.list("v1", "Pod", NS)
                   for ref in p["metadata"]["ownerReferences"])


async def test_a_standalone_operator_needs_no_peering(kube_api: KubeAPI) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with KubeClient(load_config(kube_api.kubeconfig)) as api:
        await api.create(CRDS, yaml.safe_load(CRD_PATH.read_text()))  # the WasmWorkload CRD only
        async with running_operator(kube_api, standalone=True, install=False):
            await api.create(WASM_WORKLOADS, workload("solo"), NS)
            await eventually(lambda: pods_count(api, "solo", 1), what="a pod")
    assert not [r for r in list(kube_api.server) if r.resource and r.resource.group == "kopf.dev"]


async def test_a_cluster_wide_operator_serves_every_namespace(kube_api: KubeAPI, api: KubeClient) -> None:
    for namespace in ("team-a", "team-b"):
        kube_api.seed_namespace(namespace)
    kube_api.put(wasm_node("wasm-1", pods=3))
    async with running_operator(kube_api, namespace=None):
        for namespace in ("team-a", "team-b"):
            await api.create(WASM_WORKLOADS, {**workload("app", replicas=2),
                                              "metadata": {"name": "app", "namespace": namespace}}, namespace)

        async def placed() -> list[str] | None:
            pods = kube_api.list("v1", "Pod", labels="wasmlet.dev/workload=app")
            return sorted(p["metadata"]["namespace"] for p in pods) if len(pods) == 3 else None

        # Node load counts every namespace's Pods: the node's 3 places are filled, no more.
        assert sorted(set(await eventually(placed, what="three pods"))) == ["team-a", "team-b"]
        full = await eventually(lambda: _unschedulable(kube_api), what="the fourth replica unschedulable")
        assert "too many pods" in condition(full)["message"]
        assert await api.get(CLUSTER_KOPF_PEERINGS, "wasmlet")  # cluster-wide: a ClusterKopfPeering


async def _unschedulable(kube_api: KubeAPI) -> dict[str, Any] | None:
    for body in kube_api.list(*WORKLOAD):
        if condition(body).get("reason") == "Unschedulable":
            return body
    return None
