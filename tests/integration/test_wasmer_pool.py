"""New wasmer Pods start on spare workers (`runtime/wasmer_pool.py`): each Pod still gets a worker
of its own, a Pod's containers share one, a worker runs a later Pod only when that Pod is of the
same namespace and every module of the one before ended by itself, with a fresh /workspace, and
nothing outlives the runtime. Real worker processes and real modules; nothing timed."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wasmlet.nodeagent.runtime import RunSpec, wasmer
from wasmlet.nodeagent.runtime.wasmer import WasmerRuntime

from tests.integration.test_agent_wasmer_containment import gone, workers

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"


def run_spec(pod: str, container: str, module: str = "hello", *args: str, namespace: str = "") -> RunSpec:
    path = MODULES / f"{module}.wasm"
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return RunSpec(pod, container, path, digest, [module, *args], {}, pod_namespace=namespace)


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


async def test_a_finished_pods_worker_runs_the_next_pod_of_its_namespace_with_a_fresh_workspace(
        runtime: WasmerRuntime) -> None:
    output: list[bytes] = []
    first = await runtime.start(run_spec("pod-a", "c", "files", "write", "/workspace/left.txt", "secret",
                                         namespace="team"), keep(output))
    assert (await first.wait()).exit_code == 0
    await runtime.release("pod-a")
    assert first.worker.alive  # given back, not killed

    errors: list[bytes] = []
    second = await runtime.start(run_spec("pod-b", "c", "files", "read", "/workspace/left.txt", namespace="team"),
                                 lambda stream, data: (errors if stream == "stderr" else output).append(data))
    assert second.worker is first.worker
    assert (await second.wait()).exit_code == 1  # the first Pod's /workspace went with its sandbox
    assert b"No such file" in b"".join(errors) and b"secret" not in b"".join(output)


async def test_other_namespaces_and_pods_after_a_stopped_module_get_workers_no_pod_used(
        runtime: WasmerRuntime) -> None:
    finished = await runtime.start(run_spec("pod-a", "c", namespace="x"), keep([]))
    assert (await finished.wait()).exit_code == 0
    await runtime.release("pod-a")
    other = await runtime.start(run_spec("pod-b", "c", namespace="y"), keep([]))
    assert other.worker.pid != finished.worker.pid and finished.worker.alive
    assert (await other.wait()).exit_code == 0

    stopped = await runtime.start(run_spec("pod-c", "c", "ticker", namespace="x"), keep([]))
    assert stopped.worker is finished.worker  # the one pod-a gave back
    await stopped.stop(0)  # wasmer-sdk may leave a stopped module spinning: its worker is not used again
    await runtime.release("pod-c")
    assert await gone(stopped.worker.pid)
    after = await runtime.start(run_spec("pod-d", "c", namespace="x"), keep([]))
    assert after.worker.pid not in (finished.worker.pid, other.worker.pid)
    assert (await after.wait()).exit_code == 0


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


async def test_a_worker_holding_more_memory_than_reuse_allows_ends_with_its_pod(
        runtime: WasmerRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wasmer, "REUSE_MAX_BYTES", -1)  # any worker holds more than that
    instance = await runtime.start(run_spec("pod-a", "c"), keep([]))
    assert (await instance.wait()).exit_code == 0
    await runtime.release("pod-a")
    assert await gone(instance.worker.pid)


async def test_a_worker_ended_twice_signals_nothing_through_its_closed_pidfd(runtime: WasmerRuntime) -> None:
    instance = await runtime.start(run_spec("pod-a", "c"), keep([]))
    assert (await instance.wait()).exit_code == 0
    worker = instance.worker
    await worker.close()
    bystander = await asyncio.create_subprocess_exec("sleep", "30")
    pidfd = os.pidfd_open(bystander.pid)
    try:
        # Its pidfd was closed with it; the number it kept may name any process by now: say this one.
        worker._forked.pidfd = pidfd
        await worker.close()  # as a release after a failed reset does
        assert not await gone(bystander.pid, timeout=1.0)
    finally:
        bystander.kill()
        await bystander.wait()
        os.close(pidfd)
