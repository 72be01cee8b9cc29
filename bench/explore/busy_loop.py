"""A module in a busy loop (no host calls) cannot be stopped by wasmer-sdk 0.5: kill(),
terminate() and spawn(timeout=) report it ended, but its thread keeps a core busy, and keeps a
place among the client's 200 running processes, until the Python process exits.

    timeout 120 .venv/bin/python bench/explore/busy_loop.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from common import CACHE_ROOT, module

from wasmer_sdk import Wasmer


async def spinning_threads() -> int:
    """How many of this process's threads are running (state R) — sampled over one second.

    Counting runnable threads rather than CPU seconds keeps the answer right on a busy machine.
    """
    samples = []
    for _ in range(10):
        await asyncio.sleep(0.1)
        states = []
        for task in Path("/proc/self/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue
        samples.append(states.count("R"))
    return sorted(samples)[len(samples) // 2]


async def stopped(how: str) -> None:
    """Stop one `loop` the way `how` says, then see whether its CPU use goes away."""
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        async with await wasmer.sandboxes.create() as sandbox:
            pkg = await sandbox.install_package(module("loop"))
            idle = await spinning_threads()
            process = await sandbox.command(pkg).spawn(output_bytes=0, timeout=0.5 if how == "timeout" else None)
            await asyncio.sleep(0.6)
            if how == "kill":
                await process.kill()
            elif how == "terminate":
                await process.terminate(grace_period=0.2)
            output = await process.wait()
            after_stop = await spinning_threads()
        after_close = await spinning_threads()
    after_client = await spinning_threads()
    print(f"{how:9s}: reported {output.reason.value}/{output.exit_code}; threads spinning: before {idle}, after the stop "
          f"{after_stop}, after sandbox.close {after_close}, after wasmer.close {after_client}", flush=True)


async def slots() -> None:
    """Two killed loops: how many of the client's 200 places are left for tickers?"""
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer, await wasmer.sandboxes.create() as sandbox:
        loop = await sandbox.install_package(module("loop"))
        ticker = await sandbox.install_package(module("ticker"))
        for _ in range(2):
            process = await sandbox.command(loop).spawn(output_bytes=0)
            await asyncio.sleep(0.1)
            await process.kill()
            await process.wait()
        running = []
        for _ in range(200):
            try:
                spawn = sandbox.command(ticker).spawn(stdout="discard", output_bytes=0)
                running.append(await asyncio.wait_for(spawn, 3))
            except TimeoutError:
                break
        print(f"after 2 killed loops, {len(running)} tickers fit before spawn() queues (200 on a fresh client)")
        for process in running:
            await process.kill()


async def main() -> None:
    for how in ("kill", "terminate", "timeout"):
        await stopped(how)
    await slots()


if __name__ == "__main__":
    asyncio.run(main())
