"""The wasmer runtime is bounded: each Pod runs in a worker process the agent kills when the Pod
must end, so a busy loop ends at its deadline, within its grace period on deletion and with the
agent, and its core comes back; memory is capped per Pod (`limits.memory`) and for all Pods
together (`allocatable_memory`), `OOMKilled` past the cap. Real agent, real modules, real
processes; the only timing bound is the issue's own (the agent exits within 15 s of SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import yaml

from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import (
    MODULES,
    api_client,
    container_state,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)
from tests.integration.faults import agent_process

NODE = "wasm-node-1"
WORKER = "wasmlet.nodeagent.runtime.wasmer_worker"
TICKS = os.sysconf("SC_CLK_TCK")


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


def workers(agent: int) -> set[int]:
    """The wasmer processes under the agent `agent` (its fork server and the workers forked from
    it; zombies excluded)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if stat[0] != "Z" and WORKER.encode() in cmdline:
            parents[int(entry)] = int(stat[1])
    servers = {pid for pid, parent in parents.items() if parent == agent}
    return servers | {pid for pid, parent in parents.items() if parent in servers}


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


async def spinning_worker(agent: int, timeout: float = 60.0) -> int:
    """The worker under the agent `agent` that burns a core (a busy loop), once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {pid: cpu_seconds(pid) for pid in workers(agent)}
        await asyncio.sleep(1.0)
        busy = [pid for pid, cpu in before.items() if cpu_seconds(pid) - cpu > 0.3]
        if busy:
            return busy[0]
    raise AssertionError(f"no wasmer worker under {agent} became busy within {timeout}s")


async def gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether process `pid` ends (and is reaped) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return True
        await asyncio.sleep(0.1)
    return False


async def put_modules(api: Any) -> None:
    await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in ("loop", "grow", "hold")})


async def test_a_busy_wasmer_loop_ends_at_its_deadline_and_its_worker_with_it(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod("spinner", NODE, "configmap://modules/loop.wasm",
                                        activeDeadlineSeconds=3, terminationGracePeriodSeconds=1))
        busy = await spinning_worker(os.getpid())
        pod = await wait_for(api, PODS, "spinner", "default", lambda p: phase(p) == "Failed", timeout=60)
        assert pod["status"]["reason"] == "DeadlineExceeded"
        assert container_state(pod)["terminated"]["reason"] == "DeadlineExceeded"
        assert await gone(busy), "the busy loop's worker still runs after the deadline"


async def test_a_deleted_busy_wasmer_pod_is_gone_after_its_grace_period_and_its_core_comes_back(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod("spinner", NODE, "configmap://modules/loop.wasm", restart="Always",
                                        terminationGracePeriodSeconds=1))
        busy = await spinning_worker(os.getpid())
        await api.delete(PODS, "spinner", "default")
        await wait_gone(api, "spinner", timeout=60)
        assert await gone(busy), "the busy loop's worker still runs after the Pod was deleted"


async def test_a_wasmer_pod_growing_past_its_memory_limit_is_oomkilled(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod("greedy", NODE, "configmap://modules/grow.wasm",
                                        container={"args": ["256"], "resources": {"limits": {"memory": "32Mi"}}}))
        pod = await wait_for(api, PODS, "greedy", "default", lambda p: phase(p) == "Failed", timeout=60)
        terminated = container_state(pod)["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
        assert f"{32 * 1024 * 1024} bytes" in terminated["message"]


async def test_a_wasmer_pod_without_a_limit_cannot_pass_the_nodes_memory(kube_api: Any, tmp_path: Path) -> None:
    cap = 128 * 1024 * 1024
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path, allocatable_memory=cap):
        await put_modules(api)
        await api.create(PODS, wasm_pod("greedy", NODE, "configmap://modules/grow.wasm", container={"args": ["1024"]}))
        await api.create(PODS, wasm_pod("modest", NODE, "configmap://modules/grow.wasm", container={"args": ["16"]}))
        pod = await wait_for(api, PODS, "greedy", "default", lambda p: phase(p) == "Failed", timeout=60)
        terminated = container_state(pod)["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
        assert f"{cap} bytes" in terminated["message"]
        modest = await wait_for(api, PODS, "modest", "default", lambda p: phase(p) in ("Succeeded", "Failed"))
        assert phase(modest) == "Succeeded"


async def test_wasmer_pods_over_the_nodes_memory_together_lose_the_largest(kube_api: Any, tmp_path: Path) -> None:
    # Each Pod alone stays under the node's cap; together they pass it: the agent's node-level
    # check kills the one using most, as the kernel's OOM killer picks the largest process.
    cap = 160 * 1024 * 1024
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path, allocatable_memory=cap):
        await put_modules(api)
        await api.create(PODS, wasm_pod("small", NODE, "configmap://modules/hold.wasm", container={"args": ["64"]}))
        await wait_for(api, PODS, "small", "default", lambda p: phase(p) == "Running", timeout=60)
        await api.create(PODS, wasm_pod("large", NODE, "configmap://modules/hold.wasm", container={"args": ["112"]}))
        pod = await wait_for(api, PODS, "large", "default", lambda p: phase(p) == "Failed", timeout=60)
        terminated = container_state(pod)["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
        assert f"the node's memory cap of {cap} bytes" in terminated["message"]
        small = await api.get(PODS, "small", "default")
        assert phase(small) == "Running" and "running" in container_state(small)


async def test_the_agent_exits_within_15_seconds_of_sigterm_with_a_runaway_wasmer_pod(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "loop.wasm").write_bytes((MODULES / "loop.wasm").read_bytes())
    runaway = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runaway"},
               "spec": {"restartPolicy": "Always",  # the default grace period: 30 s
                        "containers": [{"name": "loop", "image": "file:loop.wasm"}]}}
    (folder / "runaway.yaml").write_text(yaml.safe_dump(runaway))
    async with agent_process(None, tmp_path / "state", manifests=folder) as agent:
        assert agent.process is not None
        busy = await spinning_worker(agent.process.pid)
        started = time.monotonic()
        agent.process.terminate()
        code = await asyncio.wait_for(agent.process.wait(), 60)
        assert time.monotonic() - started < 15, agent.log()[-4000:]
        assert code == 0
        assert await gone(busy, timeout=5), "the runaway's worker outlived the agent"


async def test_a_sigkilled_agent_takes_its_runaway_wasmer_workers_with_it(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "loop.wasm").write_bytes((MODULES / "loop.wasm").read_bytes())
    runaway = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runaway"},
               "spec": {"restartPolicy": "Always", "containers": [{"name": "loop", "image": "file:loop.wasm"}]}}
    (folder / "runaway.yaml").write_text(yaml.safe_dump(runaway))
    async with agent_process(None, tmp_path / "state", manifests=folder) as agent:
        assert agent.process is not None
        busy = await spinning_worker(agent.process.pid)
        everything = workers(agent.process.pid)
        await agent.kill()
        for pid in everything | {busy}:
            assert await gone(pid, timeout=10), f"wasmer process {pid} outlived the SIGKILLed agent"
