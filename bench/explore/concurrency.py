"""How many `ticker` processes run at once on one Wasmer(cache_root=CACHE_ROOT) client, and on several (shards).

    timeout 300 .venv/bin/python bench/explore/concurrency.py --processes 200 --clients 1
    timeout 300 .venv/bin/python bench/explore/concurrency.py --processes 2000 --clients 10 --layout shared

Each process prints a line every second; a reader task per process consumes its stdout (as the
agent's log pipeline would). A process counts as live when it printed at least 2 lines in a 3 s
window after all were spawned. Run one configuration per Python process: RSS and thread counts
are per process, and a stalled client does not recover.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import CACHE_ROOT, module, rss_kib, threads

from wasmer_sdk import Process, Sandbox, Wasmer

SPAWN_TIMEOUT_S = 10.0
WINDOW_S = 3.0


async def count_lines(process: Process, counts: list[int], index: int) -> None:
    """Count the lines `process` prints (the reader an agent's log pipeline would run)."""
    assert process.stdout is not None
    async for _ in process.stdout.lines():
        counts[index] += 1


async def main(processes: int, clients: int, layout: str) -> None:
    ticker = module("ticker")
    wasmers = [Wasmer(cache_root=CACHE_ROOT) for _ in range(clients)]
    packages = [await wasmer.packages.load(ticker) for wasmer in wasmers]
    shared: list[Sandbox] = [await w.sandboxes.create(packages=[p]) for w, p in zip(wasmers, packages, strict=True)]
    for sandbox, pkg in zip(shared, packages, strict=True):  # warm: compile once per client
        await sandbox.command(pkg, ["--count", "1"]).run()
    rss_before, threads_before = rss_kib(), threads()
    sandboxes: list[Sandbox] = []
    running: list[Process] = []
    readers: list[asyncio.Task[None]] = []
    counts = [0] * processes
    started = time.perf_counter()
    stalled_at = None
    for index in range(processes):
        shard = index % clients
        if layout == "shared":
            sandbox = shared[shard]
        else:
            sandbox = await wasmers[shard].sandboxes.create(packages=[packages[shard]])
            sandboxes.append(sandbox)
        try:
            process = await asyncio.wait_for(
                sandbox.command(packages[shard], ["--interval-ms", "1000"]).spawn(output_bytes=0), SPAWN_TIMEOUT_S)
        except TimeoutError:
            stalled_at = index
            break
        running.append(process)
        readers.append(asyncio.create_task(count_lines(process, counts, index)))
    spawn_s = time.perf_counter() - started
    await asyncio.sleep(1.5)
    snapshot = list(counts)
    await asyncio.sleep(WINDOW_S)
    live = sum(1 for before, after in zip(snapshot, counts, strict=True) if after - before >= 2)
    rss_after, threads_after = rss_kib(), threads()
    per_instance = (rss_after - rss_before) / max(1, len(running))
    print(f"processes={processes} clients={clients} layout={layout}: spawned {len(running)} in {spawn_s:.2f} s"
          f"{f' (spawn #{stalled_at} hung > {SPAWN_TIMEOUT_S:.0f} s)' if stalled_at is not None else ''}; "
          f"live {live}/{len(running)}; RSS +{(rss_after - rss_before) / 1024:.1f} MiB "
          f"({per_instance:.0f} KiB/instance); threads {threads_before} -> {threads_after}", flush=True)
    stop_started = time.perf_counter()
    for process in running:
        await process.kill()
    done, pending = await asyncio.wait(readers, timeout=20)
    for task in pending:
        task.cancel()
    print(f"  kill all: readers finished {len(done)}/{len(readers)} in {time.perf_counter() - stop_started:.2f} s", flush=True)
    for sandbox in sandboxes + shared:
        await asyncio.wait_for(sandbox.close(), 10)
    for wasmer in wasmers:
        await asyncio.wait_for(wasmer.close(), 10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--layout", choices=["shared", "per-process"], default="shared",
                        help="one sandbox per client shared by its processes, or a sandbox per process")
    options = parser.parse_args()
    asyncio.run(main(options.processes, options.clients, options.layout))
