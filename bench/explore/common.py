"""Helpers shared by the wasmer-sdk experiments: module bytes, medians, resident memory.

The experiments record facts in docs/wasmer-sdk.md; each script prints what it measured and
bounds itself in time (the callers also run them under `timeout`).
"""

from __future__ import annotations

import atexit
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"

# Wasmer() without cache_root writes .wasmer/ into the current directory (the checkout, when
# run from its root): the experiments pass this scratch directory instead.
CACHE_ROOT = tempfile.mkdtemp(prefix="wasmlet-explore-")
atexit.register(shutil.rmtree, CACHE_ROOT, ignore_errors=True)


def module(name: str) -> bytes:
    """The committed bytes of an example module (`hello` → examples/modules/hello.wasm)."""
    return (MODULES / f"{name}.wasm").read_bytes()


def rss_kib() -> int:
    """This process's resident set size in KiB (VmRSS from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def threads() -> int:
    """This process's thread count (the SDK runs a tokio runtime underneath)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads in /proc/self/status")


async def median_ms(action: Callable[[], Awaitable[object]], runs: int = 50, warmup: int = 5) -> float:
    """The median wall time of `action` in milliseconds, after `warmup` unmeasured runs."""
    for _ in range(warmup):
        await action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)
