"""Pod start latency: a Pod bound to the node → `Running` seen through a watch (warm module cache).

The test Kubernetes API (tests/fixtures, real HTTP) runs in this process; the agent is a separate
`wasmlet-agent` process, as on a node. Pods are created one at a time (latency), then all at once
(throughput). Usage: python bench/podstart.py [--pods 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import agent_process, machine, median, percentile  # first: it sets up sys.path

from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import NODES, PODS

from tests.fixtures.kubeapi import running_kube_api
from tests.integration.agent_helpers import module_bytes, put_module_configmap

NODE = "bench-node"


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "runtimeClassName": "wasmer", "restartPolicy": "Always",
                 "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "configmap://modules/ticker.wasm",
                                 "args": ["--interval-ms", "60000"]}]},
    }


class RunningWatch:
    """Records when each Pod is first seen Running through a watch."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.events: dict[str, asyncio.Event] = {}

    async def run(self, api: KubeClient) -> None:
        async for event in api.watch(PODS, "default", timeout_seconds=600, bookmarks=False):
            obj = event["object"]
            name = obj["metadata"]["name"]
            if (obj.get("status") or {}).get("phase") == "Running" and name not in self.running:
                self.running[name] = time.perf_counter()
                self.events.setdefault(name, asyncio.Event()).set()

    async def wait(self, name: str) -> None:
        await self.events.setdefault(name, asyncio.Event()).wait()


async def one_run(pods: int, workdir: Path) -> dict[str, float]:
    async with running_kube_api(workdir) as kube, KubeClient(load_config(kube.url)) as api:
        await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker")})
        args = ["--kubeconfig", kube.url, "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", "0",
                "--state-dir", str(workdir / "state")]
        async with agent_process(*args):
            async with asyncio.timeout(30):
                while True:
                    try:
                        node = await api.get(NODES, NODE)
                        if any(c["type"] == "Ready" and c["status"] == "True"
                               for c in (node.get("status") or {}).get("conditions", [])):
                            break
                    except Exception:
                        pass
                    await asyncio.sleep(0.05)
            watch = RunningWatch()
            watcher = asyncio.create_task(watch.run(api))
            await api.create(PODS, pod("warmup"))  # pulls and compiles once: the cache is warm after it
            await watch.wait("warmup")
            latencies = []
            for i in range(pods):
                name = f"seq-{i}"
                started = time.perf_counter()
                await api.create(PODS, pod(name))
                await watch.wait(name)
                latencies.append(watch.running[name] - started)
            burst_started = time.perf_counter()
            await asyncio.gather(*(api.create(PODS, pod(f"burst-{i}")) for i in range(pods)))
            await asyncio.gather(*(watch.wait(f"burst-{i}") for i in range(pods)))
            burst_seconds = time.perf_counter() - burst_started
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "burst_pods_per_s": pods / burst_seconds}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wasmlet-podstart-") as workdir:
            result = await one_run(args.pods, Path(workdir))
        print(f"run {run + 1}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
              f"burst {result['burst_pods_per_s']:.0f} pods/s", flush=True)
        results.append(result)
    print(f"\nmachine: {machine()}")
    print(f"median over {args.runs} runs of {args.pods} Pods: "
          f"p50 {median([r['p50_ms'] for r in results]):.1f} ms, p99 {median([r['p99_ms'] for r in results]):.1f} ms, "
          f"burst {median([r['burst_pods_per_s'] for r in results]):.0f} pods/s")


if __name__ == "__main__":
    asyncio.run(main())
