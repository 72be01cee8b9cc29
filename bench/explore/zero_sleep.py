"""A zero-length sleep (poll_oneoff with a 0 ns clock timeout) never returns under wasmer-sdk 0.5;
1 ns does, and wasmtime returns from 0 ns at once. This is why `ticker --interval-ms 0` does
not sleep at all.

    timeout 60 .venv/bin/python bench/explore/zero_sleep.py
"""

from __future__ import annotations

import asyncio
import time

from common import CACHE_ROOT

import wasmtime
from wasmer_sdk import Wasmer


def sleeper(timeout_ns: int) -> bytes:
    """A command that sleeps `timeout_ns` on the monotonic clock, then prints `woke`."""
    # The subscription at offset 64: userdata (u64), tag 0 = clock (u8 at +8), clock id (u32 at
    # +16, 1 = monotonic), timeout (u64 at +24), precision (u64 at +32), flags (u16 at +40).
    return bytes(wasmtime.wat2wasm(f'''(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "\\10\\00\\00\\00\\05\\00\\00\\00")
      (data (i32.const 16) "woke\\n")
      (func (export "_start")
        (i32.store (i32.const 80) (i32.const 1))
        (i64.store (i32.const 88) (i64.const {timeout_ns}))
        (drop (call $poll (i32.const 64) (i32.const 256) (i32.const 1) (i32.const 512)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))'''))


async def main() -> None:
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        for timeout_ns in (0, 1, 1_000_000):
            pkg = await wasmer.packages.load(sleeper(timeout_ns))
            async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                started = time.perf_counter()
                output = await sandbox.command(pkg).run(timeout=3, check=False)
                print(f"wasmer   sleep {timeout_ns:>7} ns: {output.reason.value}, stdout {output.stdout.bytes!r}, "
                      f"{1000 * (time.perf_counter() - started):.1f} ms")
    engine = wasmtime.Engine()
    for timeout_ns in (0, 1_000_000):
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        start = linker.instantiate(store, wasmtime.Module(engine, sleeper(timeout_ns))).exports(store)["_start"]
        started = time.perf_counter()
        start(store)  # type: ignore[operator]
        print(f"wasmtime sleep {timeout_ns:>7} ns: returned after {1000 * (time.perf_counter() - started):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
