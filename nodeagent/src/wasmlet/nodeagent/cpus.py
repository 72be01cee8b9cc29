"""Where the agent's threads run: the event loop's thread on one CPU, the short work it hands to
other threads beside it, and everything else on every CPU the agent may use.

An HTTP request runs a module instance on a thread of its own, and that thread and the loop's
hand the request, and Python's GIL, back and forth dozens of times per request. When the two
threads sit on different CPUs, each hand-over is a cross-CPU wake-up, which costs far more than
the work it hands over: unpinned, an agent served ~1,000 requests/s with the loop's thread half
idle; with the loop and the request threads on one CPU, ~2,500/s (docs/http.md). So:

- `pin()` keeps the loop's thread on the CPU it runs on (the loop never uses more than one);
- `beside_loop()` puts a thread about to run an HTTP request's instance on the loop's CPU;
  `spread_thread()` moves it to every CPU once the request runs longer than `SHORT_SECONDS`,
  so a CPU-heavy handler never takes the loop's CPU from it;
- `spread()` keeps long work (a long-running module, the default executor's threads, the
  wasmer fork server and its workers) on every CPU, as it would be without any of this;
- `balance()` moves the loop (and what runs beside it) to a quieter CPU when it waits for its
  own: the scheduler can no longer do that for a pinned thread.

A thread inherits the affinity of the thread that starts it, so every place that starts threads
or processes from the loop says where they belong. With one CPU, or `event_loop_cpu: any`,
nothing is pinned and every call here does nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# How often the loop checks that its CPU still has room for it.
BALANCE_SECONDS = 2.0
# The loop waited for its CPU this share of the time: it looks for a quieter one,
WAIT_SHARE = 0.1
# which must be idle this much more of the time than its own CPU (so that it does not flap).
IDLE_MARGIN = 0.25
# An HTTP request's instance still running after this long is long work: it moves to every CPU.
SHORT_SECONDS = 0.01
# wasmtime's WASI I/O threads: they hand an HTTP request's captured output to its thread.
IO_THREAD_NAME = "tokio-rt-worker"


class LoopCpu:
    """The agent's CPU placement: which CPU the loop is on (`cpu`, None when not pinned)."""

    def __init__(self) -> None:
        self.cpus: frozenset[int] = frozenset(os.sched_getaffinity(0))
        self.cpu: int | None = None
        self._io_threads: set[int] = set()
        self._seen_threads: set[int] = set()

    def pin(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop's thread: keep it on the CPU it runs on now, and send the threads of the
        loop's default executor (file I/O, compiles) to every CPU."""
        self.cpus = frozenset(os.sched_getaffinity(0))
        if len(self.cpus) < 2 or self.cpu is not None:
            return
        if not self._move(current_cpu(self.cpus)):
            return
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio",
                                                                        initializer=self.spread))
        log.info("event loop on CPU %d of %s; HTTP request instances run beside it",
                 self.cpu, ",".join(map(str, sorted(self.cpus))))

    def beside_loop(self) -> None:
        """On a thread about to do short work for the loop: run on the loop's CPU."""
        cpu = self.cpu
        if cpu is not None:
            with contextlib.suppress(OSError):  # the CPU went away (a cpuset changed): stay where it is
                os.sched_setaffinity(0, {cpu})

    def spread(self) -> None:
        """On a thread about to do long work: run on every CPU."""
        if self.cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)

    def spread_thread(self, tid: int) -> None:
        """Move another thread (or a process that has no thread yet) to every CPU."""
        if self.cpu is not None:
            with contextlib.suppress(OSError):  # it ended meanwhile
                os.sched_setaffinity(tid, self.cpus)

    async def balance(self) -> None:
        """Every `BALANCE_SECONDS`, on the loop: move to a quieter CPU when the loop waited for its
        own, and keep wasmtime's WASI I/O threads beside it. Runs until cancelled."""
        if self.cpu is None:
            return
        waited, idle, began = _waited(), _cpu_idle(), time.monotonic()
        while True:
            await asyncio.sleep(BALANCE_SECONDS)
            now_waited, now_idle, now = _waited(), _cpu_idle(), time.monotonic()
            target = quieter_cpu(self.cpu, (now_waited - waited) / (now - began), idle_shares(idle, now_idle))
            if target is not None and target in self.cpus:
                log.info("event loop moves from CPU %d to CPU %d: it waited for its CPU %.0f%% of the last %.0f s",
                         self.cpu, target, 100 * (now_waited - waited) / (now - began), now - began)
                self._move(target)
            self._follow_io_threads()
            waited, idle, began = now_waited, now_idle, now

    def _move(self, cpu: int) -> bool:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            log.warning("cannot keep the event loop on CPU %d: %s", cpu, exc)
            return False
        self.cpu = cpu
        for tid in list(self._io_threads):
            try:
                os.sched_setaffinity(tid, {cpu})
            except OSError:
                self._io_threads.discard(tid)
        return True

    def _follow_io_threads(self) -> None:
        """New WASI I/O threads go beside the loop (they were started by whichever instance first
        needed them)."""
        try:
            tids = {int(name) for name in os.listdir("/proc/self/task")}
        except OSError:
            return
        for tid in tids - self._seen_threads:
            with contextlib.suppress(OSError):
                if _read(f"/proc/self/task/{tid}/comm").strip() == IO_THREAD_NAME and self.cpu is not None:
                    os.sched_setaffinity(tid, {self.cpu})
                    self._io_threads.add(tid)
        self._seen_threads = tids
        self._io_threads &= tids


LOOP = LoopCpu()


def quieter_cpu(current: int, waited_share: float, idle: Mapping[int, float]) -> int | None:
    """The CPU the loop should move to, or None to stay: only when it waited for its own CPU at
    least `WAIT_SHARE` of the time and another is idle `IDLE_MARGIN` more of the time."""
    if waited_share < WAIT_SHARE or current not in idle:
        return None
    best = max(idle, key=lambda cpu: (idle[cpu], cpu == current))
    return best if idle[best] - idle[current] >= IDLE_MARGIN else None


def cpu_idle(stat: str) -> dict[int, tuple[int, int]]:
    """Per CPU, from /proc/stat: (idle + iowait ticks, all ticks)."""
    counts = {}
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(value) for value in rest.split()]
            counts[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks[:8]))
    return counts


def idle_shares(before: Mapping[int, tuple[int, int]], after: Mapping[int, tuple[int, int]]) -> dict[int, float]:
    """Per CPU, the share of the time between two `cpu_idle` readings it was idle."""
    shares = {}
    for cpu, (idle, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            shares[cpu] = (idle - before[cpu][0]) / (total - before[cpu][1])
    return shares


def current_cpu(allowed: frozenset[int]) -> int:
    """The CPU this thread runs on now (field 39 of /proc/thread-self/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        cpu = int(_read("/proc/thread-self/stat").rpartition(")")[2].split()[36])
        if cpu in allowed:
            return cpu
    return min(allowed)


def _cpu_idle() -> dict[int, tuple[int, int]]:
    try:
        return cpu_idle(_read("/proc/stat"))
    except (OSError, ValueError, IndexError):  # no reading: no move
        return {}


def _waited() -> float:
    """Seconds this thread has spent waiting for a CPU while runnable (/proc/thread-self/schedstat)."""
    try:
        return int(_read("/proc/thread-self/schedstat").split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()
