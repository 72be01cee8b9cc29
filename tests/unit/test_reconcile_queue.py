"""The reconcile queue: one pass per workload at a time, coalesced requests, holds, retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from wasmlet.operator.errors import PermanentError, RetryableError
from wasmlet.operator.metrics import OperatorMetrics
from wasmlet.operator.queue import ReconcileQueue
from wasmlet.operator.reconciler import Key, Outcome

A: Key = ("ns", "a")
B: Key = ("ns", "b")


class Work:
    """A reconcile that records its calls and can be told how to end."""

    def __init__(self) -> None:
        self.calls: list[Key] = []
        self.running = 0
        self.overlap = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.outcomes: list[BaseException | Outcome] = []

    async def __call__(self, key: Key) -> Outcome:
        self.running += 1
        self.overlap = self.overlap or self.running > 1
        self.calls.append(key)
        try:
            await self.gate.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else Outcome()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        finally:
            self.running -= 1


@contextlib.asynccontextmanager
async def running(queue: ReconcileQueue) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_requests_during_a_pass_coalesce_into_one_more_pass() -> None:
    work = Work()
    queue = ReconcileQueue(work, retry_seconds=0.01)
    async with running(queue):
        work.gate.clear()
        queue.add(A)
        await settle()
        for _ in range(10):
            queue.add(A)
        await settle()
        work.gate.set()
        await asyncio.sleep(0.05)
    assert work.calls == [A, A] and not work.overlap


async def test_a_held_queue_dispatches_nothing_and_loses_nothing() -> None:
    work = Work()
    queue = ReconcileQueue(work)
    queue.hold("caches")
    queue.hold("peering")
    async with running(queue):
        queue.add(A)
        queue.add(B)
        await asyncio.sleep(0.02)
        assert work.calls == []
        queue.release("caches")
        await asyncio.sleep(0.02)
        assert work.calls == [] and queue.held == {"peering"}
        queue.release("peering")
        await asyncio.sleep(0.02)
    assert sorted(work.calls) == [A, B]


async def test_failures_retry_with_backoff_and_permanent_ones_wait_for_a_change() -> None:
    work = Work()
    metrics = OperatorMetrics()
    queue = ReconcileQueue(work, retry_seconds=0.01, metrics=metrics)
    work.outcomes = [RetryableError("conflict", delay=0.01), RuntimeError("bug"), Outcome(), PermanentError("invalid")]
    async with running(queue):
        queue.add(A)
        await asyncio.sleep(0.2)
        assert work.calls == [A, A, A]  # retried twice, then it worked
        queue.add(A)
        await asyncio.sleep(0.1)
    assert work.calls == [A, A, A, A]  # the permanent failure is not retried
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in metrics.registry.collect() for s in m.samples}
    assert samples[("wasmlet_operator_reconciles_total", (("result", "success"),))] == 1
    assert samples[("wasmlet_operator_reconcile_errors_total", (("kind", "crash"),))] == 1
    assert samples[("wasmlet_operator_reconcile_errors_total", (("kind", "permanent"),))] == 1


async def test_a_gone_workload_is_forgotten_and_a_requeue_comes_back() -> None:
    work = Work()
    queue = ReconcileQueue(work)
    work.outcomes = [Outcome(gone=True), Outcome(requeue_after=0.02)]
    async with running(queue):
        queue.add(A)
        await asyncio.sleep(0.01)
        assert queue.known == frozenset()
        queue.add(B)
        await asyncio.sleep(0.08)
    assert work.calls[:3] == [A, B, B]
