"""When the wasmer spare pool replaces a spare (`runtime/wasmer_pool.py`): a lone Pod's start does
not share the CPU with its successor's warm-up, a burst gets replacements at once, and a closed
pool forks nothing more. The fork is a stand-in here; test_wasmer_pool.py runs real workers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wasmlet.nodeagent.runtime import wasmer_pool
from wasmlet.nodeagent.runtime.wasmer_pool import SparePool


class Spare:
    alive = True

    def preload(self, module_path: Path, digest: str, command: str) -> None:
        pass

    async def close(self) -> None:
        self.alive = False


class Forks:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> Any:
        self.count += 1
        return Spare()


async def ready(pool: SparePool, forks: Forks, count: int) -> None:
    pool.take()  # the first take fills the pool
    while forks.count < count:
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_spare_taken_while_another_is_left_is_replaced_later_the_last_one_at_once() -> None:
    forks = Forks()
    pool = SparePool(forks, size=2)
    await ready(pool, forks, 3)  # the taken one and two spares
    pool.take()
    await asyncio.sleep(0)
    assert forks.count == 3  # one spare left: its successor waits
    pool.take()
    for _ in range(3):
        await asyncio.sleep(0)
    assert forks.count == 5  # none left: both places filled now
    await pool.close()


async def test_the_delayed_replacement_comes() -> None:
    forks = Forks()
    pool = SparePool(forks, size=2)
    await ready(pool, forks, 3)
    pool.take()
    async with asyncio.timeout(10):
        while forks.count < 4:
            await asyncio.sleep(0.01)
    await pool.close()


async def test_a_closed_pool_forks_nothing_more() -> None:
    forks = Forks()
    pool = SparePool(forks, size=2)
    await ready(pool, forks, 3)
    pool.take()
    await pool.close()
    await asyncio.sleep(wasmer_pool.REFILL_DELAY * 3)
    assert forks.count == 3
