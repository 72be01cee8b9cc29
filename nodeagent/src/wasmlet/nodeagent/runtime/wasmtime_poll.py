"""WASI `poll_oneoff` that a stop can interrupt.

Epoch interruption stops wasm code, not a host call: a module asleep in wasmtime's own
`poll_oneoff` (every `sleep()`, `nanosleep()`, a service loop's pause) would hold its thread,
and its Pod's deletion, until the sleep ends. Measured before this module existed: stopping 50
`ticker`s took 1.0 s (their sleep), and a module sleeping for minutes could only be abandoned.

So `poll_oneoff` is ours when every subscription is a clock (the sleep case): the thread waits
on the instance's `Control`, which a stop wakes at once, and the events are written back as
wasmtime would. Any subscription on a file descriptor goes to wasmtime's own implementation
(from a linker where it is not replaced) with unchanged semantics.

Layouts (wasip1, little-endian): a subscription is 48 bytes — userdata u64 @0, tag u8 @8
(0 clock, 1 fd_read, 2 fd_write), clock id u32 @16, timeout u64 @24, precision u64 @32,
flags u16 @40 (bit 0: absolute time); an event is 32 bytes — userdata u64 @0, error u16 @8,
type u8 @10.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import time
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from wasmlet.nodeagent.runtime.wasmtime_native import (
    HostFunction,
    current_control,
    define_wasi_function,
    next_key,
    trap,
)

log = logging.getLogger(__name__)

_SUBSCRIPTION, _EVENT = 48, 32
_CLOCK_REALTIME, _CLOCK_MONOTONIC = 0, 1
_ERRNO_SUCCESS, _ERRNO_FAULT, _ERRNO_INVAL = 0, 21, 28

_caller_context = ffi.dll["wasmtime_caller_context"]
_caller_context.argtypes, _caller_context.restype = [ctypes.c_void_p], ctypes.c_void_p
_caller_export = ffi.dll["wasmtime_caller_export_get"]
_caller_export.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_extern_t)]
_caller_export.restype = ctypes.c_bool
_memory_data = ffi.dll["wasmtime_memory_data"]
_memory_data.argtypes, _memory_data.restype = [ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_memory_t)], ctypes.c_void_p
_memory_size = ffi.dll["wasmtime_memory_data_size"]
_memory_size.argtypes, _memory_size.restype = [ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_memory_t)], ctypes.c_size_t
_linker_get = ffi.dll["wasmtime_linker_get"]
_linker_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                        ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_extern_t)]
_linker_get.restype = ctypes.c_bool
_func_call = ffi.dll["wasmtime_func_call"]
_func_call.argtypes = [ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_func_t), ctypes.POINTER(ffi.wasmtime_val_t),
                       ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_val_t), ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
_func_call.restype = ctypes.c_void_p

# The linkers that still hold wasmtime's own poll_oneoff, by the key passed as `env`.
_originals: dict[int, wasmtime.Linker] = {}


def define_poll_oneoff(linker: wasmtime.Linker, original: wasmtime.Linker) -> None:
    """Replace `poll_oneoff` in `linker`; fd polls go to the one in `original` (a plain `define_wasi`)."""
    key = next_key()
    _originals[key] = original
    i32 = wasmtime.ValType.i32()
    define_wasi_function(linker, "poll_oneoff", wasmtime.FuncType([i32] * 4, [i32]), _poll_oneoff, key)


@HostFunction
def _poll_oneoff(env: Any, caller: Any, args: Any, nargs: int, results: Any, nresults: int) -> int | None:
    try:
        context = _caller_context(caller)
        memory = _guest_memory(caller, context)
        subscriptions, events, count, nevents = (args[i].of.i32 & 0xFFFFFFFF for i in range(4))
        if memory is None or count == 0:
            return _errno(results, _ERRNO_INVAL)
        base, size = memory
        if subscriptions + count * _SUBSCRIPTION > size or events + count * _EVENT > size or nevents + 4 > size:
            return _errno(results, _ERRNO_FAULT)
        raw = ctypes.string_at(base + subscriptions, count * _SUBSCRIPTION)
        clocks = [struct.unpack_from("<QB7xI4xQQH", raw, i * _SUBSCRIPTION) for i in range(count)]
        if any(tag != 0 or clock not in (_CLOCK_REALTIME, _CLOCK_MONOTONIC) for _, tag, clock, *_ in clocks):
            return _delegate(env, context, args, results)
        return _sleep(clocks, base + events, base + nevents, results)
    except BaseException as exc:  # pragma: no cover - never let an exception reach native code
        log.exception("poll_oneoff")
        return trap(f"poll_oneoff: {exc}")


def _sleep(clocks: list[tuple[int, ...]], events: int, nevents: int, results: Any) -> int | None:
    """Wait for the earliest clock, then report every clock that is due, as wasmtime does."""
    def deadline(clock: int, timeout: int, flags: int) -> int:
        now = time.time_ns() if clock == _CLOCK_REALTIME else time.monotonic_ns()
        return timeout - now if flags & 1 else timeout  # nanoseconds from now

    waits = [deadline(clock, timeout, flags) for _, _, clock, timeout, _, flags in clocks]
    control = current_control()
    pause = max(min(waits), 0) / 1e9
    if control is not None and not control.sleep(pause):
        return trap(control.kill_message())
    if control is None:
        time.sleep(pause)
    due = [userdata for (userdata, *_), wait in zip(clocks, waits) if wait <= min(waits)]
    out = b"".join(struct.pack("<QHB21x", userdata, _ERRNO_SUCCESS, 0) for userdata in due)
    ctypes.memmove(events, out, len(out))
    ctypes.memmove(nevents, struct.pack("<I", len(due)), 4)
    return _errno(results, _ERRNO_SUCCESS)


def _delegate(env: Any, context: int, args: Any, results: Any) -> int | None:
    """Call wasmtime's own poll_oneoff (fd subscriptions): not interruptible, exact semantics."""
    control = current_control()
    found = control.poll_oneoff if control is not None else None
    if found is None:  # once per store: each lookup adds a function to the store
        found = ffi.wasmtime_extern_t()
        module, name = b"wasi_snapshot_preview1", b"poll_oneoff"
        if not _linker_get(ctypes.cast(_originals[env].ptr(), ctypes.c_void_p), context, module, len(module), name,
                           len(name), ctypes.byref(found)):
            return trap("poll_oneoff: wasmtime's own implementation is missing")
        if control is not None:
            control.poll_oneoff = found
    outcome = ctypes.c_void_p()
    failure = _func_call(context, ctypes.byref(found.of.func), args, 4, results, 1, ctypes.byref(outcome))
    if failure:
        error = wasmtime.WasmtimeError._from_ptr(ctypes.cast(failure, ctypes.POINTER(ffi.wasmtime_error_t)))
        return trap(f"poll_oneoff: {error}")
    return outcome.value  # a trap from inside (or None): passed on as ours


def _guest_memory(caller: int, context: int) -> tuple[int, int] | None:
    export = ffi.wasmtime_extern_t()
    if not _caller_export(caller, b"memory", 6, ctypes.byref(export)) or export.kind != ffi.WASMTIME_EXTERN_MEMORY.value:
        return None
    return _memory_data(context, ctypes.byref(export.of.memory)) or 0, _memory_size(context, ctypes.byref(export.of.memory))


def _errno(results: Any, errno: int) -> None:
    results[0].kind = ffi.WASMTIME_I32.value
    results[0].of.i32 = errno
    return None
