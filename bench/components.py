"""WASI 0.2 components next to core modules on the wasmtime backend, through its `Runtime` interface.

    timeout 1500 .venv/bin/python bench/components.py [--rounds 3] [--record]

Three binaries run the same kind of work: the core module `examples/modules/echo.wasm` (and
`ticker.wasm` for running instances), the same C programs as components through jco's
preview1 adapter (`examples/components/`), and the Python component `hello-py` (componentize-py;
`make modules` builds it into examples/components/build/). Each round runs each kind in a fresh
subprocess (so resident memory is that kind's alone). Figures:
- cold start: `start()` in a new backend with an empty compiled cache (it compiles);
- after restart: `start()` in another new backend over the cache the first one wrote;
- warm: `start()` returning, and `start()` + `wait()` to exit, medians of 20;
- RSS per running instance: N long-running instances (`ticker`; `hello-py sleep`) started,
  resident memory growth divided by N.
The Python component is measured twice: as is, and under `limits.memory` (which moves it to the
engine whose memories the agent allocates, without copy-on-write: docs/runtimes.md).
The table shows the median over rounds; `--record` appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtimes import machine, status_field

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / "examples/components/build/hello-py.wasm"
# kind: (binary that runs to exit and its argv, long-running binary and its argv, instances)
KINDS: dict[str, tuple[Path, list[str], Path, list[str], int]] = {
    "core module (C)": (ROOT / "examples/modules/echo.wasm", ["echo", "a"],
                        ROOT / "examples/modules/ticker.wasm", ["ticker"], 100),
    "component (C, adapted)": (ROOT / "examples/components/echo.wasm", ["echo", "a"],
                               ROOT / "examples/components/ticker.wasm", ["ticker"], 100),
    "component (Python)": (PYTHON, ["hello-py"], PYTHON, ["hello-py", "sleep", "60"], 20),
    # The same under limits.memory: the engine whose memories the agent allocates (no copy-on-write).
    "component (Python), limits.memory 256Mi": (PYTHON, ["hello-py"], PYTHON, ["hello-py", "sleep", "60"], 20),
}
MEMORY_LIMITED = {"component (Python), limits.memory 256Mi": 256 * 1024 * 1024}


_digests: dict[Path, str] = {}


def spec(path: Path, argv: list[str], container: str = "c", memory: int | None = None) -> Any:
    """A RunSpec; the binary's digest is computed once (hashing 18 MB is not part of a start)."""
    from wasmlet.nodeagent.runtime import RunSpec

    if path not in _digests:
        _digests[path] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return RunSpec(f"pod-{container}", container, path, _digests[path], argv, {}, memory_limit_bytes=memory)


def discard(stream: str, data: bytes) -> None:
    return None


async def worker(kind: str) -> dict[str, float]:
    """One kind's figures, in this (fresh) process."""
    from wasmlet.nodeagent.runtime import load_backend

    run_path, run_argv, live_path, live_argv, count = KINDS[kind]
    memory = MEMORY_LIMITED.get(kind)
    out: dict[str, float] = {"size_kib": run_path.stat().st_size / 1024}
    spec(run_path, run_argv, memory=memory)
    spec(live_path, live_argv)
    with tempfile.TemporaryDirectory(prefix="wasmlet-bench-") as cache:
        for label in ("cold_start_ms", "restart_start_ms"):
            runtime = load_backend("wasmtime", Path(cache))
            started = time.perf_counter()
            instance = await runtime.start(spec(run_path, run_argv, memory=memory), discard)
            out[label] = (time.perf_counter() - started) * 1000
            await instance.wait()
            await runtime.close()
        runtime = load_backend("wasmtime", Path(cache))
        starts, runs = [], []
        for _ in range(23):
            started = time.perf_counter()
            instance = await runtime.start(spec(run_path, run_argv, memory=memory), discard)
            starts.append((time.perf_counter() - started) * 1000)
            await instance.wait()
            runs.append((time.perf_counter() - started) * 1000)
        out["warm_start_ms"], out["warm_run_ms"] = statistics.median(starts[3:]), statistics.median(runs[3:])
        await runtime.start(spec(live_path, live_argv, "warm", memory), discard)  # compiled before RSS is taken
        await asyncio.sleep(1.0)
        rss = status_field("VmRSS")
        for i in range(count):
            await runtime.start(spec(live_path, live_argv, f"t{i}", memory), discard)
        await asyncio.sleep(2.0)
        out["instances"] = count
        out["rss_per_instance_kib"] = (status_field("VmRSS") - rss) / count
    return out


ROWS = [
    ("binary size (KiB)", "size_kib", 0),
    ("cold start: compile, empty cache (ms)", "cold_start_ms", 1),
    ("start after an agent restart: compiled cache (ms)", "restart_start_ms", 1),
    ("warm `start()` (ms, median of 20)", "warm_start_ms", 2),
    ("warm start + run to exit (ms, median of 20)", "warm_run_ms", 2),
    ("running instances measured", "instances", 0),
    ("RSS per running instance (KiB)", "rss_per_instance_kib", 0),
]


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| figure | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for label, key, digits in ROWS:
        cells = [statistics.median([r[key] for r in runs]) for runs in results.values()]
        lines.append(f"| {label} | " + " | ".join(f"{c:.{digits}f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="the kinds to measure")
    parser.add_argument("--worker", choices=list(KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker))), flush=True)
        os._exit(0)  # the long-running instances are not waited for
    if not KINDS["component (Python)"][0].exists():
        print("examples/components/build/hello-py.wasm is missing: run `make modules`", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in args.kinds}
    for round_ in range(args.rounds):
        for kind in args.kinds:
            done = subprocess.run([sys.executable, __file__, "--worker", kind], capture_output=True, text=True,
                                  timeout=600, check=True)
            results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
    report = table(results)
    print(report)
    if args.record:
        kinds = "" if args.kinds == list(KINDS) else " --kinds " + " ".join(f"'{kind}'" for kind in args.kinds)
        command = f"timeout 1500 .venv/bin/python bench/components.py --rounds {args.rounds}{kinds}"
        with (ROOT / "bench" / "RESULTS.md").open("a") as handle:
            handle.write(f"\n## Components next to core modules on wasmtime ({dt.date.today()})\n\n"
                         f"- machine: {machine()}\n- command: `{command}`\n"
                         f"- medians over {args.rounds} rounds (each a fresh process per kind)\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
