"""The node agent against the Kubernetes API over real HTTP, running real wasm modules on each runtime
(the `runtime` fixture: wasmer and wasmtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp.web

from wasmlet.kube.resources import LEASES, NODES, PODS
from wasmlet.nodeagent.logs import pod_log_dir, read_lines

from tests.integration.agent_helpers import (
    api_client,
    container_state,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)

NODE = "wasm-node-1"


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


async def test_the_agent_registers_its_node_with_labels_taints_lease_and_ready(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api.kubeconfig, tmp_path, node_labels={"node-role.kubernetes.io/edge": ""}) as agent:
        node = await wait_for(api, NODES, NODE, None, lambda n: bool((n.get("status") or {}).get("conditions")))
        labels = node["metadata"]["labels"]
        assert labels["wasmlet.dev/agent"] == "true"
        assert labels["wasmlet.dev/runtime.wasmer"] == "true"
        assert labels["wasmlet.dev/runtime.wasmtime"] == "true"
        assert labels["kubernetes.io/arch"] == "wasm32-wasi"
        assert "node-role.kubernetes.io/edge" in labels
        assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
            ("kubernetes.io/arch", "NoSchedule"), ("kubernetes.io/arch", "NoExecute")}
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert node["status"]["capacity"]["pods"] == "110"
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.kubelet_port > 0
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("wasmer://")
        assert ",wasmtime://" in node["status"]["nodeInfo"]["containerRuntimeVersion"]
        lease = await wait_for(api, LEASES, NODE, "kube-node-lease", lambda lease: True)
        assert lease["spec"]["holderIdentity"] == NODE
        assert lease["spec"]["leaseDurationSeconds"] == 40
    node = await _get_node(kube_api)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # marked not ready on shutdown


async def _get_node(kube_api: Any) -> dict[str, Any]:
    async with api_client(kube_api.kubeconfig) as api:
        return await api.get(NODES, NODE)


async def test_a_module_from_a_configmap_runs_to_completion_and_its_output_is_logged(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {"hello.wasm": module_bytes("hello")})
        await api.create(PODS, wasm_pod("hello", NODE, "configmap://modules/hello.wasm", runtime=runtime))
        pod = await wait_for(api, PODS, "hello", "default", lambda p: phase(p) == "Succeeded")
        terminated = container_state(pod)["terminated"]
        assert terminated["exitCode"] == 0
        assert terminated["reason"] == "Completed"
        status = pod["status"]["containerStatuses"][0]
        assert status["imageID"] == "sha256:" + hashlib.sha256(module_bytes("hello")).hexdigest()
        assert pod["status"]["hostIP"] == "127.0.0.1"
        uid = pod["metadata"]["uid"]
        log_file = pod_log_dir(agent.settings.state_dir / "logs", "default", "hello", uid) / "main" / "0.log"
        lines = [(stream, text) for _, stream, text in read_lines(log_file)]
        assert ("stdout", "Hello from wasmlet!") in lines
        assert any(stream == "stderr" for stream, _ in lines)


async def test_a_module_from_an_http_url_is_verified_by_its_sha256(kube_api: Any, tmp_path: Path, runtime: str) -> None:
    wasm = module_bytes("exit")
    app = aiohttp.web.Application()

    async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=wasm)

    app.router.add_get("/exit.wasm", serve)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/exit.wasm"
    try:
        async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
            good = wasm_pod("exit-7", NODE, url, runtime=runtime, container={"args": ["7"]},
                            metadata={"annotations": {"wasmlet.dev/sha256.main": hashlib.sha256(wasm).hexdigest()}})
            bad = wasm_pod("tampered", NODE, url, runtime=runtime,
                           metadata={"annotations": {"wasmlet.dev/sha256.main": "0" * 64}})
            await api.create(PODS, good)
            await api.create(PODS, bad)
            pod = await wait_for(api, PODS, "exit-7", "default", lambda p: phase(p) == "Failed")
            assert container_state(pod)["terminated"]["exitCode"] == 7
            assert container_state(pod)["terminated"]["reason"] == "Error"
            pod = await wait_for(api, PODS, "tampered", "default",
                                 lambda p: container_state(p).get("waiting", {}).get("reason") in
                                 ("ErrImagePull", "ImagePullBackOff"))
            assert "digest mismatch" in container_state(pod)["waiting"]["message"]
    finally:
        await runner.cleanup()


async def test_a_long_running_module_is_running_and_ready_until_deleted_gracefully(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker")})
        await api.create(PODS, wasm_pod("ticker", NODE, "configmap://modules/ticker.wasm", restart="Always", runtime=runtime,
                                        terminationGracePeriodSeconds=1,
                                        container={"args": ["--interval-ms", "100"]}))
        pod = await wait_for(api, PODS, "ticker", "default", lambda p: phase(p) == "Running")
        assert "running" in container_state(pod)
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True"
        await api.delete(PODS, "ticker", "default")
        await wait_gone(api, "ticker")


async def test_a_pod_with_a_runtime_class_the_node_does_not_offer_fails_with_the_reason(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path, runtimes=("wasmer",)):
        pod = wasm_pod("wants-wasmtime", NODE, "configmap://modules/x.wasm", runtime="wasmtime")
        await api.create(PODS, pod)
        pod = await wait_for(api, PODS, "wants-wasmtime", "default", lambda p: phase(p) == "Failed")
        assert pod["status"]["reason"] == "UnknownRuntimeClass"
        assert "wasmtime" in pod["status"]["message"]
