"""Both runtime backends side by side, through the agent's own `Runtime` interface.

    timeout 900 .venv/bin/python bench/runtimes.py [--instances 300] [--rounds 3] [--record]
    timeout 1800 .venv/bin/python bench/runtimes.py --before CHECKOUT [--instances 50] [--record]

Each round runs every backend in a fresh subprocess (so resident memory is that backend's
alone, and wasmer-sdk's exit-time abort cannot touch the others), one after the other. Figures:
- cold start: `start()` of `hello` in a new backend with an empty compiled-module cache, and
  again in another new backend over the cache the first one wrote (an agent restart);
- warm start: `start()` returning, and `start()` + `wait()` of `hello`, median of 50 (one Pod);
- a new Pod: `start()` + `wait()` of `hello` in a Pod the backend has not seen, 0.3 s apart
  (wasmer: a worker process per Pod, taken from the spare the previous start left), median of 10;
- instances: N `ticker`s (a line a second, each its own Pod) started at once: time to start them
  all, how many printed at least two lines in the next 2.5 s, RSS of the bench process, PSS of
  it and its children (wasmer's worker processes) and threads per instance, time to stop all;
- CPU: `cpu` (1e8 rounds of a mixing function) start to exit, median of 3; wasmtime also at
  `limits.cpu: 500m`.
The table shows the median over rounds and the ratio wasmtime / wasmer; with `--before
CHECKOUT`, the wasmer of that checkout (its sources first on PYTHONPATH) beside this one's and
the ratio this / before, to price a change of the backend. `--record` appends it to
bench/RESULTS.md with the machine it ran on.
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

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "examples" / "modules"
BACKENDS = ("wasmer", "wasmtime")


def pss_kib(pid: int | str = "self") -> int:
    """Proportional set size of a process and of all its descendants (wasmer's fork server and
    workers): what running instances cost the node, shared pages counted once between them."""
    total = 0
    pids, queue = [], [str(os.getpid() if pid == "self" else pid)]
    while queue:
        one = queue.pop()
        pids.append(one)
        queue.extend(_children(one))
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _children(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def status_field(name: str) -> int:
    """A number from /proc/self/status (VmRSS in KiB, Threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def spec(name: str, *args: str, container: str = "c", **fields: Any) -> Any:
    from wasmlet.nodeagent.runtime import RunSpec

    path = MODULES / f"{name}.wasm"
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return RunSpec(f"pod-{container}", container, path, digest, [name, *args], {}, **fields)


def discard(stream: str, data: bytes) -> None:
    return None


async def timed(action: Any) -> float:
    started = time.perf_counter()
    await action
    return (time.perf_counter() - started) * 1000


async def worker(backend: str, instances: int) -> dict[str, float]:
    """One backend's figures, in this (fresh) process."""
    from wasmlet.nodeagent.runtime import load_backend

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wasmlet-bench-") as cache:
        for label in ("cold_start_ms", "restart_start_ms"):
            runtime = load_backend(backend, Path(cache))
            started = time.perf_counter()
            instance = await runtime.start(spec("hello"), discard)
            out[label] = (time.perf_counter() - started) * 1000
            await instance.wait()
            await runtime.close()
        runtime = load_backend(backend, Path(cache))
        starts, runs = [], []
        for _ in range(55):
            started = time.perf_counter()
            instance = await runtime.start(spec("hello"), discard)
            starts.append((time.perf_counter() - started) * 1000)
            await instance.wait()
            runs.append((time.perf_counter() - started) * 1000)
        out["warm_start_ms"], out["warm_run_ms"] = statistics.median(starts[5:]), statistics.median(runs[5:])
        fresh = []
        for i in range(11):  # a new Pod each time, after a pause (as Pods arrive one by one)
            await asyncio.sleep(0.3)
            fresh.append(await timed(_run(runtime, spec("hello", container=f"new{i}"))))
            await runtime.release(f"pod-new{i}")
        out["new_pod_run_ms"] = statistics.median(fresh[1:])
        cpu = [await timed(_run(runtime, spec("cpu"))) for _ in range(3)]
        out["cpu_ms"] = statistics.median(cpu)
        if backend == "wasmtime":
            out["cpu_500m_ms"] = await timed(_run(runtime, spec("cpu", cpu_limit=0.5)))
        out.update(await _many(runtime, instances))
        await runtime.close()
    return out


async def _run(runtime: Any, run_spec: Any) -> None:
    instance = await runtime.start(run_spec, discard)
    await instance.wait()


async def _many(runtime: Any, count: int) -> dict[str, float]:
    lines = [0] * count

    def sink(index: int) -> Any:
        return lambda stream, data: lines.__setitem__(index, lines[index] + data.count(b"\n"))

    await asyncio.sleep(0.5)
    rss, threads, pss = status_field("VmRSS"), status_field("Threads"), pss_kib()
    started = time.perf_counter()
    running = [await runtime.start(spec("ticker", container=f"t{i}"), sink(i)) for i in range(count)]
    spawn_s = time.perf_counter() - started
    await asyncio.sleep(0.5)
    before = list(lines)
    await asyncio.sleep(2.5)
    live = sum(1 for i in range(count) if lines[i] - before[i] >= 2)
    out = {"instances": count, "spawn_all_s": spawn_s, "live": live,
           "rss_per_instance_kib": (status_field("VmRSS") - rss) / count,
           "threads_per_instance": (status_field("Threads") - threads) / count,
           "pss_per_instance_kib": (pss_kib() - pss) / count}
    started = time.perf_counter()
    await asyncio.gather(*(instance.stop(0) for instance in running))
    out["stop_all_s"] = time.perf_counter() - started
    return out


ROWS = [
    ("cold start, empty compiled cache (ms)", "cold_start_ms", 1),
    ("cold start, cache from a previous run (ms)", "restart_start_ms", 1),
    ("warm `start()` (ms, median of 50)", "warm_start_ms", 2),
    ("warm start + run `hello` to exit (ms, median of 50)", "warm_run_ms", 2),
    ("a new Pod's start + run `hello` to exit (ms, median of 10)", "new_pod_run_ms", 2),
    ("`cpu` 1e8 rounds, start to exit (ms)", "cpu_ms", 0),
    ("`cpu` at limits.cpu 500m (ms)", "cpu_500m_ms", 0),
    ("tickers started at once", "instances", 0),
    ("time to start them all (s)", "spawn_all_s", 2),
    ("live after start (≥ 2 lines in 2.5 s)", "live", 0),
    ("RSS per running instance, agent process only (KiB)", "rss_per_instance_kib", 0),
    ("PSS per running instance, agent + worker processes (KiB)", "pss_per_instance_kib", 0),
    ("OS threads per running instance", "threads_per_instance", 2),
    ("time to stop them all (s)", "stop_all_s", 2),
]


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """Medians per column; the last column compares wasmtime (or, with a `before` column, the
    worker-process wasmer) against the first column."""
    columns = list(results)
    lines = [f"| figure | {' | '.join(columns)} | {columns[-1]} / {columns[0]} |", "|---|" + "---|" * len(columns) + "---|"]
    for label, key, digits in ROWS:
        cells = []
        for column in columns:
            values = [r[key] for r in results[column] if key in r]
            cells.append(statistics.median(values) if values else None)
        shown = [f"{c:.{digits}f}" if c is not None else "—" for c in cells]
        first, last = cells[0], cells[-1]
        ratio = f"{last / first:.2f}" if first and last is not None else "—"
        lines.append(f"| {label} | {' | '.join(shown)} | {ratio} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
    return f"{os.cpu_count()} CPUs (`nproc`), {memory} RAM (`free -h`), {cpu}, Python {sys.version.split()[0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--before", metavar="CHECKOUT",
                        help="compare wasmer with the wasmer of another checkout (e.g. a worktree of main) "
                             "instead of with wasmtime")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = asyncio.run(worker(args.worker, args.instances))
        print(json.dumps(result), flush=True)
        os._exit(0)  # wasmer-sdk can abort the interpreter at exit (docs/wasmer-sdk.md)
    # (column, backend, PYTHONPATH): `--before` adds wasmer from another checkout (its sources first
    # on the path), to compare a change with what it replaced in the same conditions.
    columns = [(b, b, "") for b in BACKENDS]
    if args.before:
        src = Path(args.before).resolve()
        columns = [("wasmer before", "wasmer", f"{src}/nodeagent/src:{src}/common/src"), columns[0]]
    results: dict[str, list[dict[str, float]]] = {c[0]: [] for c in columns}
    for round_ in range(args.rounds):
        for column, backend, path in columns:
            env = {**os.environ, "PYTHONPATH": path} if path else None
            done = subprocess.run([sys.executable, __file__, "--worker", backend, "--instances", str(args.instances)],
                                  capture_output=True, text=True, timeout=600, check=True, env=env)
            results[column].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {column}: {results[column][-1]}", file=sys.stderr)
    report = table(results)
    print(report)
    if args.record:
        command = f"timeout 900 .venv/bin/python bench/runtimes.py --instances {args.instances} --rounds {args.rounds}"
        command += " --before CHECKOUT" if args.before else ""
        with (ROOT / "bench" / "RESULTS.md").open("a") as handle:
            handle.write(f"\n## Runtimes: wasmer and wasmtime side by side ({dt.date.today()})\n\n"
                         f"- machine: {machine()}\n- command: `{command}`\n"
                         f"- medians over {args.rounds} rounds (each a fresh process per backend)\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
