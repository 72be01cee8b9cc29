"""Run-to-completion churn: Pods created at a steady rate, each deleted as soon as it Succeeded;
how many Pods a second a node gets through, wasmlet beside the floor (bench/cluster.py), and what
each Pod costs the API server (start → end → deletion, events included), by verb and resource.

Each run: `--pods` `hello` Pods (module from a ConfigMap, warm cache) at `--rate` per second on
the floor's node, then the same on a `wasmlet-agent`'s; throughput = Pods / (last `Succeeded`
seen − first create). The API server is the test API in this process, or a real one with
`--kubeconfig` (default: `$WASMLET_E2E_KUBECONFIG`).
Usage: python bench/churn.py [--pods 300] [--rate 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from common import median  # first: it sets up sys.path

from cluster import (
    AgentRun,
    Cluster,
    FloorAgent,
    PodEnded,
    PodWatch,
    add_arguments,
    delta,
    each_run,
    format_requests,
    median_requests,
    per_pod,
    pod,
)

from wasmlet.kube import ApiError
from wasmlet.kube.resources import PODS


class Deleter:
    """Deletes each Pod as it is seen Succeeded, or Failed (as a Job controller or a user would)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, name: str) -> None:
        task = asyncio.create_task(self._delete(name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _delete(self, name: str) -> None:
        try:
            await self.cluster.api.delete(PODS, name, self.cluster.namespace)
        except ApiError:
            pass


async def churn(cluster: Cluster, watch: PodWatch, node: str, prefix: str, pods: int,
                rate: float) -> tuple[float, list[str]]:
    """Pods a second that Succeeded: `pods` created at `rate`, until the last has ended; and why
    the others did not (a node refuses Pods past its `maxPods` as the kubelet does: `OutOfpods`)."""
    names = [f"{prefix}-{i}" for i in range(pods)]
    began = time.perf_counter()
    creating = []
    for i, name in enumerate(names):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        creating.append(asyncio.create_task(cluster.api.create(
            PODS, pod(name, cluster.namespace, node, "hello", "Never", referenced=cluster.node_identity,
                     runtime=cluster.runtime))))
    await asyncio.gather(*creating)
    ended = await asyncio.gather(*(watch.wait(name, timeout=300) for name in names), return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException) and not isinstance(outcome, PodEnded):
            raise outcome
    times = [t for t in ended if isinstance(t, float)]
    return len(times) / (max(times) - began) if times else 0.0, [str(e) for e in ended if isinstance(e, PodEnded)]


async def gone(cluster: Cluster, prefix: str) -> None:
    async with asyncio.timeout(120):
        while any(p["metadata"]["name"].startswith(prefix)
                  for p in (await cluster.api.list(PODS, cluster.namespace))["items"]):
            await asyncio.sleep(0.2)


async def one_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    async with Cluster(args.kubeconfig, workdir, runtime=args.runtime).up(("hello",)) as cluster:
        deleter = Deleter(cluster)
        async with PodWatch(cluster, "Succeeded", on_phase=deleter) as watch:
            floor_node, node = f"apieff-floor-{tag}", f"apieff-node-{tag}"
            async with FloorAgent(cluster, floor_node) as floor_agent:
                floor, _ = await churn(cluster, watch, floor_node, "floor", args.pods, args.rate)
                await gone(cluster, "floor")
            async with AgentRun(cluster, node, args.runtime) as agent:
                await churn(cluster, watch, node, "warm-up", 1, 1.0)  # the module is stored, its ConfigMap watched
                await gone(cluster, "warm-up")
                await asyncio.sleep(1)
                before, server_before = await agent.requests(), await cluster.server_requests()
                ours, refused = await churn(cluster, watch, node, "wasmlet", args.pods, args.rate)
                await gone(cluster, "wasmlet")
                await asyncio.sleep(2)  # the agent's last events
                counts = delta(await agent.requests(), before)
                server = delta(await cluster.server_requests(), server_before)
    return {"floor": floor, "wasmlet": ours, "refused": refused, "floor_requests": per_pod(floor_agent.requests, args.pods),
            "requests": per_pod(counts, args.pods), "server_requests": per_pod(server, args.pods)}


def report(run: int, result: dict[str, Any]) -> None:
    print(f"run {run}: wasmlet {result['wasmlet']:.0f} Pods/s, floor {result['floor']:.0f} Pods/s, "
          f"{100 * result['wasmlet'] / result['floor']:.0f}% of the floor", flush=True)
    if result["refused"]:
        print(f"run {run}: {len(result['refused'])} of the Pods did not succeed, so this run misses; "
              f"the first: {result['refused'][0][:300]}", flush=True)
    print(f"run {run}: agent requests per Pod: {format_requests(result['requests'])}; "
          f"floor: {format_requests(result['floor_requests'])}", flush=True)
    if result["server_requests"]:
        print(f"run {run}: apiserver_request_total per Pod (every client, the bench's own create and "
              f"delete too): {format_requests(result['server_requests'])}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0, help="Pods created per second")
    add_arguments(parser)
    args = parser.parse_args()
    results = await each_run(args, "churn", one_run, report)
    print(f"median over {args.runs} runs of {args.pods} Pods at {args.rate:g}/s: "
          f"wasmlet {median([r['wasmlet'] for r in results]):.0f} Pods/s, "
          f"floor {median([r['floor'] for r in results]):.0f} Pods/s, "
          f"{median([100 * r['wasmlet'] / r['floor'] for r in results]):.0f}% of the floor; "
          f"agent requests per Pod {median_requests(results):.2f}; "
          f"runs in which Pods did not succeed: {sum(1 for r in results if r['refused'])}")


if __name__ == "__main__":
    asyncio.run(main())
