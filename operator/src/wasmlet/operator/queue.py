"""ReconcileQueue: the controller work queue between events and the reconcile service.

* One workload is reconciled by at most one task at a time (per-key exclusion), whether the
  reconcile comes from a kopf change handler (`run_now`) or from the queue (`add`).
* Requests coalesce: ten Pod events while a reconcile runs cause one more reconcile, not ten.
* A reconcile can ask to run again later (a node's reschedule deadline); failures retry with
  capped, jittered exponential backoff; every known workload is resynced periodically.

kopf's own timers would do the periodic part, but they put a finalizer on every WasmWorkload,
and a finalizer makes `kubectl delete` hang whenever the operator is down or uninstalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from wasmlet.kube.backoff import Backoff
from wasmlet.operator.errors import PermanentError, RetryableError
from wasmlet.operator.reconciler import Key, Outcome

log = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 300.0  # the kubelet's and the workqueue's cap: a broken thing is retried 5-minutely


@dataclass
class _KeyState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    backoff: Backoff | None = None


class ReconcileQueue:
    """Runs `work(key)` for workloads as events ask for it. Start with `run()` (until cancelled)."""

    def __init__(self, work: Callable[[Key], Awaitable[Outcome]], *, resync_seconds: float = 300.0,
                 retry_seconds: float = 1.0) -> None:
        self._work = work
        self._resync = resync_seconds
        self._retry = retry_seconds
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._keys: dict[Key, _KeyState] = {}
        self._known: set[Key] = set()
        self._wakeup = asyncio.Event()

    @property
    def known(self) -> frozenset[Key]:
        """Every workload seen and not yet found gone (what the periodic resync covers)."""
        return frozenset(self._known)

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Reconcile `key` after `delay` seconds (an earlier request wins)."""
        self._known.add(key)
        when = asyncio.get_running_loop().time() + max(0.0, delay)
        if key not in self._due or when < self._due[key]:
            self._due[key] = when
            self._wakeup.set()

    def add_all(self) -> None:
        """Reconcile every known workload (a Node changed: any of them may now fit, or not)."""
        for key in list(self._known):
            self.add(key)

    async def run_now(self, key: Key) -> Outcome:
        """Reconcile `key` in the caller's task, exclusive with the queue; errors propagate."""
        self._known.add(key)
        async with self._exclusive(key) as state:
            outcome = await self._work(key)
            state.backoff = None
        self._after(key, outcome)
        return outcome

    async def run(self) -> None:
        """Dispatch due keys until cancelled; each reconcile runs in its own task of one TaskGroup."""
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self._resync
        async with asyncio.TaskGroup() as tasks:
            while True:
                now = loop.time()
                if now >= next_resync:
                    self.add_all()
                    next_resync = now + self._resync
                waiting = []
                for key, when in list(self._due.items()):
                    if key in self._running:
                        waiting.append(when)  # runs again once the current pass ends
                    elif when <= now:
                        del self._due[key]
                        self._running.add(key)
                        tasks.create_task(self._process(key), name=f"reconcile {key[0]}/{key[1]}")
                    else:
                        waiting.append(when)
                pending = [when for when in waiting if when > now]
                timeout = min([next_resync, *pending]) - now
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(timeout, 0.0))

    async def _process(self, key: Key) -> None:
        """One queued reconcile. Never raises: one failing workload must not stop the others."""
        try:
            async with self._exclusive(key) as state:
                try:
                    outcome = await self._work(key)
                except RetryableError as exc:
                    delay = max(exc.delay, self._next_delay(state))
                    log.warning("reconcile %s/%s failed, retrying in %.1fs: %s", *key, delay, exc)
                    self.add(key, delay)
                    return
                except PermanentError as exc:
                    log.error("reconcile %s/%s failed until the workload changes: %s", *key, exc)
                    return
                except Exception:
                    delay = self._next_delay(state)
                    log.exception("reconcile %s/%s crashed, retrying in %.1fs", *key, delay)
                    self.add(key, delay)
                    return
                state.backoff = None
            self._after(key, outcome)
        finally:
            self._running.discard(key)
            self._wakeup.set()

    def _after(self, key: Key, outcome: Outcome) -> None:
        if outcome.gone:
            self._known.discard(key)
            self._due.pop(key, None)
            state = self._keys.get(key)
            if state is not None and state.users == 0:
                del self._keys[key]
        elif outcome.requeue_after is not None:
            self.add(key, outcome.requeue_after)

    def _next_delay(self, state: _KeyState) -> float:
        if state.backoff is None:
            state.backoff = Backoff(base=self._retry, cap=RETRY_CAP_SECONDS)
        return state.backoff.next()

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: Key) -> AsyncIterator[_KeyState]:
        """Hold the key's lock; the per-key state lives only while someone uses it."""
        state = self._keys.setdefault(key, _KeyState())
        state.users += 1
        try:
            async with state.lock:
                yield state
        finally:
            state.users -= 1
            if state.users == 0 and state.backoff is None:
                del self._keys[key]
