"""Bad input never takes the agent down: each bad Pod ends with a clear reason, `/healthz` stays
ok, and a well-behaved Pod next to them runs on undisturbed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import wasmtime

from wasmlet.kube.resources import PODS, WASM_WORKLOADS
from wasmlet.nodeagent.oci.manifest import OCI_MANIFEST

from tests.fixtures.registry import OciRegistry, push_blob
from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)
from tests.integration.oci_helpers import descriptor, put_manifest
from tests.integration.operator_helpers import (
    NS,
    condition,
    eventually,
    free_port,
    http_get,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)

NODE = "wasm-node-1"
UNKNOWN_IMPORT = wasmtime.wat2wasm(
    '(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1)'
    ' (func (export "_start") call 0))')


def state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def waiting(pod: dict[str, Any]) -> dict[str, str]:
    return state(pod).get("waiting") or {}


async def healthz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"https://127.0.0.1:{port}/healthz", ssl=False) as resp:
        return resp.status, await resp.text()


async def test_corrupt_and_hostile_modules_fail_with_reasons_and_hurt_nobody(kube_api: Any, tmp_path: Path) -> None:
    hello = module_bytes("hello")
    modules = {"random.wasm": os.urandom(4096), "truncated.wasm": hello[: len(hello) // 2],
               "unknown-import.wasm": UNKNOWN_IMPORT, "trap.wasm": module_bytes("trap"),
               "ticker.wasm": module_bytes("ticker"), "empty.wasm": b""}
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", modules)
        await api.create(PODS, wasm_pod("steady", NODE, "configmap://modules/ticker.wasm", restart="Always",
                                        terminationGracePeriodSeconds=0, container={"args": ["--interval-ms", "200"]}))
        for name in ("random", "truncated", "unknown-import", "trap", "empty"):
            await api.create(PODS, wasm_pod(name, NODE, f"configmap://modules/{name}.wasm"))
        await api.create(PODS, wasm_pod("bad-ref", NODE, "Not A Valid Reference!"))
        await api.create(PODS, wasm_pod("nfs", NODE, "configmap://modules/ticker.wasm",
                                        volumes=[{"name": "v", "nfs": {"server": "x", "path": "/"}}]))

        for name in ("random", "truncated", "empty"):
            pod = await wait_for(api, PODS, name, "default",
                                 lambda p: waiting(p).get("reason") in ("ErrImagePull", "ImagePullBackOff"))
            assert "wasm" in waiting(pod)["message"], waiting(pod)
        pod = await wait_for(api, PODS, "unknown-import", "default",
                             lambda p: "terminated" in state(p) or bool(waiting(p).get("reason", "").startswith("Err")))
        detail = state(pod).get("terminated") or waiting(pod)
        assert "launch_missiles" in detail.get("message", ""), detail
        pod = await wait_for(api, PODS, "trap", "default", lambda p: (p.get("status") or {}).get("phase") == "Failed")
        assert state(pod)["terminated"]["exitCode"] == 134
        assert "unreachable" in state(pod)["terminated"]["message"]
        pod = await wait_for(api, PODS, "nfs", "default", lambda p: (p.get("status") or {}).get("phase") == "Failed")
        assert pod["status"]["reason"] == "UnsupportedVolume"
        pod = await wait_for(api, PODS, "bad-ref", "default",
                             lambda p: (p.get("status") or {}).get("phase") == "Failed" or bool(waiting(p)))
        assert "InvalidImageName" in (pod["status"].get("reason", ""), waiting(pod).get("reason"))

        # The neighbour runs through all of it (its first status may still be on its way).
        steady = await wait_for(api, PODS, "steady", "default", lambda p: "running" in state(p))
        assert steady["status"]["containerStatuses"][0]["restartCount"] == 0
        assert await healthz(agent.kubelet_port) == (200, "ok")


async def test_runaway_modules_and_a_1_gib_layer_end_with_reasons_and_hurt_nobody(
        kube_api: Any, oci_registry: OciRegistry, tmp_path: Path) -> None:
    # A manifest whose module layer claims 1 GiB: refused from the manifest, before any download.
    repo = oci_registry.repository("bad/huge")
    config, layer = b"{}", module_bytes("hello")
    async with aiohttp.ClientSession() as session:
        await push_blob(session, oci_registry, repo, config)
        await push_blob(session, oci_registry, repo, layer)
        await put_manifest(session, oci_registry, repo, "v1", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.wasm.config.v0+json",
            "config": descriptor("application/vnd.wasm.config.v0+json", config),
            "layers": [{**descriptor("application/wasm", layer), "size": 1 << 30}]})
    modules = {f"{m}.wasm": module_bytes(m) for m in ("ticker", "loop", "grow")}
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", modules)
        await api.create(PODS, wasm_pod("steady", NODE, "configmap://modules/ticker.wasm", restart="Always",
                                        terminationGracePeriodSeconds=0, container={"args": ["--interval-ms", "200"]}))
        await wait_for(api, PODS, "steady", "default", lambda p: "running" in state(p))
        await api.create(PODS, wasm_pod("huge", NODE, f"{oci_registry.host}/{repo}:v1"))
        # An infinite loop and unbounded memory growth, bounded by the Pod's deadline and memory limit.
        await api.create(PODS, wasm_pod("spinner", NODE, "configmap://modules/loop.wasm", runtime="wasmtime",
                                        activeDeadlineSeconds=1, terminationGracePeriodSeconds=0))
        await api.create(PODS, wasm_pod("greedy", NODE, "configmap://modules/grow.wasm", runtime="wasmtime",
                                        container={"args": ["4096"], "resources": {"limits": {"memory": "32Mi"}}}))

        pod = await wait_for(api, PODS, "huge", "default",
                             lambda p: waiting(p).get("reason") in ("ErrImagePull", "ImagePullBackOff"))
        assert f"the module layer has {1 << 30} bytes, the limit is {256 << 20}" in waiting(pod)["message"], waiting(pod)
        pod = await wait_for(api, PODS, "spinner", "default", lambda p: (p.get("status") or {}).get("phase") == "Failed")
        assert pod["status"]["reason"] == "DeadlineExceeded"
        pod = await wait_for(api, PODS, "greedy", "default", lambda p: (p.get("status") or {}).get("phase") == "Failed")
        assert (state(pod)["terminated"]["exitCode"], state(pod)["terminated"]["reason"]) == (137, "OOMKilled")

        # The neighbour runs through all of it (its first status may still be on its way).
        steady = await wait_for(api, PODS, "steady", "default", lambda p: "running" in state(p))
        assert steady["status"]["containerStatuses"][0]["restartCount"] == 0
        assert await healthz(agent.kubelet_port) == (200, "ok")


async def test_a_workload_with_every_field_wrong_gets_a_reason_and_the_operator_serves_on(
        kube_api: Any, tmp_path: Path) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    async with api_client(kube_api.kubeconfig) as api, running_operator(kube_api, liveness_endpoint=liveness):
        wrong = workload("chaos", replicas=-3, runtime="docker", restartPolicy="Sometimes", args="not-a-list",
                         env=[{"value": "no name"}], network="internet", nodeSelector=["a"],
                         resources={"limits": {"memory": "lots", "cpu": "fast"}},
                         updateStrategy={"type": "YOLO"}, placement={"rescheduleAfterSeconds": "soon"},
                         volumes=[{"name": "v", "nfs": {}}], activeDeadlineSeconds=-1)
        wrong["spec"]["module"] = {"image": "x/y:1", "url": "ftp://nope", "sha256": "short"}
        await api.create(WASM_WORKLOADS, wrong, NS)
        await api.create(WASM_WORKLOADS, workload("fine"), NS)
        chaos = await wait_workload(kube_api, "chaos", lambda b: condition(b).get("reason") == "InvalidSpec")
        assert condition(chaos)["status"] == "False"
        assert "spec." in condition(chaos)["message"]
        await eventually(lambda: pods_count(api, "fine", 1), what="the healthy workload's pod")
        assert await pods_count(api, "chaos", 0) is not None
        status, _ = await http_get(liveness)
        assert status == 200
