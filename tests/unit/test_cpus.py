"""The agent's CPU placement (`nodeagent/cpus.py`): when the loop moves to another CPU, how
/proc/stat is read, and where a pinned loop's threads run (real affinity calls, on threads of
this test that end with it)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from wasmlet.nodeagent.cpus import IDLE_MARGIN, WAIT_SHARE, LoopCpu, cpu_idle, idle_shares, quieter_cpu

CPUS = frozenset(os.sched_getaffinity(0))

STAT = """cpu  300 0 100 1600 0 0 0 0 0 0
cpu0 100 0 50 800 0 0 0 0 0 0
cpu1 200 0 50 700 50 0 0 0 0 0
intr 12345
ctxt 999
"""


@pytest.mark.parametrize(("waited", "idle", "expected"), [
    (WAIT_SHARE / 2, {0: 0.0, 1: 0.9}, None),  # the loop hardly waits: it stays, however busy its CPU
    (0.5, {0: 0.25, 1: 0.25 + IDLE_MARGIN / 2}, None),  # waits, but no CPU is much quieter
    (0.5, {0: 0.25, 1: 0.25 + IDLE_MARGIN}, 1),
    (0.5, {0: 0.0, 1: 0.5, 2: 0.8}, 2),  # the quietest
    (0.5, {0: 0.8, 1: 0.8}, None),  # its own CPU is as quiet as any
    (0.5, {1: 0.9}, None),  # its CPU was not read
])
def test_the_loop_moves_only_when_it_waits_for_its_cpu_and_another_is_much_quieter(
        waited: float, idle: dict[int, float], expected: int | None) -> None:
    assert quieter_cpu(0, waited, idle) == expected


def test_idle_shares_come_from_the_idle_and_iowait_ticks_between_two_readings() -> None:
    before = cpu_idle(STAT)
    assert before == {0: (800, 950), 1: (750, 1000)}
    after = {0: (800 + 90, 950 + 100), 1: (750 + 10, 1000 + 100), 2: (5, 10)}
    assert idle_shares(before, after) == {0: 0.9, 1: 0.1}  # a CPU read only once has no share yet


def on_a_loop_thread(placement: LoopCpu) -> dict[str, Any]:
    """Pin `placement` on a thread of its own running an event loop; where its threads ran."""
    seen: dict[str, Any] = {}

    def started_by_the_loop() -> None:
        seen["inherited"] = os.sched_getaffinity(0)
        placement.spread()
        seen["spread"] = os.sched_getaffinity(0)
        placement.beside_loop()
        seen["beside"] = os.sched_getaffinity(0)

    async def main() -> None:
        placement.pin(asyncio.get_running_loop())
        seen["loop"] = os.sched_getaffinity(0)
        seen["executor"] = await asyncio.to_thread(os.sched_getaffinity, 0)
        thread = threading.Thread(target=started_by_the_loop)
        thread.start()
        thread.join()

    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    runner.join()
    return seen


def test_a_pinned_loop_stays_on_its_cpu_and_sends_each_thread_where_its_work_belongs() -> None:
    placement = LoopCpu()
    seen = on_a_loop_thread(placement)
    if len(CPUS) == 1:  # nothing to choose: nothing is pinned
        assert placement.cpu is None
        assert seen == dict.fromkeys(seen, CPUS)
        return
    assert placement.cpu in CPUS
    assert seen["loop"] == {placement.cpu}
    assert seen["inherited"] == {placement.cpu}  # a thread inherits its starter's CPUs ...
    assert seen["spread"] == CPUS  # ... so long work spreads itself
    assert seen["beside"] == {placement.cpu}
    assert seen["executor"] == CPUS  # the default executor's threads spread as they start
    assert os.sched_getaffinity(0) == CPUS  # this thread was never touched


def test_an_unpinned_placement_leaves_every_thread_alone() -> None:
    placement = LoopCpu()
    placement.beside_loop()
    placement.spread_thread(threading.get_native_id())
    assert placement.cpu is None
    assert os.sched_getaffinity(0) == CPUS
