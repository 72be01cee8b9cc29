"""Probes through the real agent: readiness gates the Pod's Ready condition, liveness and startup
failures restart the container, exec probes fail the Pod (docs/http.md, "Probes").

The probed module is `http-json` serving a hostPath directory the test controls: a probe of
`/items/<name>` succeeds while the file `<name>` exists, so the test flips the module's health
by writing and removing files (wasmtime: host directories)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_for_events,
    wasm_pod,
)
from tests.integration.faults import free_port

NODE = "wasm-node-1"


def probed_pod(name: str, port: int, data: Path, **probes: Any) -> dict[str, Any]:
    pod = wasm_pod(name, NODE, "configmap://modules/http-json.wasm", restart="Always", runtime="wasmtime",
                   terminationGracePeriodSeconds=1, automountServiceAccountToken=False,
                   metadata={"annotations": {"wasmlet.dev/http.main": json.dumps({"port": port})}},
                   volumes=[{"name": "data", "hostPath": {"path": str(data), "type": "Directory"}}],
                   container={"ports": [{"name": "http", "containerPort": port, "hostPort": port}],
                              "env": [{"name": "DATA_DIR", "value": "/data"}],
                              "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
                              **probes})
    return pod


def http_probe(item: str, **fields: Any) -> dict[str, Any]:
    return {"httpGet": {"path": f"/items/{item}", "port": "http"}, "periodSeconds": 1, **fields}


def ready(pod: dict[str, Any]) -> bool | None:
    conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return {"True": True, "False": False}.get(conditions.get("Ready", ""))


def container(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


async def seed(api: KubeClient) -> None:
    await put_module_configmap(api, "default", "modules", {"http-json.wasm": module_bytes("http-json")})


async def test_readiness_gates_the_ready_condition_both_ways(kube_api: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await seed(api)
        await api.create(PODS, probed_pod("gated", port, data, readinessProbe=http_probe("ready", failureThreshold=2)))
        pod = await wait_for(api, PODS, "gated", "default", lambda p: "running" in container(p).get("state", {}))
        assert ready(pod) is False and container(pod)["ready"] is False  # running, but not ready yet

        (data / "ready").write_text("yes")
        await wait_for(api, PODS, "gated", "default", lambda p: ready(p) is True and container(p)["ready"])

        (data / "ready").unlink()
        pod = await wait_for(api, PODS, "gated", "default", lambda p: ready(p) is False)
        assert container(pod)["restartCount"] == 0  # readiness never restarts anything
        await wait_for_events(api, "gated", ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404"))


async def test_liveness_failures_restart_the_container(kube_api: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "alive").write_text("yes")
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await seed(api)
        await api.create(PODS, probed_pod("living", port, data, livenessProbe=http_probe("alive", failureThreshold=2)))
        pod = await wait_for(api, PODS, "living", "default", lambda p: ready(p) is True)
        assert container(pod)["restartCount"] == 0

        (data / "alive").unlink()
        pod = await wait_for(api, PODS, "living", "default", lambda p: container(p).get("restartCount", 0) >= 1)
        (data / "alive").write_text("yes again")
        pod = await wait_for(api, PODS, "living", "default",
                             lambda p: ready(p) is True and "running" in container(p)["state"])
        terminated = container(pod)["lastState"]["terminated"]
        assert terminated["exitCode"] == 143 and terminated["reason"] == "Error"
        await wait_for_events(api, "living",
                              ("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404"),
                              ("Killing", "Container main failed liveness probe, will be restarted"))


async def test_a_startup_probe_holds_back_started_and_the_other_probes(kube_api: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await seed(api)
        await api.create(PODS, probed_pod("slow-start", port, data,
                                          startupProbe=http_probe("started", failureThreshold=30),
                                          livenessProbe=http_probe("missing-but-not-probed-yet")))
        pod = await wait_for(api, PODS, "slow-start", "default", lambda p: "running" in container(p).get("state", {}))
        assert container(pod)["started"] is False and ready(pod) is False

        (data / "started").write_text("yes")
        await wait_for(api, PODS, "slow-start", "default", lambda p: container(p)["started"] is True)
        # Now the liveness probe runs and fails: the container is restarted.
        await wait_for(api, PODS, "slow-start", "default", lambda p: container(p).get("restartCount", 0) >= 1)


async def test_tcp_socket_liveness_restarts_a_plain_container_nobody_listens_for(kube_api: Any, tmp_path: Path) -> None:
    port = free_port()
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker")})
        await api.create(PODS, wasm_pod(
            "ticking", NODE, "configmap://modules/ticker.wasm", restart="Always", terminationGracePeriodSeconds=0,
            automountServiceAccountToken=False,
            container={"ports": [{"containerPort": port}], "args": ["--interval-ms", "1000"],
                       "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 1}}))
        await wait_for(api, PODS, "ticking", "default", lambda p: container(p).get("restartCount", 0) >= 1)
        await wait_for_events(api, "ticking",
                              ("Unhealthy", f"Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused"))


async def test_an_exec_probe_fails_the_pod_saying_wasm_cannot_run_it(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state"):
        await seed(api)
        await api.create(PODS, probed_pod("execs", free_port(), tmp_path,
                                          readinessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}}))
        pod = await wait_for(api, PODS, "execs", "default", lambda p: p.get("status", {}).get("phase") == "Failed")
        assert pod["status"]["reason"] == "UnsupportedProbe"
        assert pod["status"]["message"] == ('container "main": readinessProbe.exec cannot run in a wasm Pod: there is '
                                            "no process to exec into; use httpGet or tcpSocket")
