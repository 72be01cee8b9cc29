"""The wasmtime backend's limits, measured: CPU duty cycle, epoch overhead, stop latency, memory cap.

    timeout 300 .venv/bin/python bench/explore/wasmtime_limits.py

- `cpu 200000000` (about 0.4 s of CPU) at limits.cpu 1000m/500m/250m/100m: wall time, the
  module thread's CPU time, and their ratio (the duty cycle it got; the limit asks for the
  value in millicores / 1000);
- the same module unlimited while the epoch clock ticks (another instance holds a CPU limit)
  and while it does not: the cost of epoch checks and deadline callbacks;
- `stop(0)`/`stop(0.5)` on a busy `loop` and on a sleeping `ticker --interval-ms 60000`;
- `grow 1024` under limits.memory 64Mi: how far it got and how it ended, and host RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import MODULES, rss_kib

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nodeagent" / "src"))
from wasmlet.nodeagent.runtime import RunSpec  # noqa: E402
from wasmlet.nodeagent.runtime.wasmtime import WasmtimeRuntime  # noqa: E402


def spec(name: str, *args: str, **fields: object) -> RunSpec:
    path = MODULES / f"{name}.wasm"
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return RunSpec("pod", name, path, digest, [name, *args], {}, **fields)  # type: ignore[arg-type]


def discard(stream: str, data: bytes) -> None:
    return None


async def timed_run(runtime: WasmtimeRuntime, run_spec: RunSpec) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one run to exit."""
    cpu, started = time.process_time(), time.monotonic()
    await (await runtime.start(run_spec, discard)).wait()
    return time.monotonic() - started, time.process_time() - cpu


async def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        runtime = WasmtimeRuntime(Path(cache))
        await runtime.prepare(spec("cpu").module_path, spec("cpu").module_digest)
        for millicores in (None, 1000, 500, 250, 100):
            limit = millicores / 1000 if millicores else None
            runs = [await timed_run(runtime, spec("cpu", "200000000", cpu_limit=limit)) for _ in range(3)]
            wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            print(f"cpu limit {millicores or 'none'}: wall {wall:.3f} s, CPU {cpu:.3f} s, duty cycle {cpu / wall:.2f}")
        quiet = [(await timed_run(runtime, spec("cpu", "200000000")))[0] for _ in range(5)]
        holder = await runtime.start(spec("loop", cpu_limit=0.01), discard)  # keeps the epoch clock ticking
        ticking = [(await timed_run(runtime, spec("cpu", "200000000")))[0] for _ in range(5)]
        await holder.stop(0)
        print(f"unlimited cpu, clock idle: {statistics.median(quiet):.3f} s; clock ticking: "
              f"{statistics.median(ticking):.3f} s")
        for name, args in (("loop", ()), ("ticker", ("--interval-ms", "60000"))):
            for grace in (0.0, 0.5):
                instance = await runtime.start(spec(name, *args), discard)
                await asyncio.sleep(0.2)
                started = time.monotonic()
                status = await instance.stop(grace)
                print(f"stop({grace}) of {name}: {time.monotonic() - started:.3f} s → {status}")
        before = rss_kib()
        started = time.monotonic()
        status = await (await runtime.start(spec("grow", "1024", memory_limit_bytes=64 << 20), discard)).wait()
        print(f"grow 1024 at limits.memory 64Mi: {time.monotonic() - started:.3f} s → {status}; "
              f"RSS after {rss_kib() - before:+} KiB")
        await runtime.close()


asyncio.run(main())
