"""What a Pod costs the API server: the agent's requests per Pod, by verb and resource, counted on
the test API (as kube-apiserver's `apiserver_request_total` counts them on a real one).

A kubelet-like budget: a run-to-completion Pod (start → end → deletion, events included) takes at
most 6 requests — two status writes, three Events, one DELETE — and no read of the ConfigMap its
module comes from (a watch serves it); a Pod deleted with grace 0 before it started takes at most
one; nothing is written for a Pod the agent knows is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import PODS
from wasmlet.nodeagent.agent import Agent

from tests.integration.agent_helpers import (
    about_pod,
    agent_requests,
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    verb_and_resource,
    wait_for,
    wait_gone,
    wasm_pod,
)

NODE = "wasm-node-1"


async def idle(agent: Agent) -> None:
    """Wait until the agent has sent every status and Event it had to send."""
    assert agent.controller is not None
    await asyncio.wait_for(agent.controller.env.reporter.inner.idle(), 20)  # type: ignore[attr-defined]


def per_pod(requests: list[Any], name: str) -> Counter[tuple[str, str]]:
    return Counter(verb_and_resource(r) for r in requests if about_pod(r, name))


async def run_to_completion(api: KubeClient, name: str, **spec: Any) -> None:
    """Create a `hello` Pod, wait until it Succeeded, delete it as `kubectl delete` does, wait until gone."""
    await api.create(PODS, wasm_pod(name, NODE, "configmap://modules/hello.wasm", **spec))
    await wait_for(api, PODS, name, "default", lambda p: (p.get("status") or {}).get("phase") == "Succeeded")
    await api.delete(PODS, name, "default")
    await wait_gone(api, name)


async def test_a_run_to_completion_pod_costs_at_most_six_requests_and_no_configmap_read(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {"hello.wasm": module_bytes("hello")})
        await run_to_completion(api, "warm-up")  # the module is stored, its ConfigMap watched
        await idle(agent)
        since = len(list(kube_api.server))
        names = [f"job-{i}" for i in range(4)]
        for name in names:
            await run_to_completion(api, name)
        await idle(agent)
        requests = agent_requests(kube_api, since, NODE)

        for name in names:
            counts = per_pod(requests, name)
            assert sum(counts.values()) <= 6, (name, counts)
            assert counts[("PATCH", "pods/status")] <= 2, (name, counts)
            assert counts[("POST", "events")] == 3, (name, counts)  # Pulled (already present), Created, Started
            assert counts[("DELETE", "pods")] <= 1, (name, counts)  # none when the API deleted it at once (ended)
        objects = [verb_and_resource(r) for r in requests if verb_and_resource(r)[1] in ("configmaps", "secrets")]
        assert objects == []  # the module's ConfigMap comes from the watch started by the first Pod


class SlowModule:
    """An HTTP server for one module that answers only when released: a Pod stays in its pull."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.set()
        await self.release.wait()
        return web.Response(body=self.body)


async def test_a_pod_deleted_with_grace_zero_before_it_started_costs_at_most_one_request(
        kube_api: Any, tmp_path: Path) -> None:
    body = module_bytes("hello")
    slow = SlowModule(body)
    app = web.Application()
    app.router.add_get("/hello.wasm", slow.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
            since = len(list(kube_api.server))
            sha = hashlib.sha256(body).hexdigest()
            await api.create(PODS, wasm_pod("early", NODE, f"http://127.0.0.1:{port}/hello.wasm",
                                            metadata={"annotations": {"wasmlet.dev/sha256.main": sha}}))
            await asyncio.wait_for(slow.asked.wait(), 20)
            await api.delete(PODS, "early", "default", grace_period_seconds=0)
            await wait_gone(api, "early")
            assert agent.controller is not None
            async with asyncio.timeout(20):  # the Pod's worker ends although its download still hangs
                while agent.controller.find("default", "early") is not None:
                    await asyncio.sleep(0.01)
            assert not slow.release.is_set()
            slow.release.set()
            await idle(agent)
            counts = per_pod(agent_requests(kube_api, since, NODE), "early")
            assert sum(counts.values()) <= 1, counts
            assert counts[("PATCH", "pods/status")] == 0 and counts[("DELETE", "pods")] == 0, counts
    finally:
        slow.release.set()
        await runner.cleanup()


async def test_a_running_pod_force_deleted_gets_no_write_after_its_deletion(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker")})
        await api.create(PODS, wasm_pod("service", NODE, "configmap://modules/ticker.wasm", restart="Always",
                                        container={"args": ["--interval-ms", "100"]}))
        await wait_for(api, PODS, "service", "default", lambda p: (p.get("status") or {}).get("phase") == "Running")
        await idle(agent)
        since = len(list(kube_api.server))
        await api.delete(PODS, "service", "default", grace_period_seconds=0)
        assert agent.controller is not None
        async with asyncio.timeout(20):
            while agent.controller.find("default", "service") is not None:
                await asyncio.sleep(0.01)
        await idle(agent)
        counts = per_pod(agent_requests(kube_api, since, NODE), "service")
        assert counts == Counter(), counts  # no status that would 404, no DELETE, no Killing event


async def test_a_crash_loop_makes_one_backoff_event_whose_count_grows(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {"trap.wasm": module_bytes("trap")})
        since = len(list(kube_api.server))
        await api.create(PODS, wasm_pod("crashing", NODE, "configmap://modules/trap.wasm", restart="Always"))
        await wait_for(api, PODS, "crashing", "default",
                       lambda p: any(c.get("restartCount", 0) >= 4 for c in (p.get("status") or {}).get(
                           "containerStatuses") or []), timeout=60)
        await idle(agent)
        requests = [r for r in agent_requests(kube_api, since, NODE) if about_pod(r, "crashing")]
        backoffs = [r for r in requests if r.method.value.upper() == "POST" and (r.data or {}).get("reason") == "BackOff"]
        assert len(backoffs) == 1
        patched = [r for r in requests if verb_and_resource(r) == ("PATCH", "events")]
        assert len(patched) >= 3  # each later BackOff (and Created, Started) counts onto its first Event
        listing = kube_api.list("v1", "Event", "default")
        counts = {e["reason"]: e.get("count") for e in listing if e["involvedObject"]["name"] == "crashing"}
        assert counts["BackOff"] >= 2
