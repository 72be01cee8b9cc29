"""The operator against the test Kubernetes API: fixtures and helpers of the operator's tests.

The CRDs are installed from crds/ exactly as a user would, Nodes are registered as an agent
registers them, and Pod status is written through /status as an agent writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from wasmlet.api import keys
from wasmlet.kube import AlreadyExists, KubeClient, load_config
from wasmlet.kube.resources import CRDS, EVENTS, PODS, WASM_WORKLOADS
from wasmlet.operator.main import run_operator
from wasmlet.operator.settings import OperatorSettings

from tests.fixtures.kubeapi import KubeAPI

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "wasmworkloads.wasmlet.dev.yaml"
NS = "apps"
SHA = "0123456789abcdef" * 4
OPERATOR_AGENT = "wasmlet-operator"  # the User-Agent of the operator's own API client
WRITES = ("POST", "PUT", "PATCH", "DELETE")
T = TypeVar("T")


def wasm_node(name: str, *, pods: int = 110, memory: str = "1Gi", runtimes: tuple[str, ...] = ("wasmer",),
              ready: str = "True") -> dict[str, Any]:
    """A Node as the agent registers it (docs/contract.md)."""
    labels = {
        "kubernetes.io/arch": "wasm32-wasi", "kubernetes.io/os": "wasm32-wasi", "kubernetes.io/hostname": name,
        "type": "wasmlet", "wasmlet.dev/agent": "true", **{keys.runtime_label(r): "true" for r in runtimes},
    }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "kubernetes.io/arch", "value": "wasm32-wasi", "effect": e}
                            for e in ("NoSchedule", "NoExecute")]},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "wasmlet is ready",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": {"pods": str(pods), "cpu": "2", "memory": memory},
            "allocatable": {"pods": str(pods), "cpu": "2", "memory": memory},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.34.0-wasmlet", "containerRuntimeVersion": "wasmer://5.0",
                         "architecture": "wasm32-wasi", "operatingSystem": "wasm32-wasi"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }


def lost(node: dict[str, Any], status: str = "Unknown") -> dict[str, Any]:
    """The Node as the node lifecycle controller leaves it once its agent stopped reporting."""
    node["status"]["conditions"][0].update(status=status, reason="NodeStatusUnknown",
                                           message="Kubelet stopped posting node status.")
    return node


def workload(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("module", {"image": "registry.local/hello:1"})
    return {"apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND,
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def install_crds(api: KubeClient) -> None:
    """Every CRD in crds/, as a user installs them (those already there are left alone)."""
    for path in sorted(CRD_PATH.parent.glob("*.yaml")):
        with contextlib.suppress(AlreadyExists):
            await api.create(CRDS, yaml.safe_load(path.read_text()))


@pytest.fixture()
async def api(kube_api: KubeAPI) -> AsyncIterator[KubeClient]:
    """A client for the test's own requests, with the CRDs installed as a user would install them."""
    async with KubeClient(load_config(kube_api.kubeconfig)) as client:
        await install_crds(client)
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_operator(kube_api: KubeAPI, *, install: bool = True, **overrides: Any) -> AsyncIterator[None]:
    """The operator in this event loop, stopped through kopf's stop flag (its cleanup runs).

    It runs as deployed: with peering, so the CRDs of crds/ are installed first if missing
    (unless `install` is false)."""
    if install:
        async with KubeClient(load_config(kube_api.kubeconfig)) as client:
            await install_crds(client)
    settings = OperatorSettings(**{"namespace": NS, "retry_seconds": 0.2, **overrides})
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_operator(settings, load_config(kube_api.kubeconfig),
                                            stop_flag=stop, ready_flag=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED, timeout=10)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    try:
        if task.done():
            task.result()  # the operator died at startup: raise why
        if not ready.is_set():
            raise TimeoutError("the operator did not start within 10s")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def live_pods(api: KubeClient, name: str) -> list[dict[str, Any]]:
    listing = await api.list(PODS, NS, label_selector=f"{keys.LABEL_WORKLOAD}={name}")
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


async def pods_count(api: KubeClient, name: str, count: int, *,
                     exclude: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    pods = [p for p in await live_pods(api, name)
            if not exclude or p["metadata"]["name"] != exclude["metadata"]["name"]]
    return pods if len(pods) == count else None


async def make_ready(api: KubeClient, pod: dict[str, Any]) -> None:
    """What the agent reports once the module runs: Running, Ready, a running container."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = [{"type": t, "status": "True", "lastTransitionTime": now}
             for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    status = {"phase": "Running", "conditions": ready, "startTime": now, "containerStatuses": [{
        "name": "main", "ready": True, "started": True, "restartCount": 0,
        "image": pod["spec"]["containers"][0]["image"], "imageID": f"registry.local/hello@sha256:{SHA}",
        "state": {"running": {"startedAt": now}},
    }]}
    await api.patch(PODS, pod["metadata"]["name"], {"status": status}, NS, subresource="status")


async def finish(api: KubeClient, pod: dict[str, Any], *, exit_code: int = 0, reason: str | None = None,
                 message: str = "") -> None:
    """What the agent reports once the module exited (or the node ended the Pod, with `reason`)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                  "startedAt": now, "finishedAt": now}
    status: dict[str, Any] = {
        "phase": "Succeeded" if exit_code == 0 and reason is None else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "main", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                               "state": {"terminated": terminated}}],
    }
    if reason is not None:
        status.update(reason=reason, message=message)
    await api.patch(PODS, pod["metadata"]["name"], {"status": status}, NS, subresource="status")


def condition(body: dict[str, Any] | None, kind: str = "Ready") -> dict[str, Any]:
    for entry in ((body or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return {}


async def wait_workload(kube_api: KubeAPI, name: str, predicate: Callable[[dict[str, Any]], bool], *,
                        timeout: float = 10.0) -> dict[str, Any]:
    """The WasmWorkload once `predicate` holds for it."""
    body = await kube_api.wait_for(keys.API_VERSION, keys.WORKLOAD_KIND, NS, name,
                                   lambda b: b is not None and predicate(b), timeout=timeout)
    assert body is not None
    return body


async def events_of(api: KubeClient, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the workload's Events, found as `kubectl describe ww` finds them."""
    body = await api.get(WASM_WORKLOADS, name, NS)
    selector = (f"involvedObject.name={name},involvedObject.namespace={NS},"
                f"involvedObject.kind={keys.WORKLOAD_KIND},involvedObject.uid={body['metadata']['uid']}")
    listing = await api.list(EVENTS, NS, field_selector=selector)
    return [(e["type"], e["reason"], e["message"]) for e in listing["items"]]


def operator_requests(kube_api: KubeAPI, since: int = 0) -> list[Any]:
    """The requests the operator's own client sent (kopf's have another User-Agent), from index `since`."""
    return [r for r in list(kube_api.server)[since:] if r.headers.get("User-Agent") == OPERATOR_AGENT]


def operator_writes(kube_api: KubeAPI, since: int = 0) -> list[str]:
    """`VERB path` of every write the operator sent, from request index `since`."""
    return [f"{r.method.value} {r.url.path}" for r in operator_requests(kube_api, since) if r.method.value in WRITES]


async def http_get(url: str) -> tuple[int, bytes]:
    """A plain HTTP GET (status, body), for the operator's liveness and metrics endpoints."""
    host, _, rest = url.removeprefix("http://").partition("/")
    hostname, _, port = host.partition(":")
    reader, writer = await asyncio.open_connection(hostname, int(port))
    writer.write(f"GET /{rest} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def health(url: str) -> dict[str, Any] | None:
    """The operator's liveness report (kopf's probe results), or None while it does not answer."""
    try:
        status, body = await http_get(url)
    except OSError:
        return None
    return dict(json.loads(body)) if status == 200 else None
