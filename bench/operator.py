"""Operator convergence: N single-replica WasmWorkloads → every Pod bound and every status written.

The test Kubernetes API (tests/fixtures, real HTTP) runs in this process; the operator runs as a
separate `wasmlet-operator` process, as in a cluster, so the two do not share one core. A few
Ready wasm Nodes are seeded as agents register them (no agents run: Pods stay Pending, which is
what "bound" needs). The clock starts before the first WasmWorkload is created and stops when
every workload has a Pod with `spec.nodeName` and a status with `observedGeneration` equal to
its generation and `replicas: 1`. API writes are counted from the emulator's request log (every
POST/PUT/PATCH/DELETE not sent by this script), per Pod.

Usage: python bench/operator.py [--workloads 1000] [--nodes 4] [--runs 3] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from common import ROOT, machine, median

import yaml

from wasmlet.api import keys
from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import CRDS, WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI, running_kube_api
from tests.integration.operator_helpers import wasm_node

NAMESPACE = "bench"
BENCH_AGENT = "wasmlet-bench"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
CREATE_CONCURRENCY = 16  # like a few `kubectl apply` running side by side
CRD_DIR = ROOT / "crds"


def workload(name: str) -> dict[str, Any]:
    return {"apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"module": {"image": "registry.local/hello:1"}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Operator:
    """The operator process and where its endpoints are."""

    process: asyncio.subprocess.Process
    metrics: str

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def operator_process(kube: KubeAPI, workdir: Path, profile: Path | None) -> AsyncIterator[Operator]:
    """`wasmlet-operator` against the test API, once its liveness endpoint answers."""
    liveness, metrics = free_port(), free_port()
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "wasmlet.operator.main", "--kubeconfig", str(kube.kubeconfig), "--namespace", NAMESPACE,
                "--liveness-endpoint", f"http://127.0.0.1:{liveness}/healthz",
                "--metrics-endpoint", f"http://127.0.0.1:{metrics}/metrics"]
    log = (workdir / "operator.log").open("wb")
    process = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=subprocess.STDOUT,
                                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        async with asyncio.timeout(60):
            while not await probe(liveness, "/healthz"):
                if process.returncode is not None:
                    raise RuntimeError(f"the operator exited: {(workdir / 'operator.log').read_text()}")
                await asyncio.sleep(0.1)
        yield Operator(process, f"127.0.0.1:{metrics}")
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def probe(port: int, path: str) -> bytes | None:
    """The body of GET `path` if it answers 200, else None."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return body if b" 200 " in head.split(b"\r\n", 1)[0] else None


async def scrape(operator: Operator, name: str) -> float:
    """The sum of a metric's samples whose line starts with `name`."""
    host, port = operator.metrics.split(":")
    body = await probe(int(port), "/metrics") or b""
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith(name))


def converged(kube: KubeAPI, total: int) -> int:
    """How many workloads have a bound Pod and a current status with one replica."""
    bound = {pod["metadata"]["labels"][keys.LABEL_WORKLOAD]
             for pod in kube.list("v1", "Pod", NAMESPACE, labels=keys.LABEL_WORKLOAD)
             if pod["spec"].get("nodeName")}
    done = 0
    for body in kube.list(keys.API_VERSION, keys.WORKLOAD_KIND, NAMESPACE):
        status = body.get("status") or {}
        if (body["metadata"]["name"] in bound and status.get("replicas") == 1
                and status.get("observedGeneration") == body["metadata"]["generation"]):
            done += 1
    return done


async def one_run(count: int, nodes: int, workdir: Path, profile: Path | None) -> dict[str, Any]:
    async with running_kube_api(workdir) as kube, KubeClient(load_config(kube.url), user_agent=BENCH_AGENT) as api:
        for path in sorted(CRD_DIR.glob("*.yaml")):
            await api.create(CRDS, yaml.safe_load(path.read_text()))
        kube.seed_namespace(NAMESPACE)  # the operator creates its KopfPeering there
        for i in range(nodes):
            kube.put(wasm_node(f"wasm-{i}", pods=count))
        async with operator_process(kube, workdir, profile) as operator:
            before = len(list(kube.server))
            cpu_before = operator.cpu_seconds()
            started = time.perf_counter()
            gate = asyncio.Semaphore(CREATE_CONCURRENCY)

            async def create(i: int) -> None:
                async with gate:
                    await api.create(WASM_WORKLOADS, workload(f"w{i:04d}"), NAMESPACE)

            await asyncio.gather(*(create(i) for i in range(count)))
            created = time.perf_counter() - started
            async with asyncio.timeout(600):
                while (done := converged(kube, count)) < count:
                    await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - started
            cpu = operator.cpu_seconds() - cpu_before
            await asyncio.sleep(2.0)  # writes a converged operator still makes count too
            requests = list(kube.server)[before:]
            spread = Counter(p["spec"]["nodeName"] for p in kube.list("v1", "Pod", NAMESPACE))
            reconciles = await scrape(operator, "wasmlet_operator_reconciles_total")
    by_agent = [r for r in requests if r.headers.get("User-Agent", "") != BENCH_AGENT]
    writes = Counter(f"{r.method.value} {r.resource.plural if r.resource else r.url.path}"
                     f"{'/' + r.subresource if r.subresource else ''}"
                     for r in by_agent if r.method.value in WRITES)
    reads = sum(1 for r in by_agent if r.method.value not in WRITES)
    assert done == count
    return {"seconds": elapsed, "create_seconds": created, "writes_per_pod": sum(writes.values()) / count,
            "writes": dict(writes), "reads": reads, "operator_cpu": cpu, "reconciles": reconciles,
            "pods_per_node": sorted(spread.values())}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="cProfile the operator of the first run into this file")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wasmlet-operator-bench-") as workdir:
            result = await one_run(args.workloads, args.nodes, Path(workdir), args.profile if run == 0 else None)
        print(f"run {run + 1}: converged in {result['seconds']:.1f} s (creates took {result['create_seconds']:.1f} s), "
              f"{result['writes_per_pod']:.2f} writes per Pod {result['writes']}, {result['reads']} other requests, "
              f"{result['reconciles']:.0f} reconciles, operator CPU {result['operator_cpu']:.1f} s, "
              f"Pods per node {result['pods_per_node']}", flush=True)
        results.append(result)
    print(f"\nmachine: {machine()}")
    print(f"median over {args.runs} runs of {args.workloads} workloads on {args.nodes} nodes: "
          f"converged in {median([r['seconds'] for r in results]):.1f} s, "
          f"{median([r['writes_per_pod'] for r in results]):.2f} writes per Pod, "
          f"operator CPU {median([r['operator_cpu'] for r in results]):.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
