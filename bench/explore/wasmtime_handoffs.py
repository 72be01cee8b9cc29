"""What a thread hand-over costs wasmtime instances when the threads may use every CPU vs one.

    timeout 300 .venv/bin/python bench/explore/wasmtime_handoffs.py

`http-hello` instantiated and run to its end, as an HTTP request's instance is, on the agent's
pooled engine (`wasmtime_pooling`), with no HTTP and no event loop; instances per second, median
of 3 rounds, for:
- `threads`: 1 or 8 threads, each instantiating and running its own instances (its Python code
  and its calls into wasmtime-py take and give back the GIL around each call);
- `split`: the main thread instantiates, 8 threads only run (one hand-over each way);
each on every CPU of the process and on one CPU (`sched_setaffinity`, inherited by the threads).
The gap between the two placements is what cross-CPU wake-ups cost (bench/RESULTS.md, "HTTP
handlers, quiet machine").
"""

from __future__ import annotations

import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

from common import MODULES

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nodeagent" / "src"))
from wasmlet.nodeagent.runtime.wasmtime_pooling import install_pooling  # noqa: E402

INSTANCES = 4000
ROUNDS = 3


def engine_and_pre() -> tuple[wasmtime.Engine, wasmtime.InstancePre]:
    config = wasmtime.Config()
    config.epoch_interruption = True
    install_pooling(config)
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    return engine, linker.instantiate_pre(wasmtime.Module.from_file(engine, str(MODULES / "http-hello.wasm")))


def instantiate(engine: wasmtime.Engine, pre: wasmtime.InstancePre) -> tuple[wasmtime.Store, wasmtime.Func]:
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    wasi = wasmtime.WasiConfig()
    wasi.env = [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]
    store.set_wasi(wasi)
    start = pre.instantiate(store).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    return store, start


def run(store: wasmtime.Store, start: wasmtime.Func) -> None:
    try:
        start(store)
    except wasmtime.ExitTrap:
        pass


def each_thread_alone(engine: wasmtime.Engine, pre: wasmtime.InstancePre, threads: int) -> float:
    def work() -> None:
        for _ in range(INSTANCES // threads):
            store, start = instantiate(engine, pre)
            run(store, start)
            store.close()

    began = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return INSTANCES / (time.perf_counter() - began)


def split(engine: wasmtime.Engine, pre: wasmtime.InstancePre, threads: int) -> float:
    jobs: queue.SimpleQueue[tuple[wasmtime.Store, wasmtime.Func] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[wasmtime.Store] = queue.SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            run(*job)
            done.put(job[0])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    started = finished = 0
    while finished < INSTANCES:
        while started - finished < threads and started < INSTANCES:
            jobs.put(instantiate(engine, pre))
            started += 1
        done.get().close()
        finished += 1
    rate = INSTANCES / (time.perf_counter() - began)
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        worker.join()
    return rate


def main() -> None:
    engine, pre = engine_and_pre()
    every = os.sched_getaffinity(0)
    print(f"CPUs: {sorted(every)}; {INSTANCES} instances per round, median of {ROUNDS} rounds")
    for placement, cpus in (("every CPU", every), ("one CPU", {min(every)})):
        os.sched_setaffinity(0, cpus)
        for name, measure, threads in (("threads", each_thread_alone, 1), ("threads", each_thread_alone, 8),
                                       ("split", split, 8)):
            rate = statistics.median(measure(engine, pre, threads) for _ in range(ROUNDS))
            print(f"{placement:9s}  {name:7s} x{threads}: {rate:8.0f} instances/s")
    os.sched_setaffinity(0, every)


if __name__ == "__main__":
    main()
