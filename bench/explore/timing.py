"""How long each wasmer-sdk step takes for a raw module, warm (medians of 50 runs).

    timeout 300 .venv/bin/python bench/explore/timing.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

from common import median_ms, module

from wasmer_sdk import Package, PackageCommandDefinition, PackageDefinition, Sandbox, Wasmer


async def spawn_ms(sandbox: Sandbox, pkg: Package, runs: int = 50) -> float:
    """The median time of `spawn()` alone; each process is waited for outside the timing."""
    samples = []
    for _ in range(runs + 5):
        started = time.perf_counter()
        process = await sandbox.command(pkg).spawn(stdout="discard", stderr="discard")
        samples.append((time.perf_counter() - started) * 1000)
        await process.wait()
    return statistics.median(samples[5:])


async def main() -> None:
    hello = module("hello")
    definition = PackageDefinition(modules={"hello": hello}, commands={"hello": PackageCommandDefinition(module="hello")})
    with tempfile.TemporaryDirectory() as cache:
        async with Wasmer(cache_root=cache) as wasmer:
            pkg = await wasmer.packages.load(hello)
            results = {
                "packages.load(bytes)": await median_ms(lambda: wasmer.packages.load(hello)),
                "packages.create(definition)": await median_ms(lambda: wasmer.packages.create(definition)),
            }

            async def new_sandbox() -> None:
                sandbox = await wasmer.sandboxes.create(packages=[pkg])
                await sandbox.close()

            results["sandboxes.create+close (1 package)"] = await median_ms(new_sandbox)

            async def new_sandbox_bytes() -> None:
                sandbox = await wasmer.sandboxes.create(packages=[hello])
                await sandbox.close()

            results["sandboxes.create(packages=[bytes])+close"] = await median_ms(new_sandbox_bytes)
            async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                command = sandbox.command(pkg)

                results["spawn only (then waited, untimed)"] = await spawn_ms(sandbox, pkg)
                results["command(pkg).run() reused sandbox"] = await median_ms(lambda: sandbox.command(pkg).run())
                results["same Command object .run() again"] = await median_ms(lambda: command.run())

                async def spawn_wait_pipe() -> None:
                    process = await sandbox.command(pkg).spawn()
                    async for _ in process.stdout.lines():  # type: ignore[union-attr]
                        pass
                    await process.wait()

                results["spawn(pipe)+read stdout+wait reused sandbox"] = await median_ms(spawn_wait_pipe)

            async def full_run_fresh_sandbox() -> None:
                async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                    await sandbox.command(pkg).run()

            results["fresh sandbox + run, loaded package"] = await median_ms(full_run_fresh_sandbox)

            async def full_run_from_bytes() -> None:
                loaded = await wasmer.packages.load(hello)
                async with await wasmer.sandboxes.create(packages=[loaded]) as sandbox:
                    await sandbox.command(loaded).run()

            results["load bytes + fresh sandbox + run"] = await median_ms(full_run_from_bytes)

            async def full_run_from_definition() -> None:
                created = await wasmer.packages.create(definition)
                async with await wasmer.sandboxes.create(packages=[created]) as sandbox:
                    await sandbox.command(created).run()

            results["create definition + fresh sandbox + run"] = await median_ms(full_run_from_definition)
    for name, value in results.items():
        print(f"{name:48s} {value:8.3f} ms")


async def cold() -> None:
    """The first load+run in a fresh client and empty cache: the compile cost."""
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        async with Wasmer(cache_root=cache) as wasmer:
            created = time.perf_counter()
            pkg = await wasmer.packages.load(module("hello"))
            loaded = time.perf_counter()
            async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                await sandbox.command(pkg).run()
            ran = time.perf_counter()
    print(f"cold: Wasmer() {1000 * (created - started):.1f} ms, load {1000 * (loaded - created):.1f} ms, "
          f"first sandbox+run {1000 * (ran - loaded):.1f} ms")


if __name__ == "__main__":
    asyncio.run(cold())
    asyncio.run(main())
