"""Threads for wasmtime instances, kept parked between instances.

Every instance runs on a thread of its own (calls into wasmtime block). Starting an OS thread
costs the event loop ~0.1–0.3 ms, because `Thread.start()` waits until the new thread runs;
an HTTP handler starts one instance per request, so that wait was the loop's largest cost per
request (bench/RESULTS.md, "HTTP"). A thread that finished its instance parks for the next one
instead; past `max_idle` parked threads it ends. Threads are daemons, as before: one abandoned
in a blocking host call never holds up the agent's exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

IDLE_NAME = "wasm instance (idle)"


class InstanceThreads:
    """Run each job on a parked thread, or a new one when none is parked."""

    def __init__(self, max_idle: int = 256) -> None:
        self._max_idle = max_idle
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], str] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def run(self, job: Callable[[], None], name: str) -> None:
        """Run `job` on a thread named `name` (while it runs); raise RuntimeError when no thread can start."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((job, name))
                return
        threading.Thread(target=self._work, args=(job, name), name=name, daemon=True).start()

    def close(self) -> None:
        """Let the parked threads end (running ones end after their job)."""
        with self._lock:
            self._closed, parked, self._idle = True, self._idle, 0
        for _ in range(parked):
            self._jobs.put(None)

    def _work(self, job: Callable[[], None], name: str) -> None:
        thread = threading.current_thread()
        while True:
            thread.name = name
            try:
                job()
            finally:
                thread.name = IDLE_NAME
            with self._lock:
                if self._closed or self._idle >= self._max_idle:
                    return
                self._idle += 1
            item = self._jobs.get()
            if item is None:
                return
            job, name = item
