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

A worker whose Pod ended, with every module of it ended by itself, comes back (`give_back`)
with its sandbox reset: the next Pod of the same namespace takes it before any spare, and
starts with no fork, no warm-up and its module likely loaded already. Under run-to-completion
churn that is most Pods (bench/RESULTS.md, "wasmer workers used again"). At most
`RETURNED_WORKERS` wait, each for `RETURNED_IDLE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import collections
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
# Workers given back, waiting for a Pod of their namespace: how many, and for how long.
RETURNED_WORKERS = 8
RETURNED_IDLE_SECONDS = 10.0


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
        # given back, oldest first: (namespace, worker, when)
        self._returned: collections.deque[tuple[str, WorkerProcess, float]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._waiting: list[tuple[str, asyncio.Future[WorkerProcess]]] = []  # Pods waiting for a worker, oldest first
        self._closed = False

    def take(self, namespace: str = "") -> asyncio.Future[WorkerProcess]:
        """A worker for a new Pod: one a Pod of `namespace` gave back, else a ready spare (its
        place is refilled), else whichever comes first: the next spare ready or a worker a Pod of
        `namespace` gives back. Waiting Pods do not start more forks than the pool's size."""
        claim: asyncio.Future[WorkerProcess] = asyncio.get_running_loop().create_future()
        returned = self._take_returned(namespace)
        if returned is not None:
            claim.set_result(returned)
            return claim
        self._drop_failed()
        ready = next((task for task in self._spares if task.done()), None)
        if ready is None:
            self._waiting.append((namespace, claim))
            self._refill()
            return claim
        self._spares.remove(ready)
        if not self._spares:
            self._refill()
        elif self._refill_later is None:
            self._refill_later = asyncio.get_running_loop().call_later(REFILL_DELAY, self._refill)
        return ready

    def _forked(self, task: asyncio.Task[WorkerProcess]) -> None:
        """A spare is ready (or failed to start): the Pod waiting longest gets it, and another
        spare starts forking."""
        if self._closed or task not in self._spares or not self._waiting:
            return
        self._spares.remove(task)
        _, claim = self._waiting.pop(0)
        if task.cancelled():
            claim.cancel()
        elif (error := task.exception()) is not None:
            claim.set_exception(error)
        else:
            claim.set_result(task.result())
        self._refill()

    def give_back(self, namespace: str, worker: WorkerProcess) -> bool:
        """Keep a worker whose Pod ended, reset (`WorkerProcess.recycle`, with `recent()` loaded),
        for the next Pod of `namespace`; False when the pool has no room for it (then the caller
        ends it)."""
        if not worker.alive or self._closed:
            return False
        for entry in self._waiting:
            if entry[0] == namespace:
                self._waiting.remove(entry)
                entry[1].set_result(worker)
                return True
        if len(self._returned) >= RETURNED_WORKERS:
            return False
        loop = asyncio.get_running_loop()
        self._returned.append((namespace, worker, loop.time()))
        if self._expiry is None:
            self._expiry = loop.call_later(RETURNED_IDLE_SECONDS, self._expire)
        return True

    def recent(self) -> list[tuple[Path, str, str]]:
        """The modules spares load ahead (file, digest, command), for a worker given back to load too."""
        return [(module_path, digest, command) for digest, (module_path, command) in self._recent.items()]

    def _take_returned(self, namespace: str) -> WorkerProcess | None:
        for entry in self._returned:
            if entry[0] == namespace and entry[1].alive:
                self._returned.remove(entry)
                return entry[1]
        return None

    def _expire(self) -> None:
        """End the workers given back longer than `RETURNED_IDLE_SECONDS` ago (and dead ones)."""
        loop = asyncio.get_running_loop()
        self._expiry = None
        while self._returned and (not self._returned[0][1].alive
                                  or loop.time() - self._returned[0][2] >= RETURNED_IDLE_SECONDS):
            _, worker, _ = self._returned.popleft()
            self._closing.add(loop.create_task(worker.close()))
        self._closing = {task for task in self._closing if not task.done()}
        if self._returned:
            self._expiry = loop.call_later(RETURNED_IDLE_SECONDS - (loop.time() - self._returned[0][2]), self._expire)

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
        for _, worker, _ in self._returned:
            worker.preload(module_path, digest, command)

    async def close(self) -> None:
        """End every spare (forking ones included) and every worker given back."""
        self._closed = True
        for _, claim in self._waiting:
            claim.cancel()
        self._waiting.clear()
        for timer in (self._refill_later, self._expiry):
            if timer is not None:
                timer.cancel()
        self._refill_later = self._expiry = None
        returned, self._returned = [worker for _, worker, _ in self._returned], collections.deque()
        await asyncio.gather(*(worker.close() for worker in returned), *self._closing)
        spares, self._spares = list(self._spares), collections.deque()
        for task in spares:
            task.cancel()
        for result in await asyncio.gather(*spares, return_exceptions=True):
            if isinstance(result, WorkerProcess):
                await result.close()

    def _new(self) -> asyncio.Task[WorkerProcess]:
        task = asyncio.create_task(self._ready())
        task.add_done_callback(self._forked)
        return task

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
