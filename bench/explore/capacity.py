"""What happens at a client's limit of 200 running processes, and what idle clients and
sandboxes cost.

    timeout 120 .venv/bin/python bench/explore/capacity.py
"""

from __future__ import annotations

import asyncio

from common import CACHE_ROOT, module, rss_kib, threads

from wasmer_sdk import Wasmer


async def within(seconds: float, action: object) -> str:
    """'ok' if `action` finishes within `seconds`, else 'waits' (it is cancelled)."""
    try:
        await asyncio.wait_for(action, seconds)  # type: ignore[arg-type]
        return "ok"
    except TimeoutError:
        return f"waits (> {seconds:g} s)"


async def at_the_limit() -> None:
    """200 tickers on one client: what does the 201st spawn, and everything else, do?"""
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        pkg = await wasmer.packages.load(module("ticker"))
        hello = await wasmer.packages.load(module("hello"))
        sandbox = await wasmer.sandboxes.create(packages=[pkg, hello])
        running = [await sandbox.command(pkg).spawn(stdout="discard", output_bytes=0) for _ in range(200)]
        print(f"200 running, threads {threads()}")
        queued = asyncio.ensure_future(sandbox.command(pkg).spawn(stdout="discard", output_bytes=0))
        print("  packages.load:", await within(3, wasmer.packages.load(module("exit"))))
        print("  sandboxes.create:", await within(3, wasmer.sandboxes.create()))
        print("  sandbox.fs.write:", await within(3, sandbox.fs.write("/workspace/x", "x")))
        print("  spawn #201:", await within(2, asyncio.shield(queued)))
        await running[0].kill()
        print("  spawn #201 after one process was killed:", await within(3, asyncio.shield(queued)))
        running.append(queued.result())
        print("  run() of hello (at the limit again):", await within(2, sandbox.command(hello).run()))
        async with Wasmer(cache_root=CACHE_ROOT) as other:
            other_pkg = await other.packages.load(module("hello"))
            async with await other.sandboxes.create(packages=[other_pkg]) as other_sandbox:
                print("  hello on a second client:", await within(3, other_sandbox.command(other_pkg).run()))
        await running[1].kill()
        await running[2].kill()
        refill = [sandbox.command(pkg).spawn(stdout="discard", output_bytes=0) for _ in range(3)]
        results = [await within(2, spawn) for spawn in refill]
        print(f"  after 2 kills (and a cancelled run() above), 3 spawns: {results}")
        for process in running[3:]:
            await process.kill()
        await sandbox.close()


async def idle_costs() -> None:
    """RSS and threads of idle clients and idle sandboxes."""
    before, threads_before = rss_kib(), threads()
    clients = [Wasmer(cache_root=CACHE_ROOT) for _ in range(10)]
    print(f"10 idle clients: +{(rss_kib() - before) / 10:.0f} KiB and +{(threads() - threads_before) / 10:.0f} threads each")
    for client in clients:
        await client.close()
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        pkg = await wasmer.packages.load(module("ticker"))
        warm = await wasmer.sandboxes.create(packages=[pkg])
        await warm.command(pkg, ["--count", "1"]).run()
        before = rss_kib()
        sandboxes = [await wasmer.sandboxes.create(packages=[pkg]) for _ in range(1000)]
        print(f"1000 idle sandboxes: +{(rss_kib() - before) / 1000:.1f} KiB each")
        for sandbox in [*sandboxes, warm]:
            await sandbox.close()


async def main() -> None:
    await at_the_limit()
    await idle_costs()


if __name__ == "__main__":
    asyncio.run(main())
