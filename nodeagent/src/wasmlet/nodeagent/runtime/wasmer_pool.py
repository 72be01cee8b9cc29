"""Idle wasmer workers kept ready for new Pods, so a Pod's start does not wait for a process.

A new Pod takes a spare worker: one already forked by the fork server, with its Wasmer client
made, the SDK's one-time set-up done (`Worker.warm_up`) and the modules the node ran lately
loaded (`preload`). Forking and warming a worker costs ~10 ms of CPU and loading a module into
a new process ~10 ms more; done here, before the Pod arrives, instead of on its start path
(bench/RESULTS.md, "wasmer worker pool"). Each spare taken is replaced in the background: at
once when none is left, so a burst of Pods finds the next ones forking while it starts the
first, and `REFILL_DELAY` later while another is left, so that a lone Pod's start does not share
the CPU with its successor's warm-up; at most
`FORKS_AT_ONCE` workers start at a time (the rest queue, in order), so that in a burst the first
Pods get their workers first instead of all of them getting theirs late together, their Wasmer
runtimes' threads fighting over the cores.

The pool is small (`SPARE_WORKERS`): an idle worker costs ~6 MiB. Spares also compile modules
at pull time (`prepare`) into the shared compiled cache, so a hostile module's compile cannot
hurt the agent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from wasmlet.nodeagent.errors import ModuleError
from wasmlet.nodeagent.runtime.wasmer_process import WorkerProcess

SPARE_WORKERS = 2
# Modules loaded into every spare: the ones the node started or pulled last. A Pod's worker
# keeps them (file-backed, mostly shared between workers), so not more than a few.
PRELOAD_MODULES = 2
FORKS_AT_ONCE = 2
# A spare taken while another is still there is replaced this much later, not at once: forking
# and warming its successor (~20 ms of CPU over two processes) would otherwise compete with the
# Pod's own start and first status write. With no spare left (a burst) it is replaced at once.
REFILL_DELAY = 0.1


class SparePool:
    """Up to `SPARE_WORKERS` spare workers, forking or ready, and the modules they preload."""

    def __init__(self, fork: Callable[[], Awaitable[WorkerProcess]], size: int = SPARE_WORKERS) -> None:
        self._fork = fork
        self._size = size
        self._spares: collections.deque[asyncio.Task[WorkerProcess]] = collections.deque()
        # digest → (module file, command name): what the node ran lately, as it last ran it
        self._recent: collections.OrderedDict[str, tuple[Path, str]] = collections.OrderedDict()
        self._forking = asyncio.Semaphore(FORKS_AT_ONCE)
        self._refill_later: asyncio.TimerHandle | None = None

    def take(self) -> asyncio.Task[WorkerProcess]:
        """A spare for a new Pod: a ready one if there is one, else the one forking longest; its
        place is refilled at once."""
        self._drop_failed()
        ready = next((task for task in self._spares if task.done()), None)
        task = ready or (self._spares[0] if self._spares else self._new())
        with contextlib.suppress(ValueError):
            self._spares.remove(task)
        if not self._spares:
            self._refill()
        elif self._refill_later is None:
            self._refill_later = asyncio.get_running_loop().call_later(REFILL_DELAY, self._refill)
        return task

    async def prepare(self, module_path: Path, digest: str) -> str | None:
        """Compile a module in a spare; the error text if it is not loadable. A spare may be taken
        by a Pod (and end with it) meanwhile: then the next one tries."""
        for attempt in range(3):
            self._drop_failed()
            self._refill()
            try:
                error = await (await asyncio.shield(self._spares[0])).prepare(module_path, digest)
                break
            except ModuleError:
                if attempt == 2:
                    raise
        if error is None:
            self.remember(module_path, digest, "main")
        return error

    def remember(self, module_path: Path, digest: str, command: str) -> None:
        """A module the node runs (as `command`, its argv[0]; a pull's compile says `main` until a
        Pod runs it): the ready spares load it now, new spares when they are ready."""
        known = self._recent.get(digest)
        self._recent[digest] = (module_path, command)
        self._recent.move_to_end(digest)
        if known is not None and known[1] == command:
            return
        while len(self._recent) > PRELOAD_MODULES:
            self._recent.popitem(last=False)
        for task in self._spares:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().preload(module_path, digest, command)

    async def close(self) -> None:
        """End every spare (forking ones included)."""
        if self._refill_later is not None:
            self._refill_later.cancel()
            self._refill_later = None
        spares, self._spares = list(self._spares), collections.deque()
        for task in spares:
            task.cancel()
        for result in await asyncio.gather(*spares, return_exceptions=True):
            if isinstance(result, WorkerProcess):
                await result.close()

    def _new(self) -> asyncio.Task[WorkerProcess]:
        return asyncio.create_task(self._ready())

    async def _ready(self) -> WorkerProcess:
        async with self._forking:
            worker = await self._fork()
        for digest, (module_path, command) in list(self._recent.items()):  # now: what came while it forked too
            worker.preload(module_path, digest, command)
        return worker

    def _refill(self) -> None:
        if self._refill_later is not None:
            self._refill_later.cancel()
            self._refill_later = None
        while len(self._spares) < self._size:
            self._spares.append(self._new())

    def _drop_failed(self) -> None:
        """Forget spares that failed to start or died idle (a crashed or killed worker)."""
        self._spares = collections.deque(
            task for task in self._spares
            if not task.done() or (not task.cancelled() and task.exception() is None and task.result().alive))
