"""Where a real `wasmlet-agent` process runs its threads (`nodeagent/cpus.py`): the event loop's
thread on one CPU, a short HTTP request's instance beside it, a request that runs on moved to
every CPU, and the wasmer fork server and its workers on every CPU; with `--event-loop-cpu any`
nothing is pinned. Threads are told apart by what they do, read from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.integration.agent_helpers import MODULES
from tests.integration.faults import free_port

CPUS = frozenset(os.sched_getaffinity(0))


def http_pod(name: str, module: str, port: int, timeout: int = 10) -> dict[str, Any]:
    handler = {"port": port, "requestTimeoutSeconds": timeout}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"wasmlet.dev/http.main": json.dumps(handler)}},
            "spec": {"runtimeClassName": "wasmtime", "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                     "containers": [
                {"name": "main", "image": f"file:{module}.wasm",
                 "ports": [{"containerPort": port, "hostPort": port, "protocol": "TCP"}]}]}}


def ticker_pod(name: str, runtime: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"runtimeClassName": runtime, "restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "containers": [
                {"name": "main", "image": "file:ticker.wasm", "args": ["--interval-ms", "50"]}]}}


@asynccontextmanager
async def agent(tmp_path: Path, *docs: dict[str, Any], flags: tuple[str, ...] = ()) -> AsyncIterator[int]:
    """A standalone `wasmlet-agent` process running `docs`; yields its pid once it serves."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for module in ("ticker", "http-hello", "loop"):
        shutil.copy(MODULES / f"{module}.wasm", manifests / f"{module}.wasm")
    for doc in docs:
        (manifests / f"{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.nodeagent.main", "--manifests", str(manifests), "--kubelet-port", "0",
        "--state-dir", str(tmp_path / "state"), "--node-name", "n", "--node-ip", "127.0.0.1", *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while b"kubelet API on" not in await process.stderr.readline():
                pass
        yield process.pid
    finally:
        process.terminate()
        await process.wait()


def affinity(tid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(tid))


def cpu_ticks(pid: int) -> dict[int, int]:
    """user + system ticks of each thread of `pid`."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


def children(pid: int) -> list[int]:
    """`pid`'s descendants."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            found += [int(child), *children(int(child))]
    return found


async def get(port: int, timeout: float = 10.0) -> int:
    """GET / on the port (retried until the Pod serves); its status code."""
    def once() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as response:
            return int(response.status)

    async with asyncio.timeout(30):
        while True:
            try:
                return await asyncio.to_thread(once)
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                await asyncio.sleep(0.1)


async def test_the_loop_keeps_one_cpu_short_requests_run_beside_it_and_everything_else_on_every_cpu(
        tmp_path: Path) -> None:
    hello, spin = free_port(), free_port()
    docs = (http_pod("hello", "http-hello", hello), http_pod("spin", "loop", spin, timeout=3),
            ticker_pod("ticker-wasmtime", "wasmtime"), ticker_pod("ticker-wasmer", "wasmer"))
    async with agent(tmp_path, *docs) as pid:
        loop_cpus = affinity(pid)  # asyncio.run on the main thread: its tid is the pid
        assert len(loop_cpus) == (1 if len(CPUS) > 1 else len(CPUS)) and loop_cpus <= CPUS

        for _ in range(5):
            assert await get(hello) == 200
        idle_threads = [tid for tid in cpu_ticks(pid) if tid != pid]
        assert any(affinity(tid) == loop_cpus for tid in idle_threads)  # the requests' threads, parked

        spinning = asyncio.create_task(get(spin))  # `loop` never ends: the request times out after 3 s
        before = cpu_ticks(pid)
        await asyncio.sleep(1.0)
        after = cpu_ticks(pid)
        busiest = max((tid for tid in after if tid != pid), key=lambda tid: after[tid] - before.get(tid, 0))
        assert after[busiest] - before.get(busiest, 0) > 30  # it spins: ~100 ticks a second
        assert affinity(busiest) == CPUS  # it ran past its first 10 ms beside the loop

        wasmer = children(pid)
        assert wasmer, "the wasmer fork server and its workers"
        assert all(affinity(child) == CPUS for child in wasmer)
        assert await spinning == 504


async def test_with_event_loop_cpu_any_nothing_is_pinned(tmp_path: Path) -> None:
    hello = free_port()
    async with agent(tmp_path, http_pod("hello", "http-hello", hello), flags=("--event-loop-cpu", "any")) as pid:
        assert await get(hello) == 200
        assert {affinity(tid) for tid in cpu_ticks(pid)} == {CPUS}
