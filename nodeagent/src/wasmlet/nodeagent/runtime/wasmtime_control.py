"""What the agent asks of one running wasmtime instance, and the clock that makes it happen.

wasmtime checks the engine's *epoch* at every function entry and loop back-edge of compiled
code. `EpochClock` advances it every `TICK` seconds, but only while some instance needs it
(a stop, a CPU limit, a memory limit hit): an idle agent pays nothing, and instances with no
limits run without a single callback. When a store's deadline passes, the engine calls
`Control.on_deadline` on the thread running the module, which decides: end it now, pause it
(CPU limit), or let it run one more tick.

Everything here runs on two kinds of threads: the event loop (kill requests) and the module's
own thread (callbacks), so state changes are single assignments or under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

# 10 ms: a stop or memory kill lands within ~10 ms of the request, and a CPU limit is checked
# ten times per CFS period. Each tick costs one callback per running busy module (~5 µs).
TICK = 0.01
# The period a CPU limit is measured over, as in the kernel's CFS bandwidth control (cpu.cfs_period_us).
CPU_PERIOD = 0.1


class EpochClock:
    """Advances an engine's epoch every `TICK` while at least one instance needs it."""

    def __init__(self, engine: Any, tick: float = TICK) -> None:
        self._engine = engine
        self._tick = tick
        self._lock = threading.Lock()
        self._needs = 0
        self._thread: threading.Thread | None = None

    def need(self) -> None:
        with self._lock:
            self._needs += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasmtime-epoch", daemon=True)
                self._thread.start()

    def release(self) -> None:
        with self._lock:
            self._needs -= 1

    @property
    def ticking(self) -> bool:
        return self._thread is not None

    def join(self, timeout: float) -> None:
        """Blocking: wait (up to `timeout`) for the ticking thread to end once nothing needs it."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            with self._lock:
                if self._needs <= 0:
                    self._thread = None
                    return
            self._engine.increment_epoch()


class DutyCycle:
    """A CPU limit as the kernel's CFS quota enforces it: `cores` × `CPU_PERIOD` of CPU time per
    period, then a pause until the module's wall time catches up with `used / cores`.

    Called on the module's own thread: `time.thread_time()` is that thread's CPU time.
    """

    def __init__(self, cores: float, period: float = CPU_PERIOD, wall_clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.cores = cores
        self._quota = cores * period
        self._period = period
        self._clocks = wall_clock, cpu_clock
        self._wall: float | None = None
        self._cpu = 0.0

    def start(self) -> None:
        """The first period begins (on the module's thread, as it starts running)."""
        self._wall, self._cpu = self._clocks[0](), self._clocks[1]()

    def pause(self) -> float:
        """Seconds to pause now (0: keep running)."""
        now, cpu = self._clocks[0](), self._clocks[1]()
        if self._wall is None:
            self._wall, self._cpu = now, cpu
            return 0.0
        used, elapsed = cpu - self._cpu, now - self._wall
        if used >= self._quota:
            pause = max(0.0, used / self.cores - elapsed)
            self._wall, self._cpu = now + pause, cpu
            return pause
        if elapsed >= self._period:
            self._wall, self._cpu = now, cpu
        return 0.0


class Control:
    """The agent's requests to one instance, read by the engine callbacks on the module's thread."""

    def __init__(self, clock: EpochClock, memory_limit: int | None = None, cpu_limit: float | None = None) -> None:
        self.memory_limit = memory_limit
        self.memory_wanted: int | None = None  # the refused grow: the module is over its limit
        self.exit_code: int | None = None  # the status the module passed to proc_exit
        self.poll_oneoff: Any = None  # wasmtime's own poll_oneoff in this instance's store, once looked up
        self.stopped = False
        self._clock = clock
        self._lock = threading.Lock()
        self._needs = 0
        self._wake = threading.Event()
        # A single-threaded module cannot use more than one core: a limit of 1 or more is no limit.
        self._cpu = DutyCycle(cpu_limit) if cpu_limit is not None and 0 < cpu_limit < 1 else None

    def begin(self) -> None:
        """The module starts running (on its thread): a CPU limit needs the clock for its whole life."""
        if self._cpu is not None:
            self._cpu.start()
            self._need()

    def end(self) -> None:
        """The module's thread is done: give back every clock need."""
        with self._lock:
            needs, self._needs = self._needs, -1
        for _ in range(max(needs, 0)):
            self._clock.release()

    def stop(self) -> None:
        """End the module at its next epoch check (it cannot be told: wasip1 has no signals)."""
        self.stopped = True
        self._wake.set()
        self._need()

    def allow_memory(self, size: int) -> bool:
        """May a linear memory be `size` bytes? A refusal marks the module over its limit and ends it."""
        if self.memory_limit is None or size <= self.memory_limit:
            return True
        self.memory_wanted = size
        self._wake.set()
        self._need()
        return False

    def sleep(self, seconds: float) -> bool:
        """A WASI sleep on the module's thread: True once `seconds` passed, False if a stop cut it short."""
        if seconds > 0 and not self.ending:
            self._wake.wait(seconds)
        return not self.ending

    @property
    def ending(self) -> bool:
        """A stop or a memory kill was requested: the module ends at its next check."""
        return self.stopped or self.memory_wanted is not None

    def on_deadline(self) -> bool:
        """True: run one more tick; False: end the module now."""
        if self.ending:
            return False
        if self._cpu is not None:
            pause = self._cpu.pause()
            if pause > 0 and self._wake.wait(pause):
                return False
        return True

    def kill_message(self) -> str:
        if self.memory_wanted is not None:
            return f"memory limit exceeded: memory.grow to {self.memory_wanted} bytes refused"
        return "stopped by the agent"

    def _need(self) -> None:
        with self._lock:
            if self._needs < 0:  # the module already ended
                return
            self._needs += 1
        self._clock.need()
