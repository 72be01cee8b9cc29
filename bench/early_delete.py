"""Pods deleted with grace 0 before they started: what each costs the API server (the agent's requests).

`--pods` Pods whose module comes from an HTTP server in the bench that never answers, so each
stays in its pull; each is deleted with grace 0 `--after` seconds after it was created; then the
agent's API requests (its own count, by verb and resource) are read once it has had time to
post whatever it would. A kubelet makes at most one request for such a Pod. The API server is
the test API, or a real one with `--kubeconfig` (default: `$WASMLET_E2E_KUBECONFIG`).
Usage: python bench/early_delete.py [--pods 50] [--after 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import common  # noqa: F401  - first: it sets up sys.path

from aiohttp import web
from cluster import AgentRun, Cluster, add_arguments, delta, each_run, format_requests, median_requests, per_pod, pod

from wasmlet.api.keys import sha256_annotation
from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import module_bytes


class Stalled:
    """An HTTP server whose module download never completes (until the bench ends)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.runner = web.AppRunner(web.Application())

    async def handle(self, request: web.Request) -> web.Response:
        await self.release.wait()
        raise web.HTTPServiceUnavailable()

    async def __aenter__(self) -> str:
        self.runner.app.router.add_get("/stalled.wasm", self.handle)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/stalled.wasm"

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()


async def one_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    node = f"apieff-node-{uuid.uuid4().hex[:6]}"
    sha = hashlib.sha256(module_bytes("hello")).hexdigest()  # a pin the download will never reach
    async with Cluster(args.kubeconfig, workdir, runtime=args.runtime).up(("hello",)) as cluster, Stalled() as url, \
            AgentRun(cluster, node, args.runtime) as agent:
        before = await agent.requests()

        async def early(name: str) -> None:
            body = pod(name, cluster.namespace, node, "hello", "Never", runtime=cluster.runtime)
            body["spec"]["containers"][0]["image"] = url
            body["metadata"]["annotations"] = {sha256_annotation("main"): sha}
            await cluster.api.create(PODS, body)
            await asyncio.sleep(args.after)
            await cluster.api.delete(PODS, name, cluster.namespace, grace_period_seconds=0)

        await asyncio.gather(*(early(f"early-{i}") for i in range(args.pods)))
        await asyncio.sleep(3)  # whatever the agent would still post (its events wait at most 0.25 s)
        counts = delta(await agent.requests(), before)
    return {"requests": per_pod(counts, args.pods)}


def report(run: int, result: dict[str, Any]) -> None:
    print(f"run {run}: agent requests per Pod deleted before it started: {format_requests(result['requests'])}",
          flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--after", type=float, default=0.5, help="seconds from a Pod's creation to its deletion")
    add_arguments(parser)
    args = parser.parse_args()
    results = await each_run(args, "early-delete", one_run, report)
    print(f"median over {args.runs} runs of {args.pods} Pods: "
          f"{median_requests(results):.2f} agent requests per Pod")


if __name__ == "__main__":
    asyncio.run(main())
