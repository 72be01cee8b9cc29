"""What only the wasmtime runtime can do, through the real agent against the test API: memory
limits, stopping busy code (activeDeadlineSeconds, deletion), host directories — and Wasmer
refusing a host directory with a reason that names the field and `wasmtime`."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import (
    api_client,
    container_state,
    log_lines,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)

NODE = "wasm-node-1"
MODULES = ("grow", "loop", "files", "cpu")


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


async def module_threads(timeout: float = 1.0) -> list[str]:
    """The wasmtime instance threads still alive, once they had `timeout` to end."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("wasmtime ")]
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.01)


async def put_modules(api: Any) -> None:
    await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in MODULES})


async def test_growing_past_the_memory_limit_is_oomkilled(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await put_modules(api)
        await api.create(PODS, wasm_pod("greedy", NODE, "configmap://modules/grow.wasm", runtime="wasmtime",
                                        container={"args": ["64"], "resources": {"limits": {"memory": "16Mi"}}}))
        pod = await wait_for(api, PODS, "greedy", "default", lambda p: phase(p) == "Failed")
        terminated = container_state(pod)["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
        assert "16777216 bytes" in terminated["message"]
        assert ("stderr", "grow: memory.grow failed after growing 15 MiB (memory is 15.1 MiB)") in log_lines(agent, pod)


async def test_a_busy_loop_past_its_active_deadline_fails_with_deadline_exceeded(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod("spinner", NODE, "configmap://modules/loop.wasm", runtime="wasmtime",
                                        activeDeadlineSeconds=1, terminationGracePeriodSeconds=0))
        await wait_for(api, PODS, "spinner", "default", lambda p: phase(p) == "Running")
        started = time.monotonic()
        pod = await wait_for(api, PODS, "spinner", "default", lambda p: phase(p) == "Failed")
        assert time.monotonic() - started < 10  # the 1 s deadline ends the loop, which never ends by itself
        assert pod["status"]["reason"] == "DeadlineExceeded"
        assert container_state(pod)["terminated"]["reason"] == "DeadlineExceeded"
        assert await module_threads() == []  # the loop's thread is free again


async def test_a_deleted_busy_pod_is_gone_after_its_grace_period(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod("spinner", NODE, "configmap://modules/loop.wasm", runtime="wasmtime",
                                        restart="Always", terminationGracePeriodSeconds=1))
        await wait_for(api, PODS, "spinner", "default", lambda p: phase(p) == "Running")
        started = time.monotonic()
        await api.delete(PODS, "spinner", "default")
        await wait_gone(api, "spinner")
        assert 1 <= time.monotonic() - started < 10  # the grace period, then the loop is stopped
        assert await module_threads() == []


async def test_a_read_only_host_path_is_readable_and_really_read_only(kube_api: Any, tmp_path: Path) -> None:
    host = tmp_path / "host-data"
    host.mkdir()
    (host / "motd.txt").write_text("hello from the node\n")
    volumes = [{"name": "host", "hostPath": {"path": str(host), "type": "Directory"}}]
    mounts = [{"name": "host", "mountPath": "/host", "readOnly": True}]
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state") as agent:
        await put_modules(api)
        for name, args in (("reader", ["read", "/host/motd.txt"]), ("writer", ["write", "/host/motd.txt", "x"])):
            await api.create(PODS, wasm_pod(name, NODE, "configmap://modules/files.wasm", runtime="wasmtime",
                                            volumes=volumes, container={"args": args, "volumeMounts": mounts}))
        reader = await wait_for(api, PODS, "reader", "default", lambda p: phase(p) == "Succeeded")
        assert ("stdout", "hello from the node") in log_lines(agent, reader)
        writer = await wait_for(api, PODS, "writer", "default", lambda p: phase(p) == "Failed")
        assert container_state(writer)["terminated"]["exitCode"] == 1
        assert ("stderr", "files: cannot write /host/motd.txt: Operation not permitted") in log_lines(agent, writer)
    assert (host / "motd.txt").read_text() == "hello from the node\n"


async def test_a_writable_host_path_receives_the_modules_writes(kube_api: Any, tmp_path: Path) -> None:
    host = tmp_path / "out"
    host.mkdir()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await put_modules(api)
        await api.create(PODS, wasm_pod(
            "writer", NODE, "configmap://modules/files.wasm", runtime="wasmtime",
            volumes=[{"name": "out", "hostPath": {"path": str(host)}}],
            container={"args": ["write", "/out/result.txt", "done"], "volumeMounts": [{"name": "out", "mountPath": "/out"}]}))
        await wait_for(api, PODS, "writer", "default", lambda p: phase(p) == "Succeeded")
    assert (host / "result.txt").read_text() == "done\n"


async def test_a_cpu_limited_module_runs_to_completion(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await put_modules(api)
        await api.create(PODS, wasm_pod("crunch", NODE, "configmap://modules/cpu.wasm", runtime="wasmtime",
                                        container={"args": ["20000000"], "resources": {"limits": {"cpu": "500m"}}}))
        pod = await wait_for(api, PODS, "crunch", "default", lambda p: phase(p) == "Succeeded")
        assert any(text.startswith("cpu: iterations=20000000 ") for _, text in log_lines(agent, pod))


async def test_wasmer_refuses_a_host_path_naming_the_field_and_wasmtime(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await put_modules(api)
        await api.create(PODS, wasm_pod(
            "host", NODE, "configmap://modules/files.wasm", runtime="wasmer",
            volumes=[{"name": "host", "hostPath": {"path": str(tmp_path)}}],
            container={"args": ["list", "/host"], "volumeMounts": [{"name": "host", "mountPath": "/host",
                                                                   "readOnly": True}]}))
        pod = await wait_for(api, PODS, "host", "default", lambda p: phase(p) == "Failed")
        assert pod["status"]["reason"] == "UnsupportedField"
        assert "hostPath" in pod["status"]["message"] and "runtimeClassName: wasmtime" in pod["status"]["message"]
