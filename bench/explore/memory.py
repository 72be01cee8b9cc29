"""Linear memory under wasmer-sdk: is there any cap? `grow N` touches every page it grows.

    timeout 120 .venv/bin/python bench/explore/memory.py
"""

from __future__ import annotations

import asyncio
import time

from common import CACHE_ROOT, module, rss_kib

from wasmer_sdk import Wasmer


async def main() -> None:
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        pkg = await wasmer.packages.load(module("grow"))
        for mib in ("64", "1024", "4096"):
            async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                before = rss_kib()
                started = time.perf_counter()
                process = await sandbox.command(pkg, [mib]).spawn(output_bytes=1 << 16)
                peak = before
                while True:
                    try:
                        output = await asyncio.wait_for(asyncio.shield(process.wait()), timeout=0.05)
                        break
                    except TimeoutError:
                        peak = max(peak, rss_kib())
                elapsed = time.perf_counter() - started
                lines = output.stdout.text().splitlines() + output.stderr.text().splitlines()
                print(f"grow {mib}: exit {output.exit_code} after {elapsed:.2f} s; host RSS peak +{(peak - before) // 1024} MiB, "
                      f"after exit +{(rss_kib() - before) // 1024} MiB; last line: {lines[-1]!r}")


if __name__ == "__main__":
    asyncio.run(main())
