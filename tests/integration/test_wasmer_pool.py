"""New wasmer Pods start on spare workers (`runtime/wasmer_pool.py`): each Pod still gets a worker
of its own, a Pod's containers share one, a spare is never a used worker, and nothing outlives the
runtime. Real worker processes and real modules; nothing timed."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wasmlet.nodeagent.runtime import RunSpec
from wasmlet.nodeagent.runtime.wasmer import WasmerRuntime

from tests.integration.test_agent_wasmer_containment import gone, workers

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"


def run_spec(pod: str, container: str, module: str = "hello", *args: str) -> RunSpec:
    path = MODULES / f"{module}.wasm"
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return RunSpec(pod, container, path, digest, [module, *args], {})


def keep(lines: list[bytes]) -> object:
    return lambda stream, data: lines.append(data)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[WasmerRuntime]:
    wasmer = WasmerRuntime(tmp_path / "cache")
    try:
        yield wasmer
    finally:
        await wasmer.close()


async def test_a_pods_containers_started_at_once_share_one_worker_and_pods_get_their_own(
        runtime: WasmerRuntime) -> None:
    output: list[bytes] = []
    a1, a2, b = await asyncio.gather(runtime.start(run_spec("pod-a", "one"), keep(output)),
                                     runtime.start(run_spec("pod-a", "two"), keep(output)),
                                     runtime.start(run_spec("pod-b", "one"), keep(output)))
    assert a1.worker is a2.worker and a1.worker is not b.worker and a1.worker.pid != b.worker.pid
    for instance in (a1, a2, b):
        assert (await instance.wait()).exit_code == 0
    assert b"".join(output).count(b"Hello") == 3


async def test_every_new_pod_gets_a_fresh_process_never_one_a_pod_used(runtime: WasmerRuntime) -> None:
    pids = []
    for index in range(5):
        instance = await runtime.start(run_spec(f"pod-{index}", "c"), keep([]))
        assert (await instance.wait()).exit_code == 0
        pids.append(instance.worker.pid)
        await runtime.release(f"pod-{index}")
        assert await gone(instance.worker.pid)
    assert len(set(pids)) == len(pids)


async def test_a_pod_released_while_its_worker_is_forking_leaves_no_worker(runtime: WasmerRuntime) -> None:
    start = asyncio.create_task(runtime.start(run_spec("pod-gone", "c", "ticker"), keep([])))
    await asyncio.sleep(0)  # the Pod has claimed a spare that is still forking
    start.cancel()
    await runtime.release("pod-gone")
    await asyncio.gather(start, return_exceptions=True)
    instance = await runtime.start(run_spec("pod-next", "c", "ticker"), keep([]))
    assert instance.worker.alive
    spares_and_pods = workers(os.getpid())
    await runtime.close()
    assert all([await gone(pid) for pid in spares_and_pods])
    assert workers(os.getpid()) == set()
