"""Soak: Pods created and deleted continuously for a while; the agent's memory, threads and open
files must stay flat. Prints a curve (one sample per interval).

The test Kubernetes API runs in this process, the agent as a separate `wasmlet-agent` process.
Each cycle creates a batch of Pods (half run-to-completion `hello`, half `ticker` services),
waits for them to start, deletes them, and waits until they are gone.
Usage: python bench/soak.py [--minutes 10] [--batch 20] [--sample-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MODULES, agent_process, machine, rss_kib

from tests.fixtures.kubeapi import running_kube_api
from wasmlet.kube import KubeClient, NotFound, load_config
from wasmlet.kube.resources import CONFIGMAPS, PODS

NODE = "soak-node"


def pod(name: str, module: str, restart: str, args: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "runtimeClassName": "wasmer", "restartPolicy": restart,
                     "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": f"configmap://modules/{module}.wasm", "args": args}]}}


def process_facts(pid: int) -> tuple[int, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return rss_kib(pid), threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def started(api: KubeClient, names: list[str]) -> None:
    async with asyncio.timeout(60):
        while True:
            listing = await api.list(PODS, "default")
            phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in listing["items"]}
            if all(phases.get(n) in ("Running", "Succeeded") for n in names):
                return
            await asyncio.sleep(0.1)


async def gone(api: KubeClient, names: list[str]) -> None:
    async with asyncio.timeout(60):
        for name in names:
            while True:
                try:
                    await api.get(PODS, name, "default")
                except NotFound:
                    break
                await asyncio.sleep(0.05)


async def soak(minutes: float, batch: int, sample_seconds: float, workdir: Path) -> list[tuple[float, int, int, int, int]]:
    samples = []
    async with running_kube_api(workdir) as kube, KubeClient(load_config(kube.url)) as api:
        modules = {f"{m}.wasm": base64.b64encode((MODULES / f"{m}.wasm").read_bytes()).decode() for m in ("hello", "ticker")}
        await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "modules", "namespace": "default"}, "binaryData": modules})
        args = ["--kubeconfig", kube.url, "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", "0",
                "--state-dir", str(workdir / "state")]
        async with agent_process(*args) as agent:
            await asyncio.sleep(3)
            began = time.monotonic()
            next_sample = began
            cycles = pods = 0
            while time.monotonic() - began < minutes * 60:
                if time.monotonic() >= next_sample:
                    rss, threads, fds = process_facts(agent.pid)
                    samples.append((time.monotonic() - began, rss, threads, fds, pods))
                    print(f"t={samples[-1][0]:6.0f}s rss={rss / 1024:6.1f} MiB threads={threads:4d} fds={fds:4d} "
                          f"pods so far={pods}", flush=True)
                    next_sample += sample_seconds
                names = [f"c{cycles}-{i}" for i in range(batch)]
                for i, name in enumerate(names):
                    if i % 2:
                        await api.create(PODS, pod(name, "ticker", "Always", ["--interval-ms", "100"]))
                    else:
                        await api.create(PODS, pod(name, "hello", "Never", []))
                await started(api, names)
                for name in names:
                    await api.delete(PODS, name, "default")
                await gone(api, names)
                cycles += 1
                pods += batch
            await asyncio.sleep(3)
            rss, threads, fds = process_facts(agent.pid)
            samples.append((time.monotonic() - began, rss, threads, fds, pods))
            print(f"end    rss={rss / 1024:6.1f} MiB threads={threads:4d} fds={fds:4d} pods={pods}", flush=True)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--sample-seconds", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlet-soak-") as workdir:
        samples = await soak(args.minutes, args.batch, args.sample_seconds, Path(workdir))
    print(f"\nmachine: {machine()}")
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    print(f"{last[4]} Pods in {last[0]:.0f} s; RSS {first[1] / 1024:.1f} → {last[1] / 1024:.1f} MiB, "
          f"threads {first[2]} → {last[2]}, fds {first[3]} → {last[3]}")


if __name__ == "__main__":
    asyncio.run(main())
