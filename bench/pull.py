"""Module pull + compile + start: cold, warm, and warm after an agent restart, for 1 MB and 10 MB modules.

The modules are generated (WAT → wasm): ~80 % code, so compiling is real work, and ~20 % random
data, so nothing compresses. Each is pushed with `wasmlet push` to the real registry (Debian's
`docker-registry`, on loopback) and then taken through the agent's own pieces, in process:
`ModuleCache.fetch` (OCI pull into the content-addressed store) → `Runtime.prepare` (compile, or
load the compiled module from the runtime's cache) → `Runtime.start` + `wait` (the module
writes one line and exits).

- cold: empty module store, empty compiled cache: download + verify + compile + first start.
- warm: the same agent starts the module again (store hit, compiled module in memory).
- restart: a new agent process on the same state dir (store hit, compiled module from disk).

Usage: python bench/pull.py [--runs 5] [--runtimes wasmer,wasmtime]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

from common import machine, median  # first: it puts the checkout on sys.path for tests.fixtures

import wasmtime

from wasmlet.cli.push import push_module
from wasmlet.nodeagent.main import exit_now
from wasmlet.nodeagent.modules import ModuleCache
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.oci.client import RegistryState
from wasmlet.nodeagent.oci.reference import parse_reference
from wasmlet.nodeagent.podspec import ModuleRef
from wasmlet.nodeagent.runtime import RunSpec, Runtime, load_backend

from tests.fixtures.registry import start_registry

SIZES = {"1 MB": 1 << 20, "10 MB": 10 << 20}
STATEMENTS = 200  # per generated function
BYTES_PER_STATEMENT = 12.4  # measured: what one `local.set (i32.add (i32.mul …))` costs in binary


def generate(size: int) -> bytes:
    """A WASI module of about `size` bytes that prints `hello` and exits 0."""
    data_bytes = size // 5
    body = " ".join(f"(local.set $x (i32.add (i32.mul (local.get $x) (i32.const {i * 7919 % 100000 + 3})) "
                    f"(i32.const {i})))" for i in range(STATEMENTS))
    functions = " ".join(f"(func $f{n} (param $x i32) (result i32) {body} (local.get $x))"
                         for n in range(int((size - data_bytes) / (STATEMENTS * BYTES_PER_STATEMENT))))
    data = "".join(f"\\{byte:02x}" for byte in os.urandom(data_bytes))
    return wasmtime.wat2wasm(f'''(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") {data_bytes // 65536 + 2})
      (data (i32.const 64) "hello\\n") (data (i32.const 1024) "{data}") {functions}
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 6))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))''')


async def start(modules: ModuleCache, runtime: Runtime, image: str, pod: str) -> tuple[float, float, float]:
    """One Pod's way to its module's first exit: (pull, compile, start-to-exit) in milliseconds."""
    t0 = time.perf_counter()
    module = await modules.fetch(ModuleRef("oci", image), "default", holder=pod)
    t1 = time.perf_counter()
    await runtime.prepare(module.path, module.digest)
    t2 = time.perf_counter()
    output: list[bytes] = []
    spec = RunSpec(pod_uid=pod, container="main", module_path=module.path, module_digest=module.digest,
                   argv=["main"], env={})
    instance = await runtime.start(spec, lambda stream, data: output.append(data))
    status = await instance.wait()
    t3 = time.perf_counter()
    assert status.exit_code == 0 and b"hello" in b"".join(output), (status, output)
    await runtime.release(pod)
    modules.release(pod)
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000


async def one_run(image: str, runtime_name: str, state: Path) -> dict[str, tuple[float, float, float]]:
    results = {}
    modules = ModuleCache(state / "modules", StaticObjects(), 256 << 20)
    runtime = await asyncio.to_thread(load_backend, runtime_name, state / "runtimes")
    results["cold"] = await start(modules, runtime, image, "pod-cold")
    results["warm"] = await start(modules, runtime, image, "pod-warm")
    await runtime.close()
    modules = ModuleCache(state / "modules", StaticObjects(), 256 << 20)  # the agent restarted
    runtime = await asyncio.to_thread(load_backend, runtime_name, state / "runtimes")
    results["restart"] = await start(modules, runtime, image, "pod-restart")
    await runtime.close()
    return results


def row(label: str, samples: list[tuple[float, float, float]]) -> str:
    pull, compile_, run = (median([s[i] for s in samples]) for i in range(3))
    return f"| {label} | {pull:.1f} | {compile_:.1f} | {run:.1f} | **{pull + compile_ + run:.1f}** |"


async def main(runs: int, runtimes: list[str]) -> None:
    print(f"machine: {machine()}; {dt.date.today()}; python bench/pull.py --runs {runs}")
    with tempfile.TemporaryDirectory(prefix="wasmlet-pull-") as scratch, start_registry(Path(scratch) / "registry") as registry:
        for label, size in SIZES.items():
            wasm = generate(size)
            ref = parse_reference(f"{registry.host}/bench/module-{size}:v1")
            await push_module(wasm, ref, None, RegistryState())
            print(f"\n{label} module: {len(wasm)} bytes; medians of {runs} runs, milliseconds\n")
            for name in runtimes:
                samples: dict[str, list[tuple[float, float, float]]] = {}
                for n in range(runs):
                    result = await one_run(str(ref), name, Path(scratch) / f"{name}-{size}-{n}")
                    for kind, sample in result.items():
                        samples.setdefault(kind, []).append(sample)
                print(f"| {name} | pull | compile | start → exit | total |\n|---|---|---|---|---|")
                for kind, values in samples.items():
                    print(row(kind, values))
                print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtimes", default="wasmer,wasmtime")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.runtimes.split(",")))
    sys.exit(exit_now(0))
