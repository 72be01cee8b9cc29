"""Stopping processes: terminate(grace_period=), kill(), and spawn(timeout=) on a sleeping
module (`ticker`) and on a busy one (`loop`, no syscalls).

    timeout 120 .venv/bin/python bench/explore/termination.py
"""

from __future__ import annotations

import asyncio
import time

from common import CACHE_ROOT, module

from wasmer_sdk import Sandbox, Wasmer, WasmerError


async def stop(sandbox: Sandbox, name: str, args: list[str], how: str) -> None:
    """Spawn `name`, let it run 0.5 s, stop it `how`, and time the stop and the wait."""
    pkg = await sandbox.install_package(module(name))
    process = await sandbox.command(pkg, args).spawn(output_bytes=0)
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    try:
        if how == "kill":
            await process.kill()
        else:
            await process.terminate(grace_period=float(how.split("=")[1].rstrip(")")))
    except WasmerError as error:
        print(f"  {name:6s} {how:22s} raised {error.code}: {error}")
    stopped = time.perf_counter()
    try:
        output = await asyncio.wait_for(process.wait(), timeout=10)
        result = f"reason={output.reason.value} exit_code={output.exit_code}"
    except TimeoutError:
        result = "STILL RUNNING 10 s after the stop"
        await process.kill()
    waited = time.perf_counter()
    print(f"  {name:6s} {how:22s} call {1000 * (stopped - started):7.1f} ms, wait {1000 * (waited - stopped):7.1f} ms: {result}")


async def deadline(sandbox: Sandbox, name: str, args: list[str], seconds: float) -> None:
    """spawn(timeout=) / run(timeout=): does the SDK end a module at its deadline?"""
    pkg = await sandbox.install_package(module(name))
    started = time.perf_counter()
    process = await sandbox.command(pkg, args).spawn(timeout=seconds, output_bytes=0)
    try:
        output = await asyncio.wait_for(process.wait(), timeout=seconds + 10)
        result = f"reason={output.reason.value} exit_code={output.exit_code}"
    except TimeoutError:
        result = "STILL RUNNING 10 s after the deadline"
        await process.kill()
    print(f"  {name:6s} spawn(timeout={seconds}) ended after {time.perf_counter() - started:.3f} s: {result}")
    started = time.perf_counter()
    output = await sandbox.command(pkg, args).run(timeout=seconds, check=False)
    print(f"  {name:6s} run(timeout={seconds}) returned after {time.perf_counter() - started:.3f} s: "
          f"reason={output.reason.value} exit_code={output.exit_code}")


async def natural_exit_during_grace(sandbox: Sandbox) -> None:
    """terminate() on a module that ends by itself during the grace period, and after it ended."""
    ticker = await sandbox.install_package(module("ticker"))
    process = await sandbox.command(ticker, ["--interval-ms", "100", "--count", "4"]).spawn(stdout="capture")
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await process.terminate(grace_period=2)
    output = await process.wait()
    print(f"  ticker --count 4 (exits at ~0.3 s), terminate(grace=2) returned after {time.perf_counter() - started:.2f} s: "
          f"reason={output.reason.value} exit_code={output.exit_code} stdout={output.stdout.bytes!r}")
    exit_pkg = await sandbox.install_package(module("exit"))
    process = await sandbox.command(exit_pkg, ["5"]).spawn()
    await asyncio.sleep(0.2)
    await process.terminate(grace_period=1)
    await process.kill()
    output = await process.wait()
    print(f"  exit 5, then terminate() and kill() after it ended: reason={output.reason.value} exit_code={output.exit_code}")


async def main() -> None:
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer, await wasmer.sandboxes.create() as sandbox:
        for name, args in (("ticker", ["--interval-ms", "100"]), ("loop", [])):
            for how in ("terminate(grace=0)", "terminate(grace=0.3)", "terminate(grace=2)", "kill"):
                await stop(sandbox, name, args, how)
        for name, args in (("ticker", ["--interval-ms", "100"]), ("loop", [])):
            await deadline(sandbox, name, args, 0.5)
        await natural_exit_during_grace(sandbox)


if __name__ == "__main__":
    asyncio.run(main())
