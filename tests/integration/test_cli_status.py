"""`wasmlet status` against the test Kubernetes API over HTTP: the three tables a user reads."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.cli.main import main
from wasmlet.cli.status import age, pod_status
from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import CRDS

from tests.fixtures.kubeapi import KubeAPI

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "wasmworkloads.wasmlet.dev.yaml"
NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def wasm_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"wasmlet.dev/agent": "true", "wasmlet.dev/runtime.wasmer": "true",
                                                  "wasmlet.dev/runtime.wasmtime": "true"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"pods": "110"},
                       "nodeInfo": {"kubeletVersion": "v1.34.0-wasmlet.0.1.0"}}}


def pod(name: str, node: str, *, workload: str | None = None, runtime: str | None = "wasmer") -> dict[str, Any]:
    labels = {"wasmlet.dev/workload": workload} if workload else {}
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "main", "image": "configmap://m/ticker.wasm"}]}
    if runtime:
        spec["runtimeClassName"] = runtime
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "apps", "labels": labels},
            "spec": spec}


async def status_output(kube_api: KubeAPI, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["status", "--kubeconfig", str(kube_api.kubeconfig), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_status_shows_workloads_wasm_nodes_and_their_pods(kube_api: KubeAPI,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    async with KubeClient(load_config(kube_api.kubeconfig)) as api:
        await api.create(CRDS, yaml.safe_load(CRD_PATH.read_text()))
    kube_api.seed_namespace("apps")
    kube_api.put(wasm_node("worker-1-wasm"))
    kube_api.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}})  # the host: not a wasm node
    kube_api.put({"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload",
                  "metadata": {"name": "ticker", "namespace": "apps"},
                  "spec": {"replicas": 2, "module": {"configMap": {"name": "m", "key": "ticker.wasm"}}},
                  "status": {"readyText": "1/2", "module": "configmap://m/ticker.wasm", "conditions": [
                      {"type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "1 of 2 ready",
                       "lastTransitionTime": "2025-01-01T00:00:00Z"}]}})
    kube_api.put(pod("ticker-bcdfg", "worker-1-wasm", workload="ticker"))
    kube_api.put(pod("hand-written", "worker-1-wasm"))
    kube_api.put(pod("nginx", "worker-1", runtime=None))  # an ordinary Pod: not listed

    code, out, err = await status_output(kube_api, capsys, "-n", "apps")

    assert (code, err) == (0, "")
    workloads, nodes, pods = out.split("\n\n")
    assert workloads.splitlines()[0] == "WasmWorkloads (namespace apps)"
    assert workloads.splitlines()[1].split() == ["NAMESPACE", "NAME", "READY", "RUNTIME", "MODULE", "REASON", "AGE"]
    assert workloads.splitlines()[2].split()[:6] == ["apps", "ticker", "1/2", "wasmer", "configmap://m/ticker.wasm",
                                                     "ReplicasNotReady"]
    [node_row] = nodes.splitlines()[2:]
    assert node_row.split()[:5] == ["worker-1-wasm", "Ready", "wasmer,wasmtime", "2/110", "v1.34.0-wasmlet.0.1.0"]
    rows = {line.split()[1]: line.split() for line in pods.splitlines()[2:]}
    assert set(rows) == {"ticker-bcdfg", "hand-written"}
    assert rows["ticker-bcdfg"][2:5] == ["ticker", "worker-1-wasm", "Pending"]
    assert rows["hand-written"][2] == "-"


async def test_status_without_the_crd_says_how_to_install_it(kube_api: KubeAPI,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await status_output(kube_api, capsys, "-A")
    assert code == 0
    assert "WasmWorkloads (all namespaces)\n  the WasmWorkload CRD is not installed (kubectl apply -f crds/)" in out
    assert "no wasm nodes" in out and "no wasm Pods" in out


async def test_status_reports_an_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["status", "--kubeconfig", "http://127.0.0.1:9"])
    assert code == 1
    assert "the API server at http://127.0.0.1:9 does not answer" in capsys.readouterr().err


def test_the_status_column_reads_like_kubectl() -> None:
    def with_state(state: dict[str, Any], phase: str = "Running") -> dict[str, Any]:
        return {"metadata": {}, "status": {"phase": phase, "containerStatuses": [{"state": state}]}}

    assert pod_status(with_state({"waiting": {"reason": "CrashLoopBackOff"}})) == "CrashLoopBackOff"
    assert pod_status(with_state({"terminated": {"reason": "Completed"}}, "Succeeded")) == "Succeeded"
    assert pod_status(with_state({"terminated": {"reason": "Error"}}, "Failed")) == "Error"
    assert pod_status({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}}) == "Terminating"
    assert pod_status({"metadata": {}, "status": {"phase": "Failed", "reason": "UnknownRuntimeClass"}}) \
        == "UnknownRuntimeClass"


@pytest.mark.parametrize(("seconds", "text"), [
    (45, "45s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
    (3 * 86400 + 3600, "3d1h"), (400 * 86400, "400d"), (3 * 365 * 86400, "3y"),
])
def test_ages_read_like_kubectl(seconds: int, text: str) -> None:
    then = (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age(then, NOW) == text
