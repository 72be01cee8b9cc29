"""HTTP handler Pods through the real agent against the test API: real wasm modules answering real
HTTP requests on the node's port (docs/http.md), on both runtimes."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import generate_latest

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import CONFIGMAPS, PODS
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.logs import pod_log_dir, read_lines

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)
from tests.integration.faults import free_port

NODE = "wasm-node-1"


def handler_pod(name: str, port: int, runtime: str, module: str = "http-echo", **handler: Any) -> dict[str, Any]:
    annotations = {"wasmlet.dev/http.main": json.dumps({"port": port, **handler})}
    return wasm_pod(name, NODE, f"configmap://modules/{module}.wasm", restart="Always", runtime=runtime,
                    terminationGracePeriodSeconds=1, automountServiceAccountToken=False,
                    metadata={"annotations": annotations, "labels": {"app": name}},
                    container={"ports": [{"name": "http", "containerPort": port, "hostPort": port, "protocol": "TCP"}]})


async def serving(api: KubeClient, pod: dict[str, Any]) -> dict[str, Any]:
    await api.create(PODS, pod)
    return await wait_for(api, PODS, pod["metadata"]["name"], "default", lambda p: _running(p) or _failed(p))


def _running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return "running" in (statuses[0].get("state") or {})


def _failed(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


async def seed(api: KubeClient) -> None:
    await put_module_configmap(api, "default", "modules", {
        f"{m}.wasm": module_bytes(m) for m in ("http-echo", "http-hello", "http-json", "ticker")})


async def fetch(port: int, target: str = "/", method: str = "GET", **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, f"http://127.0.0.1:{port}{target}", **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def log_lines(agent: Agent, pod: dict[str, Any]) -> list[tuple[str, str]]:
    meta = pod["metadata"]
    root = pod_log_dir(agent.settings.state_dir / "logs", meta["namespace"], meta["name"], meta["uid"])
    return [(stream, text) for _, stream, text in read_lines(root / "main" / "0.log")]


async def test_a_request_runs_the_module_with_the_request_in_its_environment_and_body_on_stdin(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await seed(api)
        pod = await serving(api, handler_pod("echo", port, runtime, path="/api"))
        assert pod["status"]["podIP"] == "127.0.0.1" and pod["status"]["podIPs"] == [{"ip": "127.0.0.1"}]

        sent = b"\x00binary body\n"
        status, headers, body = await fetch(port, "/api/items/a%20b?x=1&y=2", "POST", data=sent,
                                            headers={"X-Test": "one", "Content-Type": "application/octet-stream",
                                                     "Proxy": "http://attacker.example:8080"})
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        echoed = json.loads(body)
        assert echoed["method"] == "POST"
        assert echoed["scriptName"] == "/api"
        assert echoed["path"] == "/items/a b"
        assert echoed["query"] == "x=1&y=2"
        assert echoed["headers"]["HTTP_X_TEST"] == "one"
        # httpoxy: a `Proxy` header must not become the module's outbound proxy setting.
        assert "HTTP_PROXY" not in echoed["headers"] and "HTTP_PROXY" not in echoed["env"]
        assert str(echoed["contentLength"]) == str(len(sent))
        assert echoed["body"] == "\u0000binary body\n"

        status, headers, body = await fetch(port, "/elsewhere")
        assert (status, headers["X-Wasmlet-Error"]) == (404, "not-found")


async def test_bad_output_traps_and_timeouts_get_a_5xx_and_the_next_request_is_served(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await seed(api)
        pod = await serving(api, handler_pod("echo", port, runtime, requestTimeoutSeconds=1, maxBodyBytes=1000))
        answers = {}
        for query in ("bad=noheaders", "bad=garbage", "bad=status", "bad=empty", "trap=1", "sleep_ms=3000"):
            status, headers, body = await fetch(port, f"/?{query}")
            answers[query] = (status, headers.get("X-Wasmlet-Error"))
        assert answers == {
            "bad=noheaders": (502, "bad-response"), "bad=garbage": (502, "bad-response"),
            "bad=status": (502, "bad-response"), "bad=empty": (502, "bad-response"),
            "trap=1": (502, "trap"), "sleep_ms=3000": (504, "timeout"),
        }
        status, headers, _ = await fetch(port, "/", "POST", data=b"x" * 1001)
        assert (status, headers["X-Wasmlet-Error"]) == (413, "body-too-large")
        status, headers, body = await fetch(port, "/?status=201&stderr=still-fine")
        assert status == 201 and json.loads(body)["query"] == "status=201&stderr=still-fine"

        # The container ran on: no restart, and the agent tells what happened in the log and metrics.
        pod = await api.get(PODS, "echo", "default")
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0 and _running(pod)
        lines = log_lines(agent, pod)
        assert ("stderr", "still-fine") in lines
        access = [text for stream, text in lines if stream == "stdout"]
        assert len(access) == 8 and access[-1].endswith("ms") and '"GET /?status=201&stderr=still-fine HTTP/1.1" 201' \
            in access[-1]
        sample = agent.metrics.registry.get_sample_value
        labels = {"namespace": "default", "pod": "echo", "container": "main"}
        assert sample("wasmlet_http_requests_total", {**labels, "code": "502"}) == 5
        assert sample("wasmlet_http_request_errors_total", {**labels, "reason": "timeout"}) == 1
        assert sample("wasmlet_http_request_duration_seconds_count", labels) == 8


async def test_a_module_spinning_forever_is_stopped_at_the_timeout_on_wasmtime(kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await seed(api)
        await serving(api, handler_pod("spin", port, "wasmtime", requestTimeoutSeconds=1))
        status, headers, _ = await fetch(port, "/?spin=1")
        assert (status, headers["X-Wasmlet-Error"]) == (504, "timeout")
        status, _, _ = await fetch(port, "/")
        assert status == 200
        assert agent.metrics.registry.get_sample_value(
            "wasmlet_http_instances_in_flight", {"namespace": "default", "pod": "spin", "container": "main"}) == 0


async def test_a_response_over_the_limit_is_cut_off_with_a_502(kube_api: Any, tmp_path: Path, runtime: str) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await seed(api)
        await serving(api, handler_pod("big", port, runtime))
        status, _, body = await fetch(port, f"/?big={1024 * 1024}")
        assert (status, len(body)) == (200, 1024 * 1024)  # a large body is fine...
        status, headers, _ = await fetch(port, f"/?big={20 * 1024 * 1024}")
        assert (status, headers["X-Wasmlet-Error"]) == (502, "response-too-large")  # ...past 16 MiB it is not


async def test_max_concurrency_holds_and_requests_past_it_wait_then_get_503(
        kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await seed(api)
        await serving(api, handler_pod("slow", port, "wasmtime", maxConcurrency=2, requestTimeoutSeconds=2))
        gauge = {"namespace": "default", "pod": "slow", "container": "main"}
        peak = 0

        async def watch_in_flight() -> None:
            nonlocal peak
            while True:
                peak = max(peak, agent.metrics.registry.get_sample_value("wasmlet_http_instances_in_flight", gauge))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_in_flight())
        # Each takes 1.2 s and may take 2 s: two run at once and answer; the next two start after them
        # and run out of time; the last two never get a place.
        answers = await asyncio.gather(*(fetch(port, "/?sleep_ms=1200") for _ in range(6)))
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        assert peak == 2
        assert sorted((s, h.get("X-Wasmlet-Error") or "") for s, h, _ in answers) == [
            (200, ""), (200, ""), (503, "busy"), (503, "busy"), (504, "timeout"), (504, "timeout")]


async def test_a_privileged_port_and_the_agents_own_port_are_refused(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await seed(api)
        low = await serving(api, handler_pod("low", 80, "wasmer", module="http-hello"))
        assert (low["status"]["phase"], low["status"]["reason"]) == ("Failed", "PortNotAllowed")
        assert "port 80/TCP is below the lowest port node wasm-node-1 gives Pods (1024" in low["status"]["message"]
        own = await serving(api, handler_pod("own", agent.kubelet_port, "wasmer", module="http-hello"))
        assert (own["status"]["phase"], own["status"]["reason"]) == ("Failed", "PortNotAllowed")
        assert f"port {agent.kubelet_port}/TCP is the node agent's own (kubelet API" in own["status"]["message"]
        undeclared = handler_pod("undeclared", free_port(), "wasmer", module="http-hello")
        del undeclared["spec"]["containers"][0]["ports"][0]["hostPort"]
        failed = await serving(api, undeclared)
        assert (failed["status"]["phase"], failed["status"]["reason"]) == ("Failed", "HostPortRequired")


async def test_a_port_is_one_pods_on_a_node_and_a_taken_port_fails_the_pod(kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await seed(api)
        await serving(api, handler_pod("first", port, "wasmer", module="http-hello"))
        second = await serving(api, handler_pod("second", port, "wasmer", module="http-hello"))
        assert (second["status"]["phase"], second["status"]["reason"]) == ("Failed", "PortInUse")
        assert f"port {port}/TCP is already used by Pod default/first" in second["status"]["message"]

        with socket.socket() as squatter:  # a process on the node holds the port
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            third = await serving(api, handler_pod("third", taken, "wasmer", module="http-hello"))
        assert (third["status"]["phase"], third["status"]["reason"]) == ("Failed", "PortInUse")
        assert f"port {taken}/TCP on 127.0.0.1 is in use by another process" in third["status"]["message"]

        # The port is free again once its Pod is gone.
        await api.delete(PODS, "first", "default")
        await wait_gone(api, "first")
        fourth = await serving(api, handler_pod("fourth", port, "wasmer", module="http-hello"))
        assert _running(fourth)
        assert (await fetch(port))[2] == b"hello from wasm\n"


async def test_the_json_api_serves_a_mounted_configmap(kube_api: Any, tmp_path: Path, runtime: str) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await seed(api)
        await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "items", "namespace": "default"},
                                      "data": {"apple": "red", "banana": "yellow \"ripe\""}})
        pod = handler_pod("json", port, runtime, module="http-json")
        pod["spec"]["volumes"] = [{"name": "items", "configMap": {"name": "items"}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "items", "mountPath": "/config", "readOnly": True}]
        await serving(api, pod)
        assert json.loads((await fetch(port, "/items"))[2]) == ["apple", "banana"]
        assert json.loads((await fetch(port, "/items/banana"))[2]) == {"name": "banana", "value": "yellow \"ripe\""}
        status, _, body = await fetch(port, "/items/cherry")
        assert status == 404 and "cherry" in json.loads(body)["error"]
        status, headers, _ = await fetch(port, "/items", "DELETE")
        assert (status, headers["Allow"]) == (405, "GET")


async def test_deleting_the_pod_closes_its_port_and_drops_its_metrics(kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await seed(api)
        await serving(api, handler_pod("short", port, "wasmtime", module="http-hello"))
        assert (await fetch(port))[0] == 200
        await api.delete(PODS, "short", "default")
        await wait_gone(api, "short")
        try:
            await fetch(port)
        except aiohttp.ClientConnectionError:
            pass
        else:
            raise AssertionError(f"port {port} still answers after its Pod was deleted")
        assert 'pod="short"' not in generate_latest(agent.metrics.registry).decode()



async def test_a_body_that_never_arrives_is_answered_408_at_the_timeout(kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await seed(api)
        await serving(api, handler_pod("patient", port, "wasmtime", requestTimeoutSeconds=1))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a little")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await writer.wait_closed()
        assert status_line.startswith(b"HTTP/1.1 408 ")
        assert (await fetch(port))[0] == 200  # the next request is served
