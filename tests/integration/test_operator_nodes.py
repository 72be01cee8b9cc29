"""The operator replaces what the cluster takes away: replicas of lost and deleted Nodes, Pods that
someone deleted or evicted, and failed replicas (with back-off), against the test Kubernetes API."""

from __future__ import annotations

import asyncio

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import PODS, WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from tests.integration.operator_helpers import (
    NS,
    condition,
    events_of,
    eventually,
    finish,
    live_pods,
    lost,
    make_ready,
    operator_writes,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)  # fmt: skip
from tests.integration.operator_helpers import api as api  # the fixture


async def test_replicas_of_a_lost_node_are_replaced_elsewhere(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("edge", placement={"rescheduleAfterSeconds": 2}), NS)
        [first] = await eventually(lambda: pods_count(api, "edge", 1), what="a pod on wasm-1")
        assert first["spec"]["nodeName"] == "wasm-1"

        kube_api.put(wasm_node("wasm-2"))
        kube_api.put_status(lost(wasm_node("wasm-1")))
        await asyncio.sleep(0.5)  # within rescheduleAfterSeconds the replica stays where it is
        assert [p["metadata"]["name"] for p in await live_pods(api, "edge")] == [first["metadata"]["name"]]

        [replacement] = await eventually(lambda: pods_count(api, "edge", 1, exclude=first), what="a replacement")
        assert replacement["spec"]["nodeName"] == "wasm-2"
        # The lost Pod is deleted gracefully: it stays Terminating until an agent confirms.
        gone = kube_api.get("v1", "Pod", NS, first["metadata"]["name"])
        assert gone is not None and gone["metadata"]["deletionTimestamp"]


async def test_replicas_of_a_not_ready_node_stay_when_rescheduling_is_off(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("edge-1"))
    kube_api.put(wasm_node("edge-2"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("autonomous", placement={"rescheduleAfterSeconds": None}), NS)
        [pod] = await eventually(lambda: pods_count(api, "autonomous", 1), what="a pod")
        kube_api.put_status(lost(wasm_node(pod["spec"]["nodeName"]), status="False"))
        await wait_workload(kube_api, "autonomous", lambda b: (b.get("status") or {}).get("observedGeneration") == 1)
        await asyncio.sleep(1.0)
        [still] = await live_pods(api, "autonomous")
        assert still["metadata"]["uid"] == pod["metadata"]["uid"]


async def test_replicas_of_a_deleted_node_are_force_deleted_and_replaced(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    kube_api.put(wasm_node("wasm-2"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("moved", replicas=2), NS)
        pods = await eventually(lambda: pods_count(api, "moved", 2), what="two pods")
        doomed = next(p for p in pods if p["spec"]["nodeName"] == "wasm-1")
        kube_api.remove("v1", "Node", None, "wasm-1")
        # Nothing will ever stop a Pod of a deleted Node: it is removed at once (grace 0), as the
        # pod garbage collector does, and replaced on the remaining node.
        await kube_api.wait_for("v1", "Pod", NS, doomed["metadata"]["name"], lambda p: p is None)
        replaced = await eventually(lambda: pods_count(api, "moved", 2, exclude=doomed), what="a replacement")
        assert {p["spec"]["nodeName"] for p in replaced} == {"wasm-2"}


async def test_pods_deleted_or_evicted_by_someone_else_are_replaced(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("kept", replicas=2), NS)
        first, second = await eventually(lambda: pods_count(api, "kept", 2), what="two pods")

        await api.delete(PODS, first["metadata"]["name"], NS)  # kubectl delete pod
        await eventually(lambda: pods_count(api, "kept", 2, exclude=first), what="a replacement for a deleted pod")

        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": second["metadata"]["name"], "namespace": NS}}
        await api.create(PODS, eviction, NS, subresource_of=second["metadata"]["name"], subresource="eviction")
        await eventually(lambda: pods_count(api, "kept", 2, exclude=second), what="a replacement for an evicted pod")


async def test_an_evicted_replica_of_a_job_like_workload_runs_again(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("batch", restartPolicy="Never"), NS)
        [pod] = await eventually(lambda: pods_count(api, "batch", 1), what="a pod")
        # The kubelet's eviction (node pressure): Failed, reason Evicted. Not the module's failure.
        await finish(api, pod, exit_code=137, reason="Evicted", message="The node was low on resource: memory.")
        [again] = await eventually(lambda: pods_count(api, "batch", 1, exclude=pod), what="the replica again")
        await finish(api, again)
        body = await wait_workload(kube_api, "batch", lambda b: condition(b).get("reason") == "Complete")
        assert (body["status"]["succeeded"], body["status"]["failed"]) == (1, 0)


async def test_failing_replicas_are_replaced_with_back_off_and_named(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("doomed", activeDeadlineSeconds=5), NS)
        [pod] = await eventually(lambda: pods_count(api, "doomed", 1), what="a pod")
        await make_ready(api, pod)
        message = "Pod was active on the node longer than the specified deadline"
        await finish(api, pod, exit_code=137, reason="DeadlineExceeded", message=message)
        # The first failure is replaced at once...
        [second] = await eventually(lambda: pods_count(api, "doomed", 1, exclude=pod), what="a replacement")
        body = await wait_workload(kube_api, "doomed", lambda b: condition(b, "Degraded").get("status") == "True")
        assert "DeadlineExceeded" in condition(body, "Degraded")["message"]
        # ...the next one waits (10 s): the Failed Pod stays, named in the status, and nothing spins.
        await finish(api, second, exit_code=137, reason="DeadlineExceeded", message=message)
        body = await wait_workload(kube_api, "doomed", lambda b: b["status"].get("failed") == 1)
        degraded = condition(body, "Degraded")
        assert degraded["reason"] == "ReplicasFailed"
        assert f"pod {second['metadata']['name']}: DeadlineExceeded: {message}" in degraded["message"]
        # The Events of a status change are posted after the status write: the pass ends with them.
        await eventually(lambda: replicas_failed_events(api, "doomed", 2), what="an Event per failure")
        since = len(list(kube_api.server))
        await asyncio.sleep(1.0)
        assert operator_writes(kube_api, since) == []
        assert [p["metadata"]["name"] for p in await live_pods(api, "doomed")] == [second["metadata"]["name"]]
        reasons = [reason for _, reason, _ in await events_of(api, "doomed")]
        assert reasons.count("SuccessfulCreate") == 2 and reasons.count("ReplicasFailed") == 2  # one per failure


async def replicas_failed_events(api: KubeClient, name: str, count: int) -> bool:
    reasons = [reason for _, reason, _ in await events_of(api, name)]
    return reasons.count("ReplicasFailed") >= count
