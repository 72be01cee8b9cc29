"""wasmer containment on a real control plane: the agent as a process, registered as its own Node,
with a node memory cap (`allocatable_memory`). A busy loop ends at its activeDeadlineSeconds and
on deletion (the Pod object goes), its worker process with it; a Pod over `limits.memory` and an
unlimited Pod over the node's cap end `OOMKilled`; the agent exits within 15 s of SIGTERM with a
runaway still running, and leaves no wasmer process behind."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from wasmlet.kube import NotFound
from wasmlet.kube.resources import PODS

from tests.e2e.test_kubelet_semantics import Cluster, Obj, cluster, eventually  # noqa: F401 - the fixture
from tests.integration.agent_helpers import module_bytes, put_module_configmap, wasm_pod
from tests.integration.faults import AgentProcess
from tests.integration.test_agent_wasmer_containment import gone, spinning_worker, workers

NODE_CAP = 256 * 1024 * 1024


def terminated(pod: Obj) -> Obj:
    state = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state") or {}
    return dict(state.get("terminated") or {})


def runaway(name: str, node: str, image: str, **spec: object) -> Obj:
    pod = wasm_pod(name, node, f"configmap://runaways/{image}", **spec)
    pod["spec"]["volumes"] = [{"name": "runaways", "configMap": {"name": "runaways"}}]  # for a node identity
    return pod


@pytest.mark.timeout(600)
async def test_wasmer_runaways_end_and_memory_is_capped_on_a_real_control_plane(
        cluster: Cluster) -> None:  # noqa: F811 - pytest passes the imported fixture
    api, ns, node = cluster.api, cluster.ns, cluster.node
    await put_module_configmap(api, ns, "runaways", {"loop.wasm": module_bytes("loop"), "grow.wasm": module_bytes("grow")})
    agent = AgentProcess(str(cluster.agent_kubeconfig), cluster.work / "state", node_name=cluster.node,
                         WASMLET_ALLOCATABLE_MEMORY=str(NODE_CAP))
    await agent.start()
    try:
        assert agent.process is not None
        await cluster.create_pod(runaway("deadline", node, "loop.wasm", activeDeadlineSeconds=3,
                                         terminationGracePeriodSeconds=1))
        await cluster.create_pod(runaway("capped", node, "grow.wasm", container={
            "args": ["256"], "resources": {"limits": {"memory": "32Mi"}}}))
        await cluster.create_pod(runaway("unlimited", node, "grow.wasm", container={"args": ["1024"]}))
        busy = await spinning_worker(agent.process.pid)

        pod = await eventually(api, ns, "deadline", lambda p: p.get("status", {}).get("phase") == "Failed")
        assert pod["status"]["reason"] == "DeadlineExceeded"
        assert await gone(busy), "the busy loop's worker outlived its deadline"
        for name, cap in (("capped", 32 * 1024 * 1024), ("unlimited", NODE_CAP)):
            pod = await eventually(api, ns, name, lambda p: p.get("status", {}).get("phase") == "Failed")
            assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (137, "OOMKilled")
            assert f"{cap} bytes" in terminated(pod)["message"]

        await cluster.create_pod(runaway("deleted", node, "loop.wasm", restart="Always", terminationGracePeriodSeconds=1))
        busy = await spinning_worker(agent.process.pid)
        await api.delete(PODS, "deleted", ns)
        async with asyncio.timeout(90):
            while True:
                with contextlib.suppress(NotFound):
                    await api.get(PODS, "deleted", ns)
                    await asyncio.sleep(0.2)
                    continue
                break
        assert await gone(busy), "the busy loop's worker outlived its deleted Pod"

        await cluster.create_pod(runaway("stays", node, "loop.wasm", restart="Always"))
        busy = await spinning_worker(agent.process.pid)
        everything = workers(agent.process.pid)
        started = time.monotonic()
        agent.process.terminate()
        assert await asyncio.wait_for(agent.process.wait(), 60) == 0
        assert time.monotonic() - started < 15
        for pid in everything:
            assert await gone(pid, timeout=10), f"wasmer process {pid} outlived the agent"
    except BaseException:
        print(f"--- the agent's log ---\n{agent.log()[-8000:]}")
        raise
    finally:
        if agent.process is not None and agent.process.returncode is not None:
            await agent.start()  # back, so that it ends the namespace's Pods as a kubelet does
        await cluster.drain()
        await agent.stop()
