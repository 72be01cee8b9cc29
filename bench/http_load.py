"""HTTP handler throughput and latency: `wrk` against a hello Pod served by the agent on loopback.

The test Kubernetes API runs in this process; the agent is a separate `wasmlet-agent` process, as
on a node, serving one Pod whose container is an HTTP handler (`http-hello.wasm`, one instance
per request). `wrk` (Debian package `wrk`, installed when missing) drives it for `--seconds` at
each connection count; every request is a full module run. Medians over `--runs` runs.

    python bench/http_load.py [--runtimes wasmer,wasmtime] [--connections 1,8,64] [--seconds 10] [--runs 3]
                         [--agent-cpus 0 --wrk-cpus 1]

`--agent-cpus`/`--wrk-cpus` pin the agent and the load generator (bench/RESULTS.md: on this VM
the agent's threads spread over both CPUs cost more than they gain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import agent_process, machine, median  # first: it sets up sys.path

from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import PODS

from tests.fixtures.kubeapi import running_kube_api
from tests.integration.agent_helpers import module_bytes, put_module_configmap

NODE = "bench-node"
PORT = 18080
# wrk's latency distribution lines: "     50%    1.23ms"
PERCENTILE_LINE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def hello_pod(runtime: str, max_concurrency: int) -> dict[str, Any]:
    handler = {"port": PORT, "maxConcurrency": max_concurrency, "requestTimeoutSeconds": 10}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"hello-{runtime}", "namespace": "default",
                     "annotations": {"wasmlet.dev/http.main": json.dumps(handler)}},
        "spec": {"nodeName": NODE, "runtimeClassName": runtime, "restartPolicy": "Always",
                 "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "configmap://modules/http-hello.wasm",
                                 "ports": [{"name": "http", "containerPort": PORT, "hostPort": PORT}]}]},
    }


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "/usr/bin/wrk"


def cpu_set(text: str) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


async def drive(wrk: str, connections: int, seconds: int, cpus: set[int] | None = None) -> dict[str, float]:
    """One wrk run; requests/s, latency percentiles (ms) and non-2xx/socket errors."""
    threads = min(connections, 2)
    process = await asyncio.create_subprocess_exec(
        *(["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []),
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{PORT}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await process.communicate())[0].decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if process.returncode != 0 or rate is None:
        raise RuntimeError(f"wrk failed:\n{output}")
    result = {"rps": float(rate[1])}
    for percent, value, unit in PERCENTILE_LINE.findall(output):
        result[f"p{percent}_ms"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: (.*)", output)
    result["non_2xx"] = float(errors[1]) if errors else 0.0
    if sockets:
        print(f"    wrk socket errors: {sockets[1]}", flush=True)
    return result


async def one_run(runtime: str, connection_counts: list[int], seconds: int, workdir: Path, wrk: str,
                  agent_cpus: set[int] | None, wrk_cpus: set[int] | None) -> dict[int, dict[str, float]]:
    async with running_kube_api(workdir) as kube, KubeClient(load_config(kube.url)) as api:
        await put_module_configmap(api, "default", "modules", {"http-hello.wasm": module_bytes("http-hello")})
        args = ["--kubeconfig", kube.url, "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", "0",
                "--state-dir", str(workdir / "state")]
        async with agent_process(*args, cpus=agent_cpus):
            await api.create(PODS, hello_pod(runtime, max(connection_counts)))
            await wait_serving(api, f"hello-{runtime}")
            await drive(wrk, 8, 2, wrk_cpus)  # warm-up: compiled module, connections, allocator
            return {c: await drive(wrk, c, seconds, wrk_cpus) for c in connection_counts}


async def wait_serving(api: KubeClient, name: str) -> None:
    async with asyncio.timeout(60):
        while True:
            pod = await api.get(PODS, name, "default")
            if (pod.get("status") or {}).get("phase") == "Running":
                return
            if (pod.get("status") or {}).get("phase") == "Failed":
                raise RuntimeError(f"the hello Pod failed: {pod['status']}")
            await asyncio.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", default="wasmer,wasmtime")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agent-cpus", default="", help="CPUs the agent may use, e.g. 0 (default: all)")
    parser.add_argument("--wrk-cpus", default="", help="CPUs wrk may use, e.g. 1 (default: all)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    counts = [int(c) for c in args.connections.split(",")]
    table: dict[tuple[str, int], list[dict[str, float]]] = {}
    for runtime in args.runtimes.split(","):
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="wasmlet-http-") as workdir:
                started = time.monotonic()
                results = await one_run(runtime, counts, args.seconds, Path(workdir), wrk,
                                        cpu_set(args.agent_cpus), cpu_set(args.wrk_cpus))
            for c, result in results.items():
                table.setdefault((runtime, c), []).append(result)
                print(f"{runtime} run {run + 1}, {c:>2} connections: {result['rps']:.0f} req/s, "
                      f"p50 {result.get('p50_ms', 0):.2f} ms, p99 {result.get('p99_ms', 0):.2f} ms, "
                      f"non-2xx {result['non_2xx']:.0f}", flush=True)
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"\nmachine: {machine()}; agent CPUs: {args.agent_cpus or 'all'}, wrk CPUs: {args.wrk_cpus or 'all'}")
    print(f"medians over {args.runs} runs of {args.seconds} s each:\n")
    print("| runtime | connections | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("|---|---|---|---|---|---|")
    for (runtime, c), runs in table.items():
        print(f"| {runtime} | {c} | {median([r['rps'] for r in runs]):.0f} | "
              f"{median([r.get('p50_ms', 0) for r in runs]):.2f} | {median([r.get('p99_ms', 0) for r in runs]):.2f} | "
              f"{median([r['non_2xx'] for r in runs]):.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
