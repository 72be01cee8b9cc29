"""Pod churn leaves nothing behind: after Pods are created and deleted, every per-Pod structure of
the agent is empty again, and the agent process runs with the allocator setting that keeps its
memory flat (bench/soak.py measures the same churn's memory for minutes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube.resources import CONFIGMAPS, PODS, SECRETS
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.main import MALLOC_TUNABLE

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)

NODE = "wasm-node-1"


def churn_pod(name: str, runtime: str, service: bool) -> dict[str, Any]:
    """A `ticker` service or a `hello` run to completion, reading a ConfigMap and a Secret of its own."""
    env = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": f"cfg-{name}", "key": "greeting"}}},
           {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": f"secret-{name}", "key": "token"}}}]
    if service:
        return wasm_pod(name, NODE, "configmap://modules/ticker.wasm", restart="Always", runtime=runtime,
                        terminationGracePeriodSeconds=0,
                        container={"args": ["--interval-ms", "100"], "env": env})
    return wasm_pod(name, NODE, "configmap://modules/hello.wasm", runtime=runtime, container={"env": env})


async def per_pod_state(agent: Agent, runtime_name: str) -> dict[str, int]:
    """How many entries each per-Pod structure of the agent holds."""
    controller = agent.controller
    assert controller is not None
    env = controller.env
    store = controller._store
    assert store is not None
    storing = env.reporter
    api_reporter = storing.inner  # type: ignore[attr-defined]
    runtime = await env.runtime(runtime_name)
    sizes = {
        "controller workers": len(controller._slots),
        "stored pods": len(store.pods("api")),
        "stored objects": len(store.object_keys()),
        "referenced object watches": sum(env.objects.watched().values()),  # type: ignore[attr-defined]
        "unwritten statuses": len(storing._pending),  # type: ignore[attr-defined]
        "unposted statuses": len(api_reporter._latest) + len(api_reporter._posting),
        "module holds": len(env.modules.store._holds),
        "module fetches": len(env.modules._jobs),
        "pod dirs": len(list(env.pods_dir.iterdir())),
        "log dirs": len(list(env.logs_dir.iterdir())),
    }
    if runtime_name == "wasmer":
        sizes["wasmer pod workers"] = len(runtime._workers)  # type: ignore[attr-defined]
        sizes["wasmer spin checks"] = len(runtime._spin_checks)  # type: ignore[attr-defined]
    return sizes


@pytest.mark.parametrize("runtime", ["wasmer", "wasmtime"])
async def test_after_pods_with_their_own_configmaps_and_secrets_come_and_go_no_per_pod_state_is_left(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in ("hello", "ticker")})
        for round_ in range(2):
            names = [f"churn-{round_}-{i}" for i in range(6)]
            for i, name in enumerate(names):
                await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"greeting": name},
                                              "metadata": {"name": f"cfg-{name}", "namespace": "default"}})
                await api.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                           "data": {"token": base64.b64encode(name.encode()).decode()},
                                           "metadata": {"name": f"secret-{name}", "namespace": "default"}})
                await api.create(PODS, churn_pod(name, runtime, service=bool(i % 2)))
            for name in names:
                await wait_for(api, PODS, name, "default",
                               lambda p: (p.get("status") or {}).get("phase") in ("Running", "Succeeded"))
            assert agent.controller is not None and agent.controller._store is not None
            stored = agent.controller._store.object_keys()
            assert {("ConfigMap", "default", f"cfg-{n}") for n in names} <= stored  # kept while their Pods run
            assert {("Secret", "default", f"secret-{n}") for n in names} <= stored
            for name in names:
                await api.delete(PODS, name, "default")
            for name in names:
                await wait_gone(api, name)
                await api.delete(CONFIGMAPS, f"cfg-{name}", "default")
                await api.delete(SECRETS, f"secret-{name}", "default")

        sizes = await per_pod_state(agent, runtime)
        with contextlib.suppress(TimeoutError):  # a forgotten Pod's folders are removed off the loop, just after
            async with asyncio.timeout(10):
                while any((sizes := await per_pod_state(agent, runtime)).values()):
                    await asyncio.sleep(0.05)
        assert sizes == dict.fromkeys(sizes, 0)


async def agent_environment(tmp_path: Path, **env: str) -> str:
    """GLIBC_TUNABLES of a `wasmlet-agent` process (standalone, nothing to run) once it serves."""
    manifests = tmp_path / "manifests"
    manifests.mkdir(parents=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.nodeagent.main", "--manifests", str(manifests), "--kubelet-port", "0",
        "--state-dir", str(tmp_path / "state"), "--node-name", "n", "--node-ip", "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while b"kubelet API on" not in await process.stderr.readline():
                pass
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        return next((v.decode().partition("=")[2] for v in environ if v.startswith(b"GLIBC_TUNABLES=")), "")
    finally:
        process.terminate()
        await process.wait()


async def test_the_agent_process_runs_without_glibc_tcache_unless_told_otherwise(tmp_path: Path) -> None:
    assert await agent_environment(tmp_path / "a") == MALLOC_TUNABLE
    assert await agent_environment(tmp_path / "b", GLIBC_TUNABLES="glibc.malloc.tcache_count=7") == \
        "glibc.malloc.tcache_count=7"
