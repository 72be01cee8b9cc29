"""WASI `poll_oneoff` that a stop can interrupt.

Epoch interruption stops wasm code, not a host call: a module asleep in wasmtime's own
`poll_oneoff` (every `sleep()`, `nanosleep()`, a service loop's pause) would hold its thread,
and its Pod's deletion, until the sleep ends. Measured before this module existed: stopping 50
`ticker`s took 1.0 s (their sleep), and a module sleeping for minutes could only be abandoned.

So `poll_oneoff` is ours when every subscription is a clock (the sleep case): the thread waits
on the instance's `Control`, which a stop wakes at once, and the events are written back as
wasmtime would. A poll that includes a file descriptor goes to wasmtime's own implementation,
unchanged. WASI functions find their memory through the calling instance, so that call goes
through a small wasm trampoline (instantiated once per store, on the first such poll) that
imports the module's memory and re-exports it.

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

_TRAMPOLINE = """(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "env" "memory" (memory 0))
  (export "memory" (memory 0))
  (func (export "poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3))))"""

# Per backend (the key passed as the host function's `env`): its engine and compiled trampoline.
_trampolines: dict[int, tuple[wasmtime.Engine, wasmtime.Module]] = {}


def define_poll_oneoff(linker: wasmtime.Linker, engine: wasmtime.Engine) -> None:
    """Replace `poll_oneoff` in `linker` (after `define_wasi`)."""
    key = next_key()
    _trampolines[key] = (engine, wasmtime.Module(engine, bytes(wasmtime.wat2wasm(_TRAMPOLINE))))
    i32 = wasmtime.ValType.i32()
    define_wasi_function(linker, "poll_oneoff", wasmtime.FuncType([i32] * 4, [i32]), _poll_oneoff, key)


@HostFunction
def _poll_oneoff(env: Any, caller_ptr: Any, args: Any, nargs: int, results: Any, nresults: int) -> int | None:
    try:
        caller = wasmtime.Caller(ctypes.cast(caller_ptr, ctypes.POINTER(ffi.wasmtime_caller_t)))
        try:
            return _poll(env, caller, [args[i].of.i32 & 0xFFFFFFFF for i in range(4)], results)
        finally:
            caller._invalidate()
    except BaseException as exc:  # pragma: no cover - never let an exception reach native code
        log.exception("poll_oneoff")
        return trap(f"poll_oneoff: {exc}")


def _poll(env: int, caller: wasmtime.Caller, args: list[int], results: Any) -> int | None:
    subscriptions, events, count, nevents = args
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory) or count == 0:
        return _errno(results, _ERRNO_INVAL)
    base, size = ctypes.addressof(memory.data_ptr(caller).contents), memory.data_len(caller)
    if subscriptions + count * _SUBSCRIPTION > size or events + count * _EVENT > size or nevents + 4 > size:
        return _errno(results, _ERRNO_FAULT)
    raw = ctypes.string_at(base + subscriptions, count * _SUBSCRIPTION)
    clocks = [struct.unpack_from("<QB7xI4xQQH", raw, i * _SUBSCRIPTION) for i in range(count)]
    if any(tag != 0 or clock not in (_CLOCK_REALTIME, _CLOCK_MONOTONIC) for _, tag, clock, *_ in clocks):
        return _delegate(env, caller, memory, args, results)
    return _sleep(clocks, base + events, base + nevents, results)


def _sleep(clocks: list[tuple[int, ...]], events: int, nevents: int, results: Any) -> int | None:
    """Wait for the earliest clock, then report every clock that is due, as wasmtime does."""
    def remaining(clock: int, timeout: int, flags: int) -> int:
        if not flags & 1:
            return timeout
        return timeout - (time.time_ns() if clock == _CLOCK_REALTIME else time.monotonic_ns())

    waits = [remaining(clock, timeout, flags) for _, _, clock, timeout, _, flags in clocks]
    first = min(waits)
    control = current_control()
    if control is None:
        time.sleep(max(first, 0) / 1e9)
    elif not control.sleep(max(first, 0) / 1e9):
        return trap(control.kill_message())
    due = [userdata for (userdata, *_), wait in zip(clocks, waits, strict=True) if wait <= first]
    out = b"".join(struct.pack("<QHB21x", userdata, _ERRNO_SUCCESS, 0) for userdata in due)
    ctypes.memmove(events, out, len(out))
    ctypes.memmove(nevents, struct.pack("<I", len(due)), 4)
    return _errno(results, _ERRNO_SUCCESS)


def _delegate(env: int, caller: wasmtime.Caller, memory: wasmtime.Memory, args: list[int],
              results: Any) -> int | None:
    """wasmtime's own poll_oneoff (a descriptor is polled): exact semantics, not interruptible."""
    control = current_control()
    poll = control.poll_oneoff if control is not None else None
    if poll is None:
        engine, trampoline = _trampolines[env]
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        linker.define(caller, "env", "memory", memory)
        export = linker.instantiate(caller, trampoline).exports(caller)["poll"]
        assert isinstance(export, wasmtime.Func)  # the trampoline above exports a function
        poll = export
        if control is not None:
            control.poll_oneoff = poll  # one trampoline per store
    try:
        return _errno(results, poll(caller, *args))
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        return trap(str(exc))


def _errno(results: Any, errno: Any) -> int | None:
    """Set the call's errno result; the host function returns None (no trap)."""
    results[0].kind = ffi.WASMTIME_I32.value
    results[0].of.i32 = int(errno)
    return None
