"""Where the Pod benchmarks run, and the floor they are measured against.

- `Cluster`: the test Kubernetes API in this process (default), or a real API server when a
  kubeconfig is given (`--kubeconfig`, else `WASMLET_E2E_KUBECONFIG`): its own namespace there,
  removed afterwards.
- `FloorAgent`: an ideal node agent in the bench process. It watches the Pods bound to its node
  and writes each one's final status (`Running`, or `Succeeded` for run-to-completion Pods) the
  moment it appears — one request per Pod, no runtime. What wasmlet takes beyond it is the cost
  of really running the Pod and of everything a kubelet says about it.
- `AgentRun`: a `wasmlet-agent` process on its own node, with its /metrics readable, so the
  bench counts the agent's requests by verb and resource (`wasmlet_agent_api_requests_total`,
  exact even on a shared server); on a real server `apiserver_request_total` is read too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from common import agent_process, machine, median  # first: it sets up sys.path

import aiohttp
import yaml

from wasmlet.kube import AlreadyExists, ApiError, KubeClient, NotFound, load_config
from wasmlet.kube.resources import CONFIGMAPS, NAMESPACES, NODES, PODS, RUNTIME_CLASSES

from tests.fixtures.kubeapi import running_kube_api
from tests.integration.agent_helpers import module_bytes
from tests.integration.faults import free_port

Obj = dict[str, Any]
MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
TOLERATIONS = [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "wasm32-wasi", "effect": effect}
               for effect in ("NoExecute", "NoSchedule")]
COUNTED = ("pods", "pods/status", "events", "configmaps", "secrets")  # what a Pod costs; not Node/Lease upkeep


def pod(name: str, namespace: str, node: str, module: str, restart: str, args: list[str] | None = None,
        *, referenced: bool = False, runtime: str = "wasmer") -> Obj:
    """A Pod running `module` from the `modules` ConfigMap on RuntimeClass `runtime`. `referenced`:
    the Pod also mounts that ConfigMap, which is what lets a node identity read it under the Node
    authorizer (a `configmap://` image is no reference the authorizer knows)."""
    spec: Obj = {"nodeName": node, "restartPolicy": restart, "automountServiceAccountToken": False,
                 "runtimeClassName": runtime,
                 "terminationGracePeriodSeconds": 0, "tolerations": TOLERATIONS,
                 "containers": [{"name": "main", "image": f"configmap://modules/{module}.wasm", "args": args or []}]}
    if referenced:
        spec["volumes"] = [{"name": "modules", "configMap": {"name": "modules", "items": [
            {"key": f"{module}.wasm", "path": f"{module}.wasm"}]}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class Cluster:
    """An API to run Pods on: `kubeconfig` (a real server) or the test API; `api` is the bench's client."""

    def __init__(self, kubeconfig: str | None, workdir: Path, node_identity: bool | None = None,
                 runtime: str = "wasmer") -> None:
        self.kubeconfig = kubeconfig
        self.runtime = runtime  # the RuntimeClass of the bench's Pods
        self.workdir = workdir
        self.real = kubeconfig is not None
        # The agent as the node it is (Node authorizer) on a real server, unless told otherwise.
        self.node_identity = self.real if node_identity is None else node_identity and self.real
        self.namespace = f"apieff-bench-{uuid.uuid4().hex[:6]}" if self.real else "default"
        self.api: KubeClient

    @contextlib.asynccontextmanager
    async def up(self, modules: tuple[str, ...]) -> AsyncIterator[Cluster]:
        async with contextlib.AsyncExitStack() as stack:
            if self.kubeconfig is None:
                kube = await stack.enter_async_context(running_kube_api(self.workdir))
                self.kubeconfig = str(kube.kubeconfig)
            self.api = await stack.enter_async_context(KubeClient(load_config(self.kubeconfig), user_agent="bench"))
            if self.real:
                await self.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": self.namespace}})
                stack.push_async_callback(self._remove_namespace)
                await self._wait_service_account()
            for path in sorted(MANIFESTS.glob("*runtimeclasses.yaml")):  # as `kubectl apply -f manifests/` does
                for runtime_class in yaml.safe_load_all(path.read_text()):
                    with contextlib.suppress(AlreadyExists):
                        await self.api.create(RUNTIME_CLASSES, runtime_class)
            await self.api.create(CONFIGMAPS, {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "modules", "namespace": self.namespace},
                "binaryData": {f"{m}.wasm": base64.b64encode(module_bytes(m)).decode() for m in modules}})
            yield self

    async def _wait_service_account(self) -> None:
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(NotFound):
                    await self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default")
                    return
                await asyncio.sleep(0.2)

    async def _remove_namespace(self) -> None:
        with contextlib.suppress(ApiError):
            await self.api.delete(NAMESPACES, self.namespace)

    async def node_kubeconfig(self, node: str) -> str:
        """A kubeconfig for the agent: the node's own identity (Node authorizer, NodeRestriction),
        minted by `$BENCH_NODE_KUBECONFIG_SCRIPT NODE OUT`, else the bench's own."""
        script = os.environ.get("BENCH_NODE_KUBECONFIG_SCRIPT", "")
        if not self.node_identity or not Path(script).is_file():
            assert self.kubeconfig is not None
            return self.kubeconfig
        out = self.workdir / f"{node}.kubeconfig"
        process = await asyncio.create_subprocess_exec("bash", script, node, str(out))
        if await process.wait() != 0:
            raise RuntimeError(f"{script} failed")
        return str(out)

    async def server_requests(self) -> Counter[tuple[str, str]]:
        """kube-apiserver's `apiserver_request_total` by (verb, resource[/subresource]); empty on the test API."""
        if not self.real:
            return Counter()
        text = await self._metrics_text()
        counts: Counter[tuple[str, str]] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            counts[(labels.get("verb", ""), resource)] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    async def _metrics_text(self) -> str:
        return (await self.api.get_text("/metrics"))[1]

    async def remove_node(self, node: str) -> None:
        with contextlib.suppress(ApiError):
            await self.api.delete(NODES, node)


class PodEnded(Exception):
    """The Pod ended (Failed, or Succeeded) without reaching the phase waited for."""


class PodWatch:
    """Records, through one watch on the namespace, when each Pod first reached `phase`; runs
    `on_phase` for it then (the bench deletes run-to-completion Pods as they end), and for a Pod
    that ended without reaching it, whose waiter then fails at once with `PodEnded`."""

    def __init__(self, cluster: Cluster, phase: str, on_phase: Callable[[str], Any] | None = None) -> None:
        self.cluster = cluster
        self.phase = phase
        self.on_phase = on_phase
        self.seen: dict[str, float] = {}
        self.ended: dict[str, str] = {}  # Pods that ended without reaching `phase`: why
        self._waiters: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        listing = await self.cluster.api.list(PODS, self.cluster.namespace)
        version = listing["metadata"].get("resourceVersion")
        self.ready.set()
        while True:
            with contextlib.suppress(ApiError):
                async for event in self.cluster.api.watch(PODS, self.cluster.namespace, resource_version=version,
                                                          timeout_seconds=600, bookmarks=False):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    name = obj["metadata"]["name"]
                    status = obj.get("status") or {}
                    phase = status.get("phase")
                    if phase == self.phase and name not in self.seen:
                        self.seen[name] = time.perf_counter()
                    elif phase in ("Failed", "Succeeded") and name not in self.seen and name not in self.ended:
                        self.ended[name] = f"{phase} {status.get('reason', '')}: {status.get('message', '')}"
                    else:
                        continue
                    self._waiters.setdefault(name, asyncio.Event()).set()
                    if self.on_phase is not None:
                        self.on_phase(name)

    async def wait(self, name: str, timeout: float = 120) -> float:
        try:
            await asyncio.wait_for(self._waiters.setdefault(name, asyncio.Event()).wait(), timeout)
        except TimeoutError:
            try:
                status = (await self.cluster.api.get(PODS, name, self.cluster.namespace)).get("status") or {}
            except ApiError as exc:
                status = {"error": str(exc)}
            raise TimeoutError(f"Pod {name} not seen {self.phase} within {timeout:g}s; its status now: "
                               f"{json.dumps(status)[:2000]}") from None
        if name not in self.seen:
            raise PodEnded(f"Pod {name}: {self.ended[name]}")
        return self.seen[name]

    async def __aenter__(self) -> PodWatch:
        self._task = await start_ready(self._run(), self.ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await stop(self._task)


class FloorAgent:
    """The ideal agent: writes each of its Pods' final status the moment the Pod appears."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.requests: Counter[tuple[str, str]] = Counter()
        self._done: set[str] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._api: KubeClient | None = None
        self.ready = asyncio.Event()

    def _count(self, verb: str, resource: str, code: str) -> None:
        self.requests[(verb, resource)] += 1

    async def _run(self) -> None:
        assert self.cluster.kubeconfig is not None
        async with KubeClient(load_config(self.cluster.kubeconfig), user_agent="floor", on_request=self._count) as api:
            self._api = api
            version = (await api.list(PODS, self.cluster.namespace, field_selector=f"spec.nodeName={self.node}")
                       )["metadata"].get("resourceVersion")
            self.ready.set()
            try:
                async for event in api.watch(PODS, self.cluster.namespace, resource_version=version,
                                             timeout_seconds=600, field_selector=f"spec.nodeName={self.node}",
                                             bookmarks=False):
                    obj = event["object"]
                    meta = obj["metadata"]
                    if event["type"] == "ADDED" and meta["uid"] not in self._done:
                        self._done.add(meta["uid"])
                        task = asyncio.create_task(self._finish(api, obj))
                        self._writes.add(task)
                        task.add_done_callback(self._writes.discard)
            finally:  # writes still retrying when the floor stops would outlive their client
                for task in list(self._writes):
                    task.cancel()
                await asyncio.gather(*self._writes, return_exceptions=True)

    async def _finish(self, api: KubeClient, obj: Obj) -> None:
        meta = obj["metadata"]
        ends = obj["spec"].get("restartPolicy") != "Always"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp}} \
            if ends else {"running": {"startedAt": stamp}}
        status = {"phase": "Succeeded" if ends else "Running", "startTime": stamp,
                  "containerStatuses": [{"name": "main", "image": obj["spec"]["containers"][0]["image"], "imageID": "",
                                         "ready": not ends, "restartCount": 0, "started": not ends, "state": state}]}
        for attempt in range(5):  # an ideal agent, not a careless one: a failed write is tried again
            try:
                await api.patch(PODS, meta["name"], {"metadata": {"uid": meta["uid"]}, "status": status},
                                meta["namespace"], subresource="status")
                return
            except NotFound:
                return
            except ApiError as exc:
                print(f"floor: status of {meta['name']} not written ({exc}); trying again", flush=True)
                await asyncio.sleep(0.1 * (attempt + 1))

    async def __aenter__(self) -> FloorAgent:
        await self.cluster.api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}})
        self._task = await start_ready(self._run(), self.ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await stop(self._task)
        await self.cluster.remove_node(self.node)


class AgentRun:
    """A `wasmlet-agent` process registered as `node`, until the block ends (then its Node is removed)."""

    def __init__(self, cluster: Cluster, node: str, runtime: str = "wasmer") -> None:
        self.cluster = cluster
        self.node = node
        self.runtime = runtime
        self.port = free_port()
        self._stack = contextlib.AsyncExitStack()
        self._state = Path(tempfile.mkdtemp(prefix="wasmlet-bench-agent-", dir=cluster.workdir))

    async def _metrics(self) -> str:
        async with aiohttp.ClientSession() as session, \
                session.get(f"https://127.0.0.1:{self.port}/metrics", ssl=False) as response:
            return await response.text()

    async def start_steps(self) -> dict[str, tuple[float, float]]:
        """The agent's start path so far, step by step: {step: (seconds in all, count)} — from the
        Pod's first status to `Running` handed in ("run"), to it written ("report"), and the
        runtime's start request to a running instance ("instance")."""
        text = await self._metrics()
        found: dict[str, list[float]] = {}
        for line in text.splitlines():
            match = re.match(r'(wasmlet_pod_start_step_seconds|wasmlet_container_start_seconds)_(sum|count)'
                             r'\{(?:step|runtime)="([^"]+)"\} (\S+)$', line)
            if match:
                name = "instance" if match[1] == "wasmlet_container_start_seconds" else match[3]
                found.setdefault(name, [0.0, 0.0])[0 if match[2] == "sum" else 1] += float(match[4])
        return {step: (values[0], values[1]) for step, values in found.items()}

    async def requests(self) -> Counter[tuple[str, str]]:
        """The agent's own count of its API requests, by (verb, resource)."""
        text = await self._metrics()
        counts: Counter[tuple[str, str]] = Counter()
        for line in text.splitlines():
            if line.startswith("wasmlet_agent_api_requests_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                counts[(labels["verb"], labels["resource"])] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    async def __aenter__(self) -> AgentRun:
        kubeconfig = await self.cluster.node_kubeconfig(self.node)
        args = ["--kubeconfig", kubeconfig, "--node-name", self.node, "--node-ip", "127.0.0.1",
                "--kubelet-port", str(self.port), "--kubelet-api-auth", "none", "--state-dir", str(self._state),
                "--runtimes", self.runtime]
        # Another tree's agent beside this bench (a before/after comparison): its PYTHONPATH.
        other = os.environ.get("BENCH_AGENT_PYTHONPATH")
        await self._stack.enter_async_context(agent_process(*args, env={"PYTHONPATH": other} if other else None))
        async with asyncio.timeout(60):
            while not await self._ready():
                await asyncio.sleep(0.05)
        return self

    async def _ready(self) -> bool:
        try:
            node = await self.cluster.api.get(NODES, self.node)
        except ApiError:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in (node.get("status") or {}).get("conditions", []))

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        await self.cluster.remove_node(self.node)


async def start_ready(work: Coroutine[Any, Any, None], ready: asyncio.Event) -> asyncio.Task[None]:
    """Run `work` in a task; return it once `ready` is set (its list done, its watch begun)."""
    task = asyncio.create_task(work)
    await asyncio.wait_for(ready.wait(), 30)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every Pod benchmark shares: how many runs, which runtime, which API server."""
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtime", default="wasmer")
    parser.add_argument("--kubeconfig", default=os.environ.get("WASMLET_E2E_KUBECONFIG"),
                        help="a real API server (default: $WASMLET_E2E_KUBECONFIG; else the test API)")


async def each_run(args: argparse.Namespace, name: str, one_run: Callable[[argparse.Namespace, Path], Awaitable[Obj]],
                   report: Callable[[int, Obj], None]) -> list[Obj]:
    """`args.runs` runs, each in a fresh working directory, each reported as it ends; then the
    machine and the API server they ran on."""
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix=f"wasmlet-{name}-") as workdir:
            result = await one_run(args, Path(workdir))
        report(run + 1, result)
        results.append(result)
    print(f"\nmachine: {machine()}; API server: {'real, ' + args.kubeconfig if args.kubeconfig else 'the test API'}")
    return results


def format_requests(counts: dict[str, float]) -> str:
    """Requests per Pod: the sum, then each `VERB resource`."""
    return f"{sum(counts.values()):.2f} (" + ", ".join(f"{k} {v:.2f}" for k, v in counts.items()) + ")"


def median_requests(results: list[Obj]) -> float:
    """The median over runs of the agent's requests per Pod."""
    return median([sum(r["requests"].values()) for r in results])


def per_pod(counts: Counter[tuple[str, str]], pods: int) -> dict[str, float]:
    """Requests per Pod by `VERB resource`, for the resources a Pod costs (not the Node's upkeep)."""
    return {f"{verb} {resource}": n / pods for (verb, resource), n in sorted(counts.items())
            if resource in COUNTED and n}


def delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: after[key] - before[key] for key in after if after[key] - before[key] > 0})
