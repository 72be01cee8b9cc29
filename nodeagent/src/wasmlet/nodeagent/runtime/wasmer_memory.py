"""The memory cap of a wasmer worker process, enforced from inside it.

wasmer-sdk has no memory limit, so the worker (one per Pod) is capped as a whole, the way the
kubelet caps a Pod's cgroup: at the sum of its running containers' `limits.memory`, or at the
node's cap when one of them has no limit. Two mechanisms, because neither is enough alone:

- A guard thread samples the process's anonymous resident memory (`/proc/self/statm`: resident
  minus file-backed) above what the worker itself used before any module ran (its overhead, like
  a RuntimeClass's `overhead.podFixed`), and ends the process with `OOM_EXIT` once it is over the
  cap, as the kernel's OOM killer would: the agent reports every running container `OOMKilled`.
  It samples more often the closer the usage is to the cap (no fixed poll rate to pay per Pod).
- `RLIMIT_DATA` (private writable memory, which is what a linear memory's growth commits) is set
  a margin above the cap, so memory growing faster than the guard samples still stops: the
  module's `memory.grow` fails there. `RLIMIT_AS` cannot be used: Wasmer reserves ~6 GiB of
  address space per linear memory, whatever the module uses.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Mapping
from typing import TypeVar

_T = TypeVar("_T")
OOM_EXIT = 86  # the worker's exit status for "over its memory cap"; no SDK or Python exit uses it
_PAGE = os.sysconf("SC_PAGE_SIZE")
# How fast memory can grow between two samples: a page-faulting loop commits ~1-2 GiB/s here.
_GROWTH_BYTES_PER_SECOND = 2 * 1024**3
_MIN_INTERVAL, _MAX_INTERVAL = 0.005, 0.5
# RLIMIT_DATA also counts what is not resident (thread stacks, reservations made writable): the
# backstop sits this far above the cap, plus a share per running container for its threads.
DATA_MARGIN_BYTES = 64 * 1024 * 1024
DATA_PER_INSTANCE_BYTES = 16 * 1024 * 1024


def anonymous_bytes(pid: int | str = "self") -> int:
    """Anonymous resident memory of a process (resident minus file-backed pages), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            fields = statm.read().split()
    except OSError:
        return 0
    return (int(fields[1]) - int(fields[2])) * _PAGE


def _data_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[5]) * _PAGE


def pod_cap(limits: list[int | None], node_cap: int) -> int:
    """The cap of a worker whose running containers have these limits (None: no limit)."""
    if not limits or any(limit is None for limit in limits):
        return node_cap
    return min(sum(limit for limit in limits if limit is not None), node_cap)


def node_victim(charged: Mapping[_T, int], node_cap: int) -> _T | None:
    """The worker to kill when all of them together are over the node's cap: the one using most,
    as the kernel's OOM killer picks the largest process of a memory cgroup; None under the cap."""
    if sum(charged.values()) <= node_cap or not charged:
        return None
    return max(charged, key=lambda worker: charged[worker])


class MemoryGuard:
    """Ends this process with `OOM_EXIT` once its memory (above its own overhead) passes the cap."""

    def __init__(self, node_cap: int) -> None:
        self.node_cap = node_cap
        self.baseline = anonymous_bytes()
        self._data_baseline = _data_bytes()
        self.cap = node_cap
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="memory guard", daemon=True).start()

    def rebase(self) -> None:
        """The worker becomes a Pod's: what it holds now (modules it compiled while it was the
        agent's spare, for any Pod) is its overhead, not the Pod's."""
        self.baseline = anonymous_bytes()

    def set_limits(self, limits: list[int | None]) -> None:
        """The running containers changed: recompute the cap and the `RLIMIT_DATA` backstop. The
        guard samples at once only when the cap went down (a higher cap waits for the next sample)."""
        cap = pod_cap(limits, self.node_cap)
        lower, self.cap = cap < self.cap, cap
        backstop = self._data_baseline + self.cap + DATA_MARGIN_BYTES + DATA_PER_INSTANCE_BYTES * len(limits)
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            backstop = min(backstop, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (backstop, hard))
        if lower:
            self._wake.set()

    def used(self) -> int:
        """Memory charged to the Pod: what the worker holds above its own overhead."""
        return max(anonymous_bytes() - self.baseline, 0)

    def _run(self) -> None:
        while True:
            used, cap = self.used(), self.cap
            if used > cap:
                os.write(2, f"wasmer worker: memory {used} bytes is over the cap of {cap} bytes\n".encode())
                os._exit(OOM_EXIT)
            interval = min(max((cap - used) / _GROWTH_BYTES_PER_SECOND, _MIN_INTERVAL), _MAX_INTERVAL)
            self._wake.wait(interval)
            self._wake.clear()
