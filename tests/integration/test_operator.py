"""The operator, embedded in the test's event loop, against the test Kubernetes API over HTTP:
placement, scaling, unschedulable workloads and bad input.

Rolling updates and run-to-completion workloads are in test_operator_updates.py, lost nodes and
replaced Pods in test_operator_nodes.py, what production needs (peering, metrics, liveness,
idempotency, restarts) in test_operator_production.py. Helpers: operator_helpers.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from wasmlet.api import keys
from wasmlet.kube import KubeClient
from wasmlet.kube.resources import NAMESPACES, WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from tests.integration.agent_helpers import module_bytes, put_module_configmap, running_agent
from tests.integration.operator_helpers import (
    CRD_PATH,
    NS,
    SHA,
    condition,
    events_of,
    eventually,
    live_pods,
    make_ready,
    operator_requests,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)  # fmt: skip
from tests.integration.operator_helpers import api as api  # the fixture

__all__ = ["CRD_PATH", "NS", "running_operator"]  # what other test modules take from here


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
            for toleration in keys.wasm_tolerations() + keys.lost_node_tolerations():
                assert toleration in pod["spec"]["tolerations"]
            assert pod["spec"]["nodeSelector"]["kubernetes.io/arch"] == "wasm32-wasi"
            assert pod["spec"]["containers"][0]["image"] == "registry.local/hello:1"

        for pod in pods:
            await make_ready(api, pod)
        ready = await wait_workload(kube_api, "hello", lambda b: condition(b)["status"] == "True"
                                    and b["status"]["readyReplicas"] == 2)
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
        await wait_workload(kube_api, "hello", lambda b: b["status"]["replicas"] == 1)

        # Every decision is an Event on the workload, found as `kubectl describe ww hello` finds them.
        reasons = [reason for _, reason, _ in await events_of(api, "hello")]
        assert reasons.count("SuccessfulCreate") == 3 and reasons.count("SuccessfulDelete") == 2


async def test_memory_requests_and_pod_capacity_limit_what_a_node_takes(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("small", memory="256Mi"))
    kube_api.put(wasm_node("few", pods=1))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("big", replicas=4, resources={"requests": {"memory": "100Mi"}}), NS)
        body = await wait_workload(kube_api, "big", lambda b: condition(b).get("reason") == "Unschedulable")
        # small fits two (200Mi of 256Mi), few one (its only Pod slot); the fourth fits nowhere.
        assert sorted(p["spec"]["nodeName"] for p in await live_pods(api, "big")) == ["few", "small", "small"]
        assert condition(body)["message"] == (
            "1 of 4 replica(s) cannot be placed: 0/2 nodes are available: "
            "1 node(s) had insufficient memory, 1 node(s) had too many pods.")
        assert condition(body, "Progressing")["reason"] == "Unschedulable"


async def test_an_unschedulable_workload_waits_quietly_until_a_node_fits(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("jit", runtime="wasmtime"), NS)
        body = await wait_workload(kube_api, "jit", lambda b: condition(b).get("reason") == "Unschedulable")
        assert condition(body)["message"] == ("1 of 1 replica(s) cannot be placed: "
                                              "0/1 nodes are available: 1 node(s) did not offer runtime wasmtime.")
        assert ("Warning", "Unschedulable", condition(body)["message"]) in await events_of(api, "jit")
        assert await live_pods(api, "jit") == []

        # It does not spin: nothing changes, so the operator sends nothing at all.
        since = len(list(kube_api.server))
        await asyncio.sleep(1.0)
        assert operator_requests(kube_api, since) == []

        # An agent offering wasmtime registers: the Node event brings the workload back.
        kube_api.put(wasm_node("wasm-jit", runtimes=("wasmtime",)))
        [pod] = await eventually(lambda: pods_count(api, "jit", 1), what="a pod on the new node")
        assert pod["spec"]["nodeName"] == "wasm-jit"
        await wait_workload(kube_api, "jit", lambda b: condition(b, "Progressing")["reason"] != "Unschedulable")


async def test_an_invalid_workload_reports_invalid_spec(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        # Both image and url: a real API server's CEL rule rejects this; the test API has no CEL,
        # so it shows what the operator does with whatever gets past admission.
        bad = workload("bad", module={"image": "registry.local/x:1", "url": "https://m.example/x.wasm", "sha256": SHA})
        await api.create(WASM_WORKLOADS, bad, NS)
        body = await wait_workload(kube_api, "bad", lambda b: condition(b).get("reason") == "InvalidSpec")
        ready = condition(body)
        assert ready["status"] == "False"
        assert ready["message"].startswith("invalid spec: spec.module: exactly one of image, url and configMap")
        assert await live_pods(api, "bad") == []
        assert ("Warning", "InvalidSpec", ready["message"]) in await events_of(api, "bad")

        # Fixing the spec is reconciled like any change.
        await api.patch(WASM_WORKLOADS, "bad", {"spec": {"module": {"url": None, "sha256": None}}}, NS)
        await eventually(lambda: pods_count(api, "bad", 1), what="a pod once the spec is fixed")


async def test_a_missing_configmap_degrades_its_workload_and_no_other(kube_api: KubeAPI, api: KubeClient,
                                                                     tmp_path: Path) -> None:
    """Bad input the schema cannot catch, with the real agent: it reports the missing ConfigMap on
    the Pod (CreateContainerConfigError), the operator names it on the workload."""
    kube_api.seed_namespace(NS)
    await put_module_configmap(api, NS, "modules", {"ticker.wasm": module_bytes("ticker")})
    # The agent stops before the operator: an embedded kopf cancels, when it stops, every task
    # created in its event loop after it started (in production they are separate processes).
    async with running_operator(kube_api), running_agent(kube_api, tmp_path, "wasm-1"):
        await api.create(WASM_WORKLOADS, workload("lost", module={"configMap": {"name": "nowhere", "key": "m.wasm"}}),
                         NS)
        await api.create(WASM_WORKLOADS, workload("fine", module={"configMap": {"name": "modules", "key": "ticker.wasm"}},
                                                  args=["--interval-ms", "1000"], terminationGracePeriodSeconds=1), NS)
        body = await wait_workload(kube_api, "lost", lambda b: condition(b, "Degraded").get("status") == "True",
                                   timeout=20)
        degraded = condition(body, "Degraded")
        assert degraded["reason"] == "CreateContainerConfigError"
        assert 'configmap "nowhere" not found' in degraded["message"]
        # The Reason column (`kubectl get ww`) says it too, and `kubectl describe` has the Warning.
        assert condition(body)["reason"] == "CreateContainerConfigError"
        assert ("Warning", "CreateContainerConfigError", degraded["message"]) in await events_of(api, "lost")

        fine = await wait_workload(kube_api, "fine", lambda b: condition(b).get("status") == "True", timeout=20)
        assert condition(fine, "Degraded")["status"] == "False"


@pytest.mark.kmock(service_account_delay=1.0)
async def test_pods_of_a_new_namespace_are_created_once_its_service_account_exists(
        kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await api.create(WASM_WORKLOADS, workload("early"), NS)
        body = await wait_workload(kube_api, "early", lambda b: condition(b).get("reason") == "FailedCreate")
        assert "serviceaccount" in condition(body)["message"].lower()
        await eventually(lambda: pods_count(api, "early", 1), what="a pod after the ServiceAccount appeared")


def test_the_console_script_explains_itself() -> None:
    out = subprocess.run([sys.executable, "-m", "wasmlet.operator.main", "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    for flag in ("--kubeconfig", "--namespace", "--verbose", "WASMLET_NAMESPACE", "--peering-name",
                 "--peering-priority", "--standalone", "--metrics-endpoint", "--liveness-endpoint"):
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

