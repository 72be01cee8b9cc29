"""wasmtime-py: how to stream a module's stdout into the agent — pipe vs the binding's callback.

    timeout 120 .venv/bin/python bench/explore/wasmtime_output.py

- pipe: `WasiConfig.stdout_file = /proc/self/fd/N` (the write end of an os.pipe()); the event
  loop reads the other end with `add_reader` (what the backend does).
- callback: `WasiConfig.stdout_custom = fn`; fn hands each write to the loop with
  `call_soon_threadsafe`.
For each: when lines of `ticker --interval-ms 100 --count 5` arrive (live?), and the time and
CPU to move `ticker --interval-ms 0 --count 300000` (3.5 MB, one write per line).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

from common import MODULES

import wasmtime

ENGINE = wasmtime.Engine()
TICKER = wasmtime.Module.from_file(ENGINE, str(MODULES / "ticker.wasm"))


def run(argv: list[str], configure: Callable[[wasmtime.WasiConfig], None]) -> None:
    store = wasmtime.Store(ENGINE)
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    configure(wasi)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    try:
        linker.instantiate(store, TICKER).exports(store)["_start"](store)
    except wasmtime.ExitTrap:
        pass
    store.close()


async def via_pipe(argv: list[str]) -> list[tuple[float, int]]:
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    got: list[tuple[float, int]] = []
    done = loop.create_future()
    started = time.monotonic()

    def readable() -> None:
        data = os.read(read_end, 65536)
        if data:
            got.append((time.monotonic() - started, len(data)))
        else:
            loop.remove_reader(read_end)
            os.close(read_end)
            done.set_result(None)

    def configure(wasi: wasmtime.WasiConfig) -> None:
        wasi.stdout_file = f"/proc/self/fd/{write_end}"
        os.close(write_end)

    loop.add_reader(read_end, readable)
    thread = threading.Thread(target=run, args=(argv, configure))
    thread.start()
    await done
    thread.join()
    return got


async def via_callback(argv: list[str]) -> list[tuple[float, int]]:
    loop = asyncio.get_running_loop()
    got: list[tuple[float, int]] = []
    started = time.monotonic()

    def deliver(data: bytes) -> None:
        got.append((time.monotonic() - started, len(data)))

    def write(data: bytes) -> None:  # must return None (or the count written): anything else aborts wasmtime
        loop.call_soon_threadsafe(deliver, data)

    def configure(wasi: wasmtime.WasiConfig) -> None:
        wasi.stdout_custom = write

    await asyncio.to_thread(run, argv, configure)
    await asyncio.sleep(0.1)
    return got


async def main() -> None:
    for name, mode in (("pipe", via_pipe), ("callback", via_callback)):
        got = await mode(["ticker", "--interval-ms", "100", "--count", "5"])
        print(f"{name}: lines arrived at (ms) {[round(at * 1000) for at, _ in got]}")
        cpu, started = time.process_time(), time.monotonic()
        got = await mode(["ticker", "--interval-ms", "0", "--count", "300000"])
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        size = sum(n for _, n in got)
        print(f"{name}: {size / 1e6:.1f} MB in {wall:.2f} s wall, {cpu:.2f} s CPU, {len(got)} reads, "
              f"{300000 / wall:,.0f} lines/s")
    os._exit(0)  # the callback mode leaves wasmtime's tokio threads calling into Python at exit


asyncio.run(main())
