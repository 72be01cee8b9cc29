"""Resident memory of wasmer-sdk alone under churn: many short processes, as the agent's Pods run them.

    timeout 600 .venv/bin/python bench/explore/churn_memory.py --runs 50000
    timeout 600 .venv/bin/python bench/explore/churn_memory.py --runs 50000 --layout shared-sandbox --kinds hello
    timeout 600 .venv/bin/python bench/explore/churn_memory.py --runs 40000 --new-client-every 10000
    GLIBC_TUNABLES=glibc.malloc.tcache_count=0 timeout 600 .venv/bin/python bench/explore/churn_memory.py --runs 50000
    LD_PRELOAD=/lib/x86_64-linux-gnu/libjemalloc.so.2 timeout 600 .venv/bin/python bench/explore/churn_memory.py

Runs go in rounds of 20 at once: `hello` runs to its end, `ticker` is terminated after 50 ms, both
with piped output read live (as the wasmer backend does). `--layout`: a sandbox per run (the
backend's sandbox per Pod), one sandbox for every run, or sandboxes created and closed without a
run. Every `--every` runs it prints RSS, then RSS after glibc's `malloc_trim(0)`: what the trim
gives back was free but held by the allocator. `--new-client-every` closes the client and opens
a new one (does closing a client give its memory back?).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
from pathlib import Path
from typing import Any

from common import CACHE_ROOT, module, rss_kib, threads

from wasmer_sdk import PackageCommandDefinition, PackageDefinition, Wasmer


def anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def memory() -> str:
    before = f"rss {rss_kib() / 1024:6.1f} MiB anon {anon_kib() / 1024:5.1f}"
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return f"{before}; after malloc_trim rss {rss_kib() / 1024:6.1f} anon {anon_kib() / 1024:5.1f}; threads {threads()}"


async def drain(stream: Any) -> None:
    if stream is not None:
        async for _ in stream:
            pass


class Churn:
    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.client: Any = None
        self.packages: dict[str, Any] = {}
        self.shared: dict[str, tuple[Any, Any]] = {}

    async def open(self) -> None:
        self.client = Wasmer(cache_root=CACHE_ROOT)
        self.shared = {}
        for name in ("hello", "ticker"):
            definition = PackageDefinition(modules={"m": module(name)}, commands={name: PackageCommandDefinition(module="m")})
            self.packages[name] = await self.client.packages.create(definition)

    async def close(self) -> None:
        for sandbox, _ in self.shared.values():
            await sandbox.close()
        await self.client.close()

    async def run(self, kind: str) -> None:
        if self.layout == "shared-sandbox":
            if kind not in self.shared:
                sandbox = await self.client.sandboxes.create(network="disabled")
                self.shared[kind] = (sandbox, await sandbox.install_package(self.packages[kind]))
            sandbox, package = self.shared[kind]
        else:
            sandbox = await self.client.sandboxes.create(network="disabled")
            package = await sandbox.install_package(self.packages[kind])
            if self.layout == "sandbox-only":
                await sandbox.close()
                return
        args = ["--interval-ms", "100"] if kind == "ticker" else []
        process = await sandbox.command(package, args).spawn(stdout="pipe", stderr="pipe", output_bytes=0)
        pumps = asyncio.gather(drain(process.stdout), drain(process.stderr))
        if kind == "ticker":
            await asyncio.sleep(0.05)
            await process.terminate(grace_period=0.001)
        await process.wait()
        await pumps
        if self.layout == "sandbox-per-run":
            await sandbox.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50000)
    parser.add_argument("--every", type=int, default=5000)
    parser.add_argument("--layout", choices=("sandbox-per-run", "shared-sandbox", "sandbox-only"), default="sandbox-per-run")
    parser.add_argument("--kinds", default="hello,ticker")
    parser.add_argument("--new-client-every", type=int, default=0)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    churn = Churn(args.layout)
    await churn.open()
    print(f"{args.layout}, {'+'.join(kinds)}, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}\n       0 runs: {memory()}", flush=True)
    for done in range(20, args.runs + 1, 20):
        await asyncio.gather(*(churn.run(kinds[i % len(kinds)]) for i in range(20)))
        if args.new_client_every and done % args.new_client_every == 0:
            await churn.close()
            await churn.open()
        if done % args.every == 0:
            print(f"{done:8d} runs: {memory()}", flush=True)
    await churn.close()
    os._exit(0)  # wasmer-sdk may abort the interpreter at exit (exit_abort.py)


if __name__ == "__main__":
    asyncio.run(main())
