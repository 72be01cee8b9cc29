"""Soak: Pods created and deleted continuously for a while; the agent's memory, threads and open
files must stay flat, and so must its asyncio tasks. Prints a curve (one sample per interval).

The test Kubernetes API runs in this process, the agent as a separate `wasmlet-agent` process.
Each cycle creates a batch of Pods (half run-to-completion `hello`, half `ticker` services),
waits for them to start, deletes them, and waits until they are gone. RSS is split into its
anonymous part (heaps: Python's and the native libraries') and the rest (mapped files); threads
and open files are read from /proc, the event loop's tasks from the agent's own /metrics
(`wasmlet_agent_asyncio_tasks`), each sampled between two cycles, once the agent runs no Pod.
Usage: python bench/soak.py [--minutes 10] [--batch 20] [--sample-seconds 30] [--runtime wasmer]
                            [--own-configmaps] [--agent-env NAME=VALUE ...]

`--runtime wasmtime` runs the same churn on the other backend: what grows on one and not the other
belongs to that runtime's native library, not to the agent's Python. `--agent-env` tries allocator
settings (e.g. `GLIBC_TUNABLES=glibc.malloc.tcache_count=7`, glibc's default, which the agent
otherwise turns off); `--own-configmaps` gives every Pod a ConfigMap of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from common import agent_process, machine, rss_kib  # first: it sets up sys.path

import aiohttp

from wasmlet.kube import KubeClient, NotFound, load_config
from wasmlet.kube.resources import CONFIGMAPS, PODS

from tests.fixtures.kubeapi import running_kube_api
from tests.integration.agent_helpers import module_bytes, put_module_configmap
from tests.integration.faults import free_port, metric_value

NODE = "soak-node"


def pod(name: str, module: str, restart: str, args: list[str], runtime: str, configmap: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": f"configmap://modules/{module}.wasm", "args": args}
    if configmap:
        container["env"] = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": configmap, "key": "greeting"}}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "runtimeClassName": runtime, "restartPolicy": restart,
                     "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                     "containers": [container]}}


async def cycle(api: KubeClient, names: list[str], runtime: str, own_configmaps: bool) -> None:
    """Create the Pods (half `hello` run to completion, half `ticker` services), wait until they run,
    delete them and wait until they are gone; with `own_configmaps` each Pod reads a ConfigMap of
    its own, created before it and deleted after it."""
    for i, name in enumerate(names):
        configmap = f"cfg-{name}" if own_configmaps else None
        if configmap:
            await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"greeting": name},
                                          "metadata": {"name": configmap, "namespace": "default"}})
        if i % 2:
            await api.create(PODS, pod(name, "ticker", "Always", ["--interval-ms", "100"], runtime, configmap))
        else:
            await api.create(PODS, pod(name, "hello", "Never", [], runtime, configmap))
    await started(api, names)
    for name in names:
        await api.delete(PODS, name, "default")
    await gone(api, names)
    if own_configmaps:
        for name in names:
            await api.delete(CONFIGMAPS, f"cfg-{name}", "default")


def process_facts(pid: int) -> tuple[int, int, int, int]:
    """(RSS KiB, anonymous RSS KiB, threads, open fds). Anonymous memory is the heaps (Python's and
    the native libraries'); the rest of RSS is mapped files (shared libraries, SQLite's -shm)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    anon, threads = int(status["RssAnon"].split()[0]), int(status["Threads"])
    return rss_kib(pid), anon, threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def started(api: KubeClient, names: list[str]) -> None:
    statuses: dict[str, Any] = {}
    try:
        async with asyncio.timeout(60):
            while True:
                listing = await api.list(PODS, "default")
                statuses = {p["metadata"]["name"]: p.get("status") or {} for p in listing["items"]}
                if all(statuses.get(n, {}).get("phase") in ("Running", "Succeeded") for n in names):
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        stuck = {n: statuses.get(n) for n in names if statuses.get(n, {}).get("phase") not in ("Running", "Succeeded")}
        raise TimeoutError(f"Pods not started within 60 s: {stuck}") from None


async def gone(api: KubeClient, names: list[str]) -> None:
    async with asyncio.timeout(60):
        for name in names:
            while True:
                try:
                    await api.get(PODS, name, "default")
                except NotFound:
                    break
                await asyncio.sleep(0.05)


def environment(pid: int) -> dict[str, str]:
    """The process's environment as it runs (the agent may have started itself again with more)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


class Sample(NamedTuple):
    seconds: float
    rss_kib: int
    anon_kib: int
    threads: int
    fds: int
    tasks: int
    pods: int


async def agent_metric(session: aiohttp.ClientSession, port: int, name: str) -> float:
    """One unlabelled metric of the agent's /metrics."""
    async with session.get(f"https://127.0.0.1:{port}/metrics", ssl=False) as resp:
        return metric_value(await resp.text(), name)


async def sample(pid: int, session: aiohttp.ClientSession, port: int, seconds: float, pods: int,
                 label: str) -> Sample:
    """Taken once the agent has let go of the last cycle's Pods (they are gone from the API a
    moment before the agent has finished with them)."""
    async with asyncio.timeout(30):
        while await agent_metric(session, port, "wasmlet_pods"):
            await asyncio.sleep(0.05)
    tasks = int(await agent_metric(session, port, "wasmlet_agent_asyncio_tasks"))
    taken = Sample(seconds, *process_facts(pid), tasks, pods)
    print(f"{label} rss={taken.rss_kib / 1024:6.1f} MiB anon={taken.anon_kib / 1024:6.1f} MiB "
          f"threads={taken.threads:4d} fds={taken.fds:4d} tasks={taken.tasks:4d} pods so far={pods}", flush=True)
    return taken


async def soak(minutes: float, batch: int, sample_seconds: float, runtime: str, workdir: Path,
               agent_env: dict[str, str], own_configmaps: bool) -> list[Sample]:
    samples = []
    async with running_kube_api(workdir) as kube, KubeClient(load_config(kube.url)) as api:
        await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in ("hello", "ticker")})
        port = free_port()
        args = ["--kubeconfig", kube.url, "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", str(port),
                "--kubelet-api-auth", "none", "--state-dir", str(workdir / "state"), "--runtimes", runtime]
        async with agent_process(*args, env=agent_env) as agent, aiohttp.ClientSession() as session:
            await asyncio.sleep(3)
            print(f"agent pid {agent.pid}, GLIBC_TUNABLES={environment(agent.pid).get('GLIBC_TUNABLES', '')!r}",
                  flush=True)
            began = time.monotonic()
            next_sample = began
            cycles = pods = 0
            while time.monotonic() - began < minutes * 60:
                if time.monotonic() >= next_sample:
                    elapsed = time.monotonic() - began
                    samples.append(await sample(agent.pid, session, port, elapsed, pods, f"t={elapsed:6.0f}s"))
                    next_sample += sample_seconds
                await cycle(api, [f"c{cycles}-{i}" for i in range(batch)], runtime, own_configmaps)
                cycles += 1
                pods += batch
            await asyncio.sleep(3)
            samples.append(await sample(agent.pid, session, port, time.monotonic() - began, pods, "end    "))
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--sample-seconds", type=float, default=30)
    parser.add_argument("--runtime", choices=("wasmer", "wasmtime"), default="wasmer")
    parser.add_argument("--agent-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the agent only, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--own-configmaps", action="store_true",
                        help="each Pod reads a ConfigMap of its own (an env var), created and deleted with it")
    args = parser.parse_args()
    agent_env = dict(item.split("=", 1) for item in args.agent_env)
    with tempfile.TemporaryDirectory(prefix="wasmlet-soak-") as workdir:
        samples = await soak(args.minutes, args.batch, args.sample_seconds, args.runtime, Path(workdir), agent_env,
                             args.own_configmaps)
    print(f"\nmachine: {machine()}")
    # The first sample is the idle agent before any runtime is loaded: the baseline is the second.
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    per_pod = (last.rss_kib - first.rss_kib) * 1024 / max(last.pods - first.pods, 1)
    setup = "".join(f" {item}" for item in args.agent_env) + (" own ConfigMaps" if args.own_configmaps else "")
    print(f"{args.runtime}{setup}: {last.pods} Pods in {last.seconds:.0f} s; RSS {first.rss_kib / 1024:.1f} → "
          f"{last.rss_kib / 1024:.1f} MiB ({per_pod:+.0f} B/Pod after t={first.seconds:.0f}s), anon "
          f"{first.anon_kib / 1024:.1f} → {last.anon_kib / 1024:.1f} MiB, threads {first.threads} → {last.threads}, "
          f"fds {first.fds} → {last.fds}, asyncio tasks {first.tasks} → {last.tasks}")


if __name__ == "__main__":
    asyncio.run(main())
