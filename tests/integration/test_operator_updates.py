"""The operator rolls out a changed Pod template (RollingUpdate, Recreate) and runs job-like
workloads to completion, against the test Kubernetes API (agents' reports written by the test)."""

from __future__ import annotations

import asyncio
from typing import Any

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from tests.integration.operator_helpers import (
    NS,
    condition,
    events_of,
    eventually,
    finish,
    live_pods,
    make_ready,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)
from tests.integration.operator_helpers import api as api  # the fixture


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
        await wait_workload(kube_api, "roll", lambda b: b["status"].get("readyReplicas") == 2)

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
            body = await wait_workload(kube_api, "roll", lambda b: condition(b, "Progressing")["reason"] == "RollingUpdate")
            assert body["status"]["updatedReplicas"] == 1 + step
            await make_ready(api, surge)

            async def retired(old_left: int = 1 - step) -> bool:
                return len((await split())[0]) == old_left

            await eventually(retired, what=f"a v1 pod retired ({step + 1})")

        await eventually(lambda: pods_count(api, "roll", 2), what="two v2 pods")
        pods = await live_pods(api, "roll")
        assert all(p["spec"]["containers"][0]["args"] == ["v2"] for p in pods)
        body = await wait_workload(kube_api, "roll", lambda b: b["status"].get("updatedReplicas") == 2
                                   and b["status"].get("readyReplicas") == 2
                                   and condition(b, "Progressing")["reason"] == "ReplicasUpToDate")
        template = body["status"]["templateHash"]
        reasons = [(kind, reason) for kind, reason, _ in await events_of(api, "roll")]
        assert ("Normal", "RollingUpdate") in reasons and ("Normal", "RolloutComplete") in reasons
        assert any(template in message for _, reason, message in await events_of(api, "roll")
                   if reason == "RolloutComplete")


async def test_recreate_stops_every_old_replica_before_starting_new_ones(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("re", replicas=2, args=["v1"], updateStrategy={"type": "Recreate"}),
                         NS)
        old = await eventually(lambda: pods_count(api, "re", 2), what="two v1 pods")
        for pod in old:
            await make_ready(api, pod)
        await wait_workload(kube_api, "re", lambda b: b["status"].get("readyReplicas") == 2)

        await api.patch(WASM_WORKLOADS, "re", {"spec": {"args": ["v2"]}}, NS)
        async def all_terminating() -> bool:
            return await live_pods(api, "re") == []

        await eventually(all_terminating, what="every v1 pod deleted")
        # Bound Pods stay Terminating until their agent confirms: no v2 Pod meanwhile.
        await asyncio.sleep(0.3)
        assert await live_pods(api, "re") == []
        for pod in old:  # the agent stops them and removes them (grace 0)
            kube_api.remove("v1", "Pod", NS, pod["metadata"]["name"])
        new = await eventually(lambda: pods_count(api, "re", 2), what="two v2 pods")
        assert all(p["spec"]["containers"][0]["args"] == ["v2"] for p in new)
        assert ("Normal", "Recreate") in [(kind, reason) for kind, reason, _ in await events_of(api, "re")]


async def test_a_job_like_workload_completes_and_its_pods_are_not_replaced(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("job", replicas=2, restartPolicy="Never"), NS)
        pods = await eventually(lambda: pods_count(api, "job", 2), what="two pods")
        for pod in pods:
            await finish(api, pod)
        body = await wait_workload(kube_api, "job", lambda b: b["status"].get("succeeded") == 2)
        assert condition(body)["reason"] == "Complete"
        assert condition(body, "Complete") == {**condition(body, "Complete"), "status": "True",
                                               "reason": "ReplicasSucceeded"}
        assert condition(body, "Failed") == {}
        assert ("Normal", "Completed") in [(kind, reason) for kind, reason, _ in await events_of(api, "job")]
        # Succeeded Pods stay (their logs, their exit codes) and are not replaced.
        assert {p["metadata"]["name"] for p in await live_pods(api, "job")} == {p["metadata"]["name"] for p in pods}


async def test_a_job_like_workload_that_fails_says_so(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("flaky", replicas=2, restartPolicy="Never"), NS)
        good, bad = await eventually(lambda: pods_count(api, "flaky", 2), what="two pods")
        await finish(api, good)
        await finish(api, bad, exit_code=3)
        body = await wait_workload(kube_api, "flaky", lambda b: condition(b, "Failed").get("status") == "True")
        assert (body["status"]["succeeded"], body["status"]["failed"]) == (1, 1)
        assert condition(body)["reason"] == "ReplicasFailed"
        degraded = condition(body, "Degraded")
        assert degraded["reason"] == "ReplicasFailed" and "exit code 3" in degraded["message"]
        assert condition(body, "Complete") == {}
        assert ("Warning", "ReplicasFailed") in [(kind, reason) for kind, reason, _ in await events_of(api, "flaky")]
        assert len(await live_pods(api, "flaky")) == 2  # a failed replica is not retried
