"""Linear memories allocated by the agent (wasmtime's host memory creator), so that every
`memory.grow` is seen and a memory limit can end the instance `OOMKilled`.

wasmtime's own store limiter makes a grow beyond the limit return -1 and nothing else (its C
API has no `trap_on_grow_failure`): `grow 64` under a 16 MiB limit printed its own error and
exited 1, indistinguishable from any other failure. Here the refusal is recorded on the
instance's `Control`, which ends it at its next epoch check (or reports it at its exit).

A memory is one anonymous mapping: the whole reservation wasmtime asks for (compiled code
elides bounds checks inside it) plus its guard region, inaccessible, with the first `size`
bytes made read-write and widened on each grow; it never moves. Copy-on-write data images
exist only for wasmtime's own memories, so `memory_init_cow` is off (data segments are copied
at instantiation: microseconds for the example modules).

Like every native callback (see `wasmtime_native`), these are module-level and catch everything.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from wasmlet.nodeagent.runtime.wasmtime_control import Control
from wasmlet.nodeagent.runtime.wasmtime_native import current_control, error, next_key

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_PROT_NONE, _PROT_READ_WRITE = 0, 3
_MAP_PRIVATE, _MAP_ANONYMOUS, _MAP_NORESERVE = 0x02, 0x20, 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value
_WASM32_MAX = 1 << 32

_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_GetMemory = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                              ctypes.POINTER(ctypes.c_size_t))
_GrowMemory = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _LinearMemoryC(ctypes.Structure):
    _fields_ = [("env", ctypes.c_void_p), ("get_memory", _GetMemory), ("grow_memory", _GrowMemory),
                ("finalizer", _Finalizer)]


class _MemoryRequestC(ctypes.Structure):
    """`wasmtime_memory_request_t` (wasmtime 51: the arguments of a memory request in one struct)."""

    _fields_ = [("ty", ctypes.c_void_p), ("minimum", ctypes.c_size_t), ("maximum", ctypes.c_size_t),
                ("reserved", ctypes.c_size_t), ("guard", ctypes.c_size_t), ("kind", ctypes.c_uint8)]


_NewMemory = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_MemoryRequestC),
                              ctypes.POINTER(_LinearMemoryC))


class _MemoryCreatorC(ctypes.Structure):
    _fields_ = [("env", ctypes.c_void_p), ("new_memory", _NewMemory), ("finalizer", _Finalizer)]


# `dll[name]` builds a fresh function object: our argtypes never touch wasmtime-py's own bindings.
_set_memory_creator = ffi.dll["wasmtime_config_host_memory_creator_set"]
_set_memory_creator.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MemoryCreatorC)]
_set_memory_creator.restype = None


@dataclass
class _Memory:
    base: int
    size: int
    capacity: int
    mapped: int
    control: Control | None


_memories: dict[int, _Memory] = {}


def install_memory_creator(config: wasmtime.Config) -> None:
    """Make `config`'s engine allocate linear memories here (call before `Engine(config)`)."""
    config.memory_init_cow = False
    _set_memory_creator(ctypes.cast(config.ptr(), ctypes.c_void_p), ctypes.byref(_CREATOR))


def live_memories() -> int:
    """How many linear memories exist now (each is freed when its store closes)."""
    return len(_memories)


@_NewMemory
def _new_memory(env: Any, request: Any, ret: Any) -> int | None:
    try:
        wanted = request[0]
        minimum, maximum, reserved, guard = wanted.minimum, wanted.maximum, wanted.reserved, wanted.guard
        control = current_control()
        if control is not None and not control.allow_memory(minimum):
            return error(f"the module needs {minimum} bytes of memory initially, over its limit")
        # A reservation means compiled code elides bounds checks: map it whole (inaccessible), plus the guard.
        capacity = reserved or min(maximum, _WASM32_MAX)
        mapped = capacity + guard
        base = _libc.mmap(None, mapped, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if base is None or base == _MAP_FAILED:
            return error(f"mmap of {mapped} bytes failed (errno {ctypes.get_errno()})")
        if minimum and _libc.mprotect(base, minimum, _PROT_READ_WRITE) != 0:
            _libc.munmap(base, mapped)
            return error(f"mprotect failed (errno {ctypes.get_errno()})")
        key = next_key()
        _memories[key] = _Memory(base, minimum, capacity, mapped, control)
        ret[0].env, ret[0].get_memory, ret[0].grow_memory, ret[0].finalizer = key, _get_memory, _grow_memory, _free
        return None
    except BaseException as exc:  # pragma: no cover
        log.exception("new_memory callback")
        return error(f"cannot create a linear memory: {exc}")


@_GetMemory
def _get_memory(key: Any, size: Any, capacity: Any) -> int:
    memory = _memories[key]
    size[0], capacity[0] = memory.size, memory.capacity
    return memory.base


@_GrowMemory
def _grow_memory(key: Any, new_size: int) -> int | None:
    try:
        memory = _memories[key]
        if memory.control is not None and not memory.control.allow_memory(new_size):
            return error(f"memory.grow to {new_size} bytes is over the limit")
        if new_size > memory.capacity or _libc.mprotect(memory.base, new_size, _PROT_READ_WRITE) != 0:
            return error(f"cannot grow linear memory to {new_size} bytes")
        memory.size = new_size
        return None
    except BaseException as exc:  # pragma: no cover
        log.exception("grow_memory callback")
        return error(f"cannot grow linear memory: {exc}")


@_Finalizer
def _free(key: Any) -> None:
    memory = _memories.pop(key or 0, None)
    if memory is not None:
        _libc.munmap(memory.base, memory.mapped)


@_Finalizer
def _no_finalizer(env: Any) -> None:  # pragma: no cover - the creator lives as long as the process
    return None


_CREATOR = _MemoryCreatorC(None, _new_memory, _no_finalizer)
