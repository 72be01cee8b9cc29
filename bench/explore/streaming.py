"""Live stdout/stderr from a spawned long-running module, and what unread output does.

    timeout 120 .venv/bin/python bench/explore/streaming.py
"""

from __future__ import annotations

import asyncio
import time

from common import CACHE_ROOT, module, rss_kib

from wasmer_sdk import Wasmer


async def live_lines(wasmer: Wasmer) -> None:
    """Each `tick N` arrives when the module prints it (interval 200 ms), not at exit."""
    pkg = await wasmer.packages.load(module("ticker"))
    async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
        started = time.perf_counter()
        process = await sandbox.command(pkg, ["--interval-ms", "200", "--count", "5"]).spawn()
        assert process.stdout is not None
        async for line in process.stdout.lines():
            print(f"  {1000 * (time.perf_counter() - started):7.1f} ms  {line!r}")
        print("  exit:", await process.wait())


async def unread(wasmer: Wasmer, mode: str, count: int) -> None:
    """Spawn a fast ticker whose output nobody reads: does it block, buffer, or drop?"""
    pkg = await wasmer.packages.load(module("ticker"))
    async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
        before = rss_kib()
        started = time.perf_counter()
        process = await sandbox.command(pkg, ["--interval-ms", "0", "--count", str(count)]).spawn(stdout=mode)
        try:
            output = await asyncio.wait_for(process.wait(), timeout=20)
            elapsed = time.perf_counter() - started
            print(f"  stdout={mode}: exited after {elapsed:.2f} s, reason={output.reason.value} "
                  f"code={output.exit_code} captured={len(output.stdout.bytes)} B "
                  f"truncated={output.stdout.truncated}; RSS +{(rss_kib() - before) // 1024} MiB")
            if mode == "pipe":
                assert process.stdout is not None
                drained = 0
                async for chunk in process.stdout:
                    drained += len(chunk)
                print(f"  stdout=pipe: {drained} B still readable after exit; RSS now +{(rss_kib() - before) // 1024} MiB")
        except TimeoutError:
            print(f"  stdout={mode}: still running after 20 s (blocked on the unread pipe); RSS +{(rss_kib() - before) // 1024} MiB")
            assert process.stdout is not None
            got = 0
            async for chunk in process.stdout:
                got += len(chunk)
                if got > 1 << 20:
                    break
            print(f"  read {got} B after the stall")
            await process.kill()
            print("  after kill:", (await process.wait()).reason.value)


async def main() -> None:
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        print("live lines:")
        await live_lines(wasmer)
        print("unread output (ticker prints ~8 B a line):")
        await unread(wasmer, "pipe", 2_000_000)
        await unread(wasmer, "discard", 2_000_000)
        await unread(wasmer, "capture", 2_000_000)


if __name__ == "__main__":
    asyncio.run(main())
