"""ReconcileQueue: the controller work queue between events and the reconcile service.

* One workload is reconciled by at most one task at a time (per-key exclusion).
* Requests coalesce: ten Pod events while a reconcile runs cause one more reconcile, not ten.
* A reconcile can ask to run again later (a node's reschedule deadline); failures retry with
  capped, jittered exponential backoff; every known workload is resynced periodically.
* Nothing is dispatched while the queue is held, for any reason (`hold`/`release`): until the
  caches have their first listing, and while another replica is the active one (peering).
  Reconciles already running finish; held requests wait, none is lost.

kopf's own timers would do the periodic part, but they put a finalizer on every WasmWorkload,
and a finalizer makes `kubectl delete` hang whenever the operator is down or uninstalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from wasmlet.kube.backoff import Backoff
from wasmlet.operator.errors import PermanentError, RetryableError
from wasmlet.operator.metrics import OperatorMetrics
from wasmlet.operator.reconciler import Key, Outcome

log = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 300.0  # the kubelet's and the workqueue's cap: a broken thing is retried 5-minutely


class ReconcileQueue:
    """Runs `work(key)` for workloads as events ask for it. Start with `run()` (until cancelled)."""

    def __init__(self, work: Callable[[Key], Awaitable[Outcome]], *, resync_seconds: float = 300.0,
                 retry_seconds: float = 1.0, metrics: OperatorMetrics | None = None) -> None:
        self._work = work
        self._resync = resync_seconds
        self._retry = retry_seconds
        self._metrics = metrics or OperatorMetrics()
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._backoffs: dict[Key, Backoff] = {}  # workloads whose last pass failed
        self._known: set[Key] = set()
        self._holds: set[str] = set()
        self._wakeup = asyncio.Event()

    @property
    def held(self) -> frozenset[str]:
        """Why nothing is dispatched now (empty: the queue runs)."""
        return frozenset(self._holds)

    def hold(self, reason: str) -> None:
        """Dispatch nothing until `release(reason)` (and every other hold is released)."""
        if reason not in self._holds:
            log.info("reconciles held: %s", reason)
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        """Lift one hold; when none is left, everything requested meanwhile runs."""
        if reason in self._holds:
            self._holds.discard(reason)
            log.info("reconciles released: %s%s", reason, f" (still held: {', '.join(sorted(self._holds))})"
                     if self._holds else "")
        self._wakeup.set()

    def __len__(self) -> int:
        """Workloads waiting for a reconcile (due now or later)."""
        return len(self._due)

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
                self._metrics.queue_depth.set(len(self._due))
                self._metrics.workloads.set(len(self._known))
                if self._holds:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), timeout=max(next_resync - now, 0.0))
                    continue
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
        """One queued reconcile (never two of one key: see `_running`). Never raises: one failing
        workload must not stop the others."""
        started = asyncio.get_running_loop().time()
        try:
            outcome = await self._work(key)
        except RetryableError as exc:
            delay = max(exc.delay, self._next_delay(key))
            log.warning("reconcile %s/%s failed, retrying in %.1fs: %s", *key, delay, exc)
            self._count("retry", "retryable", started)
            self.add(key, delay)
        except PermanentError as exc:
            log.error("reconcile %s/%s failed until the workload changes: %s", *key, exc)
            self._count("error", "permanent", started)
        except Exception:
            delay = self._next_delay(key)
            log.exception("reconcile %s/%s crashed, retrying in %.1fs", *key, delay)
            self._count("error", "crash", started)
            self.add(key, delay)
        else:
            self._backoffs.pop(key, None)
            self._count("success", None, started)
            if outcome.gone:
                self._known.discard(key)
                self._due.pop(key, None)
            elif outcome.requeue_after is not None:
                self.add(key, outcome.requeue_after)
        finally:
            self._running.discard(key)
            self._wakeup.set()

    def _count(self, result: str, error: str | None, started: float) -> None:
        self._metrics.reconciles.labels(result).inc()
        self._metrics.duration.observe(asyncio.get_running_loop().time() - started)
        if error is not None:
            self._metrics.errors.labels(error).inc()

    def _next_delay(self, key: Key) -> float:
        backoff = self._backoffs.setdefault(key, Backoff(base=self._retry, cap=RETRY_CAP_SECONDS))
        return backoff.next()
