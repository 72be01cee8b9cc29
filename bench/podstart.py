"""Pod start latency: a Pod bound to a node → `Running` seen through a watch, wasmlet beside the floor.

Each run measures, in one API server, an ideal agent (the floor, bench/cluster.py: it writes
`Running` the moment a Pod appears) and a `wasmlet-agent` process on a node of its own, each:
- one at a time: a Pod every `--interval` seconds (default 0.3), latency create → Running;
- a burst: `--burst` Pods created at `--rate` per second (default 100 at 100/s), latency of each;
and reports wasmlet / floor for the p50s, the agent's start path step by step (its first status
→ Running handed in, → written; the runtime's start), and the agent's API requests per Pod by verb and
resource (its own count; on a real server `apiserver_request_total` is shown too, which counts
every client of a shared server). Warm module cache (one warm-up Pod first), module `ticker`
from a ConfigMap.

The API server is the test API in this process, or a real one with `--kubeconfig` (default:
`$WASMLET_E2E_KUBECONFIG`). Usage: python bench/podstart.py [--pods 50] [--burst 100] [--rate 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from common import median, percentile  # first: it sets up sys.path

from cluster import (
    AgentRun,
    Cluster,
    FloorAgent,
    PodWatch,
    add_arguments,
    delta,
    each_run,
    format_requests,
    median_requests,
    per_pod,
    pod,
)

from wasmlet.kube.resources import PODS


def ticker(cluster: Cluster, name: str, node: str) -> dict[str, Any]:
    return pod(name, cluster.namespace, node, "ticker", "Always", ["--interval-ms", "60000"],
               referenced=cluster.node_identity, runtime=cluster.runtime)


async def one_at_a_time(cluster: Cluster, watch: PodWatch, node: str, prefix: str, pods: int,
                        interval: float) -> list[float]:
    latencies = []
    for i in range(pods):
        name = f"{prefix}-seq-{i}"
        began = time.perf_counter()
        await cluster.api.create(PODS, ticker(cluster, name, node))
        latencies.append(await watch.wait(name) - began)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
    return latencies


async def burst(cluster: Cluster, watch: PodWatch, node: str, prefix: str, pods: int, rate: float) -> list[float]:
    created: dict[str, float] = {}

    async def create(name: str) -> None:
        created[name] = time.perf_counter()
        await cluster.api.create(PODS, ticker(cluster, name, node))

    began = time.perf_counter()
    creating = []
    for i in range(pods):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        creating.append(asyncio.create_task(create(f"{prefix}-burst-{i}")))
    await asyncio.gather(*creating)
    return [await watch.wait(name) - created[name] for name in created]


async def measure(cluster: Cluster, watch: PodWatch, node: str, prefix: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"{prefix}-warm-up"  # pulls and compiles once: the cache is warm after it
    await cluster.api.create(PODS, ticker(cluster, name, node))
    await watch.wait(name)
    seq = await one_at_a_time(cluster, watch, node, prefix, args.pods, args.interval)
    await delete_all(cluster, f"{prefix}-seq-")  # a node holds 110 Pods, as a kubelet's default maxPods
    await asyncio.sleep(1)  # the agent hears of the deletions and frees their places
    hits = await burst(cluster, watch, node, prefix, args.burst, args.rate)
    return {"seq_p50": percentile(seq, 50) * 1000, "seq_p99": percentile(seq, 99) * 1000,
            "burst_p50": percentile(hits, 50) * 1000, "burst_p99": percentile(hits, 99) * 1000}


async def one_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    async with Cluster(args.kubeconfig, workdir, runtime=args.runtime).up(("ticker",)) as cluster, PodWatch(cluster, "Running") as watch:
        async with FloorAgent(cluster, f"apieff-floor-{tag}"):
            floor = await measure(cluster, watch, f"apieff-floor-{tag}", "floor", args)
        async with AgentRun(cluster, f"apieff-node-{tag}", args.runtime) as agent:
            before, server_before = await agent.requests(), await cluster.server_requests()
            steps_before = await agent.start_steps()
            wasmlet = await measure(cluster, watch, f"apieff-node-{tag}", "wasmlet", args)
            steps = {step: (total - steps_before.get(step, (0.0, 0.0))[0]) / max(1.0, n - steps_before.get(
                step, (0.0, 0.0))[1]) * 1000 for step, (total, n) in (await agent.start_steps()).items()}
            await asyncio.sleep(1)  # events are posted behind statuses
            counts, server = delta(await agent.requests(), before), delta(await cluster.server_requests(), server_before)
            await delete_all(cluster)
    pods = args.pods + args.burst
    return {"floor": floor, "wasmlet": wasmlet, "requests": per_pod(counts, pods),
            "server_requests": per_pod(server, pods), "steps": steps}


async def delete_all(cluster: Cluster, prefix: str = "") -> None:
    """Delete (grace 0) the namespace's Pods whose names start with `prefix`."""
    listing = await cluster.api.list(PODS, cluster.namespace)
    await asyncio.gather(*(cluster.api.delete(PODS, p["metadata"]["name"], cluster.namespace, grace_period_seconds=0)
                           for p in listing["items"] if p["metadata"]["name"].startswith(prefix)),
                         return_exceptions=True)


def report(run: int, result: dict[str, Any]) -> None:
    floor, wasmlet = result["floor"], result["wasmlet"]
    for key, what in (("seq", "one at a time"), ("burst", "burst")):
        print(f"run {run}: {what:13s}: wasmlet p50 {wasmlet[key + '_p50']:6.1f} ms (p99 {wasmlet[key + '_p99']:6.1f}), "
              f"floor p50 {floor[key + '_p50']:6.1f} ms (p99 {floor[key + '_p99']:6.1f}), "
              f"ratio {wasmlet[key + '_p50'] / floor[key + '_p50']:.2f}x", flush=True)
    print(f"run {run}: agent requests per Pod: {format_requests(result['requests'])}", flush=True)
    print(f"run {run}: the agent's start path, mean per Pod: " + ", ".join(
        f"{step} {ms:.1f} ms" for step, ms in sorted(result["steps"].items())), flush=True)
    if result["server_requests"]:
        print(f"run {run}: apiserver_request_total per Pod (every client): "
              f"{format_requests(result['server_requests'])}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50, help="Pods started one at a time")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between two of them")
    parser.add_argument("--burst", type=int, default=100, help="Pods in the burst")
    parser.add_argument("--rate", type=float, default=100.0, help="Pods per second in the burst")
    add_arguments(parser)
    args = parser.parse_args()
    results = await each_run(args, "podstart", one_run, report)
    for key, what in (("seq", "one at a time"), ("burst", f"{args.burst} at {args.rate:g}/s")):
        ours = median([r["wasmlet"][key + "_p50"] for r in results])
        floor = median([r["floor"][key + "_p50"] for r in results])
        ratio = median([r["wasmlet"][key + "_p50"] / r["floor"][key + "_p50"] for r in results])
        print(f"median over {args.runs} runs, {what}: wasmlet p50 {ours:.1f} ms "
              f"(p99 {median([r['wasmlet'][key + '_p99'] for r in results]):.1f}), floor p50 {floor:.1f} ms, "
              f"ratio {ratio:.2f}x")
    print(f"agent requests per Pod (median): {median_requests(results):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
