"""Density: N long-running instances on one standalone agent — RSS per instance, start latency, idle RSS.

The agent is a separate `wasmlet-agent --manifests DIR` process (no API server: static Pods);
progress is read from its kubelet API (`/pods`, `/metrics`). Usage:
python bench/density.py [--instances 2000] [--runs 3]
Each wasmer Pod runs in a worker process of its own (~5.7 MiB, docs/runtimes.md "wasmer
containment"): 2000 instances need ~12 GiB free, and the agent's own RSS no longer holds them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

from common import MODULES, agent_process, machine, median, rss_kib  # first: it sets up sys.path

import aiohttp
import yaml

PORT = 10299


def pods_manifest(count: int) -> str:
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"tick-{i}"},
             "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "main", "image": "file:ticker.wasm",
                                      "args": ["--interval-ms", "60000"]}]}} for i in range(count)]
    return yaml.safe_dump_all(docs)


async def running_count(session: aiohttp.ClientSession) -> int:
    try:
        async with session.get(f"https://127.0.0.1:{PORT}/pods", ssl=False) as resp:
            pods = (await resp.json())["items"]
    except aiohttp.ClientError:
        return -1
    return sum(1 for p in pods if p["status"].get("phase") == "Running")


async def start_latency(session: aiohttp.ClientSession) -> float:
    async with session.get(f"https://127.0.0.1:{PORT}/metrics", ssl=False) as resp:
        text = await resp.text()
    total = float(re.search(r'wasmlet_container_start_seconds_sum\{runtime="wasmer"\} (\S+)', text).group(1))
    count = float(re.search(r'wasmlet_container_start_seconds_count\{runtime="wasmer"\} (\S+)', text).group(1))
    return total / count


async def one_run(instances: int, workdir: Path) -> dict[str, float]:
    manifests = workdir / "manifests"
    manifests.mkdir()
    shutil.copy(MODULES / "ticker.wasm", manifests / "ticker.wasm")
    args = ["--manifests", str(manifests), "--node-name", "density", "--node-ip", "127.0.0.1",
            "--kubelet-port", str(PORT), "--state-dir", str(workdir / "state"), "--kubelet-api-auth", "none"]
    async with agent_process(*args) as agent, aiohttp.ClientSession() as session:
        async with asyncio.timeout(30):
            while await running_count(session) < 0:
                await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        idle = rss_kib(agent.pid)
        (manifests / "pods.yaml").write_text(pods_manifest(instances))
        started = time.perf_counter()
        async with asyncio.timeout(600):
            while await running_count(session) < instances:
                await asyncio.sleep(0.25)
        seconds = time.perf_counter() - started
        await asyncio.sleep(2)
        loaded = rss_kib(agent.pid)
        latency = await start_latency(session)
    return {"idle_mib": idle / 1024, "per_instance_kib": (loaded - idle) / instances,
            "total_mib": loaded / 1024, "all_running_s": seconds, "start_ms": latency * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wasmlet-density-") as workdir:
            result = await one_run(args.instances, Path(workdir))
        print(f"run {run + 1}: idle agent {result['idle_mib']:.1f} MiB; {args.instances} instances: "
              f"{result['per_instance_kib']:.0f} KiB each, {result['total_mib']:.0f} MiB total, all running "
              f"after {result['all_running_s']:.1f} s, mean start {result['start_ms']:.2f} ms", flush=True)
        results.append(result)
    print(f"\nmachine: {machine()}")
    print(f"median over {args.runs} runs: idle {median([r['idle_mib'] for r in results]):.1f} MiB, "
          f"{median([r['per_instance_kib'] for r in results]):.0f} KiB per instance, "
          f"all {args.instances} running in {median([r['all_running_s'] for r in results]):.1f} s, "
          f"mean start {median([r['start_ms'] for r in results]):.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
