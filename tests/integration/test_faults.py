"""Fault injection with real processes: the API server goes away, the agent is SIGKILLed, watches
break, the API answers 410/500 or slowly. The agent keeps its Pods running and tells the truth."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import module_bytes, put_module_configmap, wasm_pod
from tests.integration.faults import agent_process, link_to, metric_value

# Plain HTTP: the link between agent and API counts the agent's requests by reading their HTTP.
pytestmark = pytest.mark.kmock(tls=False)

NODE = "wasm-node-1"
OUTAGE_SECONDS = 30


def ticker(name: str, restart: str = "Always", **container: Any) -> dict[str, Any]:
    args = container.pop("args", ["--interval-ms", "1000"])
    return wasm_pod(name, NODE, "configmap://modules/ticker.wasm", restart=restart,
                    terminationGracePeriodSeconds=0, automountServiceAccountToken=False,
                    container={"args": args, **container})


def status(pod: dict[str, Any]) -> tuple[str, int]:
    """(phase, restart count of its first container); phase "Running" only once that container runs."""
    st = pod.get("status") or {}
    first = (st.get("containerStatuses") or [{}])[0]
    phase = st.get("phase", "")
    if phase == "Running" and "running" not in (first.get("state") or {}):
        phase = "Running (container not started)"
    return phase, first.get("restartCount", 0)


async def all_pods(api: KubeClient) -> dict[str, tuple[str, int]]:
    listing = await api.list(PODS, "default")
    return {p["metadata"]["name"]: status(p) for p in listing["items"]}


async def until(probe: Any, timeout: float, what: str) -> float:
    """Poll `probe()` until it is truthy; return how long it took."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while not await probe():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None
    return time.monotonic() - started


async def seed(api: KubeClient) -> None:
    await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker"),
                                                           "hello.wasm": module_bytes("hello")})


async def test_an_api_outage_keeps_every_pod_running_and_the_truth_arrives_soon_after(
        kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(kube_api.url)) as api, link_to(kube_api.url) as link, \
            agent_process(link.url, tmp_path / "state") as agent:
        await seed(api)
        for i in range(50):
            await api.create(PODS, ticker(f"svc-{i}"))
        # These finish while the API is away: their end must reach the API after it returns.
        for i in range(3):
            await api.create(PODS, ticker(f"job-{i}", "Never", args=["--interval-ms", "1000", "--count", "12"]))
        await until(lambda: _all_running(api, 53), 60, "53 Pods running")

        await link.cut()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            phases = await agent.pod_phases()
            assert [n for n in phases if n.startswith("svc-") and phases[n] == "Running"].__len__() == 50
            assert await agent.healthy()
            await asyncio.sleep(5)
        assert {phases[f"job-{i}"] for i in range(3)} == {"Succeeded"}  # the agent knows; the API does not yet
        assert {status(p)[0] for p in (await api.list(PODS, "default"))["items"]} == {"Running"}

        await link.restore()
        sent_before = len(link.requests)
        converged = await until(lambda: _converged(api), 15, "status converged after the outage")
        pods = await all_pods(api)
        assert all(restarts == 0 for _, restarts in pods.values()), pods
        assert converged <= 15
        # No flood on reconnect: the newest status of each Pod that changed, once; nothing for the 50
        # whose status the API already has; beyond that only the watch, the Lease (renewed every second
        # here) and the Node.
        await asyncio.sleep(15 - converged)
        after = link.requests[sent_before:]
        status_posts = sorted(r.split()[1] for r in after if b"/pods/" in r and r.startswith(b"PATCH"))
        assert status_posts == [f"/api/v1/namespaces/default/pods/job-{i}/status".encode() for i in range(3)], after
        others = [r for r in after if b"/pods/" not in r and b"/leases/" not in r]
        assert len(others) <= 5, others


async def _all_running(api: KubeClient, count: int) -> bool:
    pods = await all_pods(api)
    return len(pods) == count and all(phase == "Running" for phase, _ in pods.values())


async def _converged(api: KubeClient) -> bool:
    pods = await all_pods(api)
    return all(phase == ("Succeeded" if name.startswith("job-") else "Running") for name, (phase, _) in pods.items())


async def test_a_sigkilled_agent_runs_its_pods_again_and_reruns_no_completed_container(
        kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(kube_api.url)) as api:
        await seed(api)
        async with agent_process(kube_api.url, tmp_path / "state") as agent:
            await three_services_and_a_finished_job(api)
            await agent.kill()
            await agent.start()
            await until(lambda: _restarted(api, 3), 30, "services running again after the SIGKILL")
            metrics = await agent.get("/metrics")
            assert metric_value(metrics, 'wasmlet_container_starts_total{runtime="wasmer"}') == 3  # not `once`
            assert status(await api.get(PODS, "once", "default"))[0] == "Succeeded"


async def test_a_sigkilled_agent_restarts_offline_from_its_store_and_reconciles_when_the_api_returns(
        kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(kube_api.url)) as api, link_to(kube_api.url) as link:
        await seed(api)
        async with agent_process(link.url, tmp_path / "state") as agent:
            await three_services_and_a_finished_job(api)
            await agent.kill()
            await link.cut()
            await agent.start()  # no API: everything comes from the local store
            await until(lambda: _agent_phases(agent, STARTED), 20, "Pods running offline")
            # Meanwhile in the cluster: svc-0 is force-deleted, svc-new is created.
            kube_api.remove("v1", "Pod", "default", "svc-0")
            await api.create(PODS, ticker("svc-new"))
            await link.restore()
            await until(lambda: _agent_phases(agent, {"svc-1": "Running", "svc-2": "Running", "once": "Succeeded",
                                                      "svc-new": "Running"}), 30, "reconciled with the API")
            metrics = await agent.get("/metrics")
            assert metric_value(metrics, 'wasmlet_container_starts_total{runtime="wasmer"}') == 4  # 3 restored + new


async def test_broken_watches_410_gone_500s_and_slow_answers_do_not_stop_convergence(
        kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(kube_api.url)) as api, link_to(kube_api.url) as link, \
            agent_process(link.url, tmp_path / "state") as agent:
        await seed(api)
        await api.create(PODS, ticker("before"))
        await until(lambda: _phases_are(api, {"before": "Running"}), 20, "first Pod running")
        # A watch cut mid-stream, and history compacted meanwhile: the resumed watch gets 410.
        await link.cut()
        kube_api.server.store.compact()
        await api.create(PODS, ticker("during-cut"))
        await link.restore()
        # Then the API fails and crawls: three 500s on the Pod list and 10 s status writes.
        kube_api.server["get /api/v1/pods"][:3] << 500
        kube_api.server["patch /api/v1/namespaces/default/pods/after/status"][:1] << (lambda: asyncio.sleep(10))
        await api.create(PODS, ticker("after"))
        await until(lambda: _phases_are(api, {"before": "Running", "during-cut": "Running", "after": "Running"}),
                    40, "every Pod running and reported")
        assert await agent.healthy()
        assert (await all_pods(api))["before"][1] == 0


STARTED = {"svc-0": "Running", "svc-1": "Running", "svc-2": "Running", "once": "Succeeded"}


async def three_services_and_a_finished_job(api: KubeClient) -> None:
    for i in range(3):
        await api.create(PODS, ticker(f"svc-{i}"))
    await api.create(PODS, wasm_pod("once", NODE, "configmap://modules/hello.wasm", automountServiceAccountToken=False))
    await until(lambda: _phases_are(api, STARTED), 30, "Pods started")


async def _phases_are(api: KubeClient, expected: dict[str, str]) -> bool:
    pods = await all_pods(api)
    return all(pods.get(name, ("", 0))[0] == phase for name, phase in expected.items())


async def _restarted(api: KubeClient, count: int) -> bool:
    pods = await all_pods(api)
    services = [pods.get(f"svc-{i}", ("", 0)) for i in range(count)]
    return all(phase == "Running" and restarts == 1 for phase, restarts in services)


async def _agent_phases(agent: Any, expected: dict[str, str]) -> bool:
    return bool(await agent.pod_phases() == expected)




async def test_a_sigtermed_agent_ends_no_pod_and_runs_them_again_counting_the_stop(
        kube_api: Any, tmp_path: Path) -> None:
    """A kubelet restart ends no Pod: after SIGTERM and a new start, Always and OnFailure Pods run
    again with restartCount + 1 and the stop as lastState; a finished job stays finished."""
    async with KubeClient(load_config(kube_api.url)) as api:
        await seed(api)
        async with agent_process(kube_api.url, tmp_path / "state", WASMLET_RESTART_BACKOFF_SECONDS="0.5") as agent:
            await api.create(PODS, ticker("svc"))
            await api.create(PODS, ticker("retry", "OnFailure"))
            await api.create(PODS, wasm_pod("job", NODE, "configmap://modules/hello.wasm", restart="Never",
                                            automountServiceAccountToken=False))
            await until(lambda: _phases(api, {"svc": ("Running", 0), "retry": ("Running", 0),
                                              "job": ("Succeeded", 0)}), 30, "Pods running, the job done")
            assert await agent.stop() == 0
            stopped = {p["metadata"]["name"]: p for p in (await api.list(PODS, "default"))["items"]}
            assert {n: p["status"]["phase"] for n, p in stopped.items()} == \
                {"svc": "Running", "retry": "Running", "job": "Succeeded"}
            await agent.start()
            await until(lambda: _phases(api, {"svc": ("Running", 1), "retry": ("Running", 1),
                                              "job": ("Succeeded", 0)}), 30, "Pods running again after SIGTERM")
            for name in ("svc", "retry"):
                last = (await api.get(PODS, name, "default"))["status"]["containerStatuses"][0]["lastState"]
                assert last["terminated"]["exitCode"] == 143 and last["terminated"]["reason"] == "Error"
                assert "node agent stopped" in last["terminated"]["message"]


async def _phases(api: KubeClient, expected: dict[str, tuple[str, int]]) -> bool:
    return await all_pods(api) == expected
