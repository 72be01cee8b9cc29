"""Run the real agent in-process against the test API, and wait for what it reports."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from wasmlet.kube import KubeClient, NotFound, load_config
from wasmlet.kube.resources import CONFIGMAPS, EVENTS, PODS, Resource
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.logs import pod_log_dir, read_lines

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"


def module_bytes(name: str) -> bytes:
    return (MODULES / f"{name}.wasm").read_bytes()


@contextlib.asynccontextmanager
async def running_agent(api: Any, state_dir: Path, node_name: str = "wasm-node-1",
                        **overrides: Any) -> AsyncIterator[Agent]:
    """An agent registered as `node_name`; stopped gracefully (Pods, then the Node) on exit.

    `api` is the `kube_api` fixture or a kubeconfig path/URL. The agent trusts the kubeconfig's
    cluster CA for client certificates by default, so `kubectl logs` through the test API works.
    """
    kubeconfig = getattr(api, "kubeconfig", api)
    overrides.setdefault("node_ip", "127.0.0.1")
    overrides.setdefault("restart_backoff_seconds", 0.2)  # the kubelet's 10 s would only slow the tests
    overrides.setdefault("kubeconfig", str(kubeconfig))  # None with bootstrap_kubeconfig: the agent writes one
    settings = AgentSettings(node_name=node_name, kubelet_port=0, state_dir=state_dir, lease_renew_seconds=1.0,
                             **overrides).validate()
    agent = Agent(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def api_client(kubeconfig: str) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_config(kubeconfig)) as api:
        yield api


async def put_module_configmap(api: KubeClient, namespace: str, name: str, modules: dict[str, bytes]) -> None:
    await api.create(CONFIGMAPS, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
        "binaryData": {key: base64.b64encode(data).decode() for key, data in modules.items()},
    })


def log_lines(agent: Agent, pod: dict[str, Any], container: str = "main", run: int = 0) -> list[tuple[str, str]]:
    """(stream, text) of each line in the log of the container's `run` (its restartCount then), as
    `kubectl logs` serves it. The agent keeps the current and the previous run's logs only."""
    meta = pod["metadata"]
    root = pod_log_dir(agent.settings.state_dir / "logs", meta["namespace"], meta["name"], meta["uid"])
    return [(stream, text) for _, stream, text in read_lines(root / container / f"{run}.log")]


def wasm_pod(name: str, node: str, image: str, restart: str = "Never", runtime: str = "wasmer",
             **spec: Any) -> dict[str, Any]:
    """A Pod bound to `node` that runs `image` with `runtime` (its runtimeClassName)."""
    container = {"name": "main", "image": image}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", **spec.pop("metadata", {})},
        "spec": {"nodeName": node, "runtimeClassName": runtime, "restartPolicy": restart,
                 "tolerations": [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "wasm32-wasi",
                                  "effect": "NoExecute"},
                                 {"key": "kubernetes.io/arch", "operator": "Equal", "value": "wasm32-wasi",
                                  "effect": "NoSchedule"}],
                 "containers": [container], **spec},
    }


async def wait_for(api: KubeClient, resource: Resource, name: str, namespace: str | None,
                   predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
    """Poll until the object satisfies `predicate`; on timeout, fail showing the last version seen."""
    last: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(NotFound):
                    last = await api.get(resource, name, namespace)
                    if predicate(last):
                        return last
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{resource.plural}/{name} never matched; last seen: {last}") from None


async def wait_for_events(api: KubeClient, pod: str, *expected: tuple[str, str | None], namespace: str = "default",
                          timeout: float = 20.0) -> list[tuple[str, str]]:
    """Poll until every expected (reason, message) Event about `pod` is there and return all of them;
    a message of None matches any message.

    The agent posts Events in the background, after the status that a test usually waits for, so
    they are waited for too, never read once."""
    seen: list[tuple[str, str]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                listing = await api.list(EVENTS, namespace, field_selector=f"involvedObject.name={pod}")
                seen = [(e["reason"], e["message"]) for e in listing["items"]]
                if all(any(reason == r and message in (None, m) for r, m in seen) for reason, message in expected):
                    return seen
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"events {expected} about {pod} never posted; seen: {seen}") from None


async def wait_gone(api: KubeClient, name: str, namespace: str = "default", timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await api.get(PODS, name, namespace)
            except NotFound:
                return
            await asyncio.sleep(0.05)


def agent_requests(kube_api: Any, since: int = 0, node_name: str = "wasm-node-1") -> list[Any]:
    """The requests the agent of `node_name` sent to the test API, from request index `since`."""
    agent = f"wasmlet-agent/{node_name}"
    return [r for r in list(kube_api.server)[since:] if r.headers.get("User-Agent") == agent]


def verb_and_resource(request: Any) -> tuple[str, str]:
    """How kube-apiserver's `apiserver_request_total` labels a request: (verb, resource[/subresource])."""
    resource = request.resource.plural if request.resource is not None else "?"
    if request.subresource:
        resource = f"{resource}/{request.subresource}"
    verb = request.method.value.upper()
    if verb == "GET":
        verb = "WATCH" if request.params.get("watch") in ("true", "1") else "GET" if request.name else "LIST"
    return verb, resource


def about_pod(request: Any, name: str) -> bool:
    """Whether a request is about the Pod `name`: on the Pod itself, or an Event about it."""
    if request.resource is not None and request.resource.plural == "pods":
        return bool(request.name == name)
    if request.resource is not None and request.resource.plural == "events" and request.name:
        return bool(request.name.startswith(f"{name}."))  # a count patched onto an Event about it
    involved = (request.data or {}).get("involvedObject") if isinstance(request.data, dict) else None
    return bool(involved and involved.get("kind") == "Pod" and involved.get("name") == name)


def container_state(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[index].get("state") or {}


def node_address() -> str:
    """This machine's primary IPv4 address (a route lookup, nothing is sent), else loopback.

    A real cluster refuses loopback addresses in EndpointSlices, so tests of Services need the
    agent on a routable node IP, as on a real node."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # any destination with a route will do
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
