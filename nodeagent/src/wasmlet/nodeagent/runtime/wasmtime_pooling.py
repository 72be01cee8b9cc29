"""wasmtime's pooling instance allocator, for the engine that runs HTTP requests' instances.

An HTTP handler starts one instance per request. With wasmtime's default (on-demand) allocator
each instance maps its linear memory's reservation (4 GiB plus guard) and unmaps it when its
store closes. In a process whose threads run on several CPUs every unmap interrupts the other
CPUs to flush their TLBs, and on a small VM those interrupts cost more than the instance:
unpinned, the agent served ~800 requests/s where one CPU of its own gave ~2,300
(bench/RESULTS.md, "HTTP handlers"). The pooling allocator reserves a fixed number of slots
once and reuses them: a slot's first `KEEP_RESIDENT_BYTES` are zeroed in place, so a small
handler's instance neither maps nor unmaps anything.

wasmtime-py 51 does not wrap the pooling configuration; its C API does, bound here with ctypes
as `wasmtime_memory` binds the memory creator. A pool has a fixed size: `PooledSlots` hands out
its slots so that an instance never fails for want of one (the caller uses the on-demand engine
instead when all are taken). A pool also bounds each instance (one memory, one table of at most
20,000 elements, 1 MiB of instance state: wasmtime's defaults); wasmtime refuses to load a
module beyond them into the pooled engine, and the caller runs it on the on-demand engine.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

# Instances (core instances, memories and tables: one each for a WASI command module) the pool
# holds at once. Each slot reserves address space only (4 GiB + guard of it): 256 slots are
# ~1 TiB of the 128 TiB a process has, and no memory until an instance touches it.
SLOTS = 256
# Of each slot's linear memory, this much is zeroed in place when an instance ends instead of
# being handed back to the kernel (above it, wasmtime decommits with madvise): what a small
# handler touches (`http-hello`: its stack and data, ~128 KiB). It stays resident once a slot
# was used, so it bounds what a burst leaves behind: 256 slots × 128 KiB = 32 MiB at most.
KEEP_RESIDENT_BYTES = 128 << 10

_U32, _SIZE, _PTR = ctypes.c_uint32, ctypes.c_size_t, ctypes.c_void_p


def _bind(name: str, *argtypes: Any, restype: Any = None) -> Any:
    function = ffi.dll[name]  # a fresh function object: wasmtime-py's own bindings stay untouched
    function.argtypes = list(argtypes)
    function.restype = restype
    return function


_new = _bind("wasmtime_pooling_allocation_config_new", restype=_PTR)
_delete = _bind("wasmtime_pooling_allocation_config_delete", _PTR)
_strategy_set = _bind("wasmtime_pooling_allocation_strategy_set", _PTR, _PTR)
_COUNTS = {name: _bind(f"wasmtime_pooling_allocation_config_{name}_set", _PTR, _U32)
           for name in ("total_core_instances", "total_memories", "total_tables")}
_SIZES = {name: _bind(f"wasmtime_pooling_allocation_config_{name}_set", _PTR, _SIZE)
          for name in ("linear_memory_keep_resident", "table_keep_resident")}


def install_pooling(config: wasmtime.Config, slots: int = SLOTS, keep_resident: int = KEEP_RESIDENT_BYTES) -> None:
    """Make engines built from `config` allocate instances from a pool of `slots` slots."""
    pooling = _new()
    if not pooling:
        raise MemoryError("wasmtime could not allocate a pooling configuration")
    try:
        for setter in _COUNTS.values():
            setter(pooling, slots)
        for setter in _SIZES.values():
            setter(pooling, keep_resident)
        _strategy_set(config.ptr(), pooling)  # copied into the config
    finally:
        _delete(pooling)


class PooledSlots:
    """The pool's slots as the agent hands them out: taken on the event loop when an instance
    starts, given back from the instance's thread once its store is closed (which is when
    wasmtime returns the slot)."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def taken(self) -> int:
        return self._taken

    def take(self) -> Callable[[], None] | None:
        """Take a slot if one is free, without waiting: the function that gives it back (once,
        however often it is called, from any thread), or None."""
        with self._lock:
            if self._taken >= self.slots:
                return None
            self._taken += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            with self._lock:
                if not given_back:
                    given_back = True
                    self._taken -= 1
        return give_back
