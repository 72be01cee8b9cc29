"""Shared plumbing for the benchmarks: the test API, an agent process, RSS, percentiles, machine facts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test API lives in tests/fixtures

MODULES = ROOT / "examples" / "modules"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB, {cpu}, Python {platform.python_version()}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.asynccontextmanager
async def agent_process(*args: str, env: dict[str, str] | None = None,
                        cpus: set[int] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """`wasmlet-agent ARGS` as a child process (on `cpus` only, if given), stopped with SIGTERM
    (then killed) on exit."""
    log_path = os.environ.get("BENCH_AGENT_LOG")  # where the agent's log goes, for a failing run
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed once the child has it
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.nodeagent.main", *args,
        stdout=log, stderr=log, env={**os.environ, **(env or {})},
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    if log_path:
        log.close()
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
