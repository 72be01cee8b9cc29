"""What one tenant may take from a node is capped as the kubelet caps it: Pods past --max-pods
fail admission (OutOfpods), an emptyDir past its sizeLimit gets its Pod evicted, and a crash loop
keeps the logs of two runs, not of every restart. Real modules, the real agent, the test API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import EVENTS, PODS
from wasmlet.nodeagent.logs import pod_log_dir

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)

NODE = "wasm-node-1"


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


async def put_modules(api: KubeClient) -> None:
    await put_module_configmap(api, "default", "modules",
                               {f"{m}.wasm": module_bytes(m) for m in ("ticker", "hostile", "exit")})


async def warning(api: KubeClient, pod: str, reason: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            events = await api.list(EVENTS, "default", field_selector=f"involvedObject.name={pod}")
            found = [e for e in events["items"] if e["reason"] == reason]
            if found:
                return found[0]
            await asyncio.sleep(0.1)


async def test_a_pod_past_max_pods_fails_admission_with_out_of_pods(kube_api: Any, tmp_path: Path,
                                                                    runtime: str) -> None:
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api.kubeconfig, tmp_path, max_pods=2) as agent:
        await put_modules(api)
        for name in ("first", "second"):
            await api.create(PODS, wasm_pod(name, NODE, "configmap://modules/ticker.wasm", runtime=runtime,
                                            restart="Always", terminationGracePeriodSeconds=0))
            await wait_for(api, PODS, name, "default", lambda p: phase(p) == "Running")
        await api.create(PODS, wasm_pod("third", NODE, "configmap://modules/ticker.wasm", runtime=runtime))
        third = await wait_for(api, PODS, "third", "default", lambda p: phase(p) == "Failed")
        message = "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        assert (third["status"]["reason"], third["status"]["message"]) == ("OutOfpods", message)
        assert (await warning(api, "third", "OutOfpods"))["message"] == message
        # A Pod that ended frees its place: the next one is admitted.
        assert agent.controller is not None
        admitted = agent.controller.env.admitted
        await api.delete(PODS, "first", "default")
        async with asyncio.timeout(20):
            while len(admitted) > 1:
                await asyncio.sleep(0.05)
        await api.create(PODS, wasm_pod("fourth", NODE, "configmap://modules/ticker.wasm", runtime=runtime,
                                        restart="Always", terminationGracePeriodSeconds=0))
        await wait_for(api, PODS, "fourth", "default", lambda p: phase(p) == "Running")
        assert len(admitted) == 2


async def test_an_empty_dir_past_its_size_limit_gets_its_pod_evicted(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api.kubeconfig, tmp_path, eviction_monitoring_seconds=0.2):
        await put_modules(api)
        await api.create(PODS, wasm_pod(
            "filler", NODE, "configmap://modules/hostile.wasm", runtime="wasmtime", restart="Always",
            container={"args": ["fill", "/data/big", str(8 << 20)], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            volumes=[{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]))
        pod = await wait_for(api, PODS, "filler", "default", lambda p: phase(p) == "Failed", timeout=30)
        message = 'Usage of EmptyDir volume "data" exceeds the limit "1Mi". '
        assert (pod["status"]["reason"], pod["status"]["message"]) == ("Evicted", message)
        assert (await warning(api, "filler", "Evicted"))["message"] == message
        state = pod["status"]["containerStatuses"][0]["state"]
        assert "terminated" in state  # stopped, and not restarted although its policy is Always


async def test_a_crash_loop_keeps_the_logs_of_two_runs(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api.kubeconfig, tmp_path, log_max_bytes=200, log_max_files=2) as agent:
        await put_modules(api)
        created = await api.create(PODS, wasm_pod("crasher", NODE, "configmap://modules/exit.wasm", restart="Always",
                                                  container={"args": ["3"]}))
        await wait_for(api, PODS, "crasher", "default",
                       lambda p: ((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 4,
                       timeout=60)
        logs = pod_log_dir(agent.settings.state_dir / "logs", "default", "crasher", created["metadata"]["uid"]) / "main"
        runs = {int(p.name.split(".")[0]) for p in logs.glob("*.log*")}
        assert len(runs) <= 2 and max(runs) >= 3, sorted(p.name for p in logs.iterdir())
