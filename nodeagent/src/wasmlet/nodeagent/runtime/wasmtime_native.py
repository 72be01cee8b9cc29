"""The engine hooks wasmtime-py does not wrap, bound through its C API with ctypes.

- **Epoch deadline callback** (`wasmtime_store_epoch_deadline_callback`): runs on the thread
  executing wasm whenever the store's epoch deadline passes. It ends the instance (stop, memory
  limit) or pauses it (CPU limit), then lets it continue for one more tick.
- **Host memory creator**: in `wasmtime_memory`; **`poll_oneoff`** (interruptible sleeps): in
  `wasmtime_poll`. Both build on what is here (`define_wasi_function`, `bound`, `trap`).
- **`proc_exit`**, defined over wasmtime's own: wasmtime's WASI turns an exit status of 126 or
  more into a trap without the status (`exit with invalid exit status outside of [0..126)`),
  and `exit(-1)` (status 255) is common. Ours records the status and ends the run with a trap,
  so a module's exit code is what it asked for, as under Wasmer and in a Linux container
  (which keeps the low 8 bits). A host function written in Python through wasmtime-py would
  pass its exception through a process-wide global, unsafe with one thread per instance.

Native code calls these functions for as long as the engine and its stores live, longer than
any Python object they could be bound to; so they are module-level, and so is their
bookkeeping (`_controls`). Every callback catches everything: an exception in a ctypes
callback would hand the engine a null pointer.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import threading
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from wasmlet.nodeagent.runtime.wasmtime_control import Control

log = logging.getLogger(__name__)

_EpochCallback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64),
                                  ctypes.POINTER(ctypes.c_uint8))
_UPDATE_DEADLINE_CONTINUE = 0
HostFunction = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_val_t),
                                 ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_val_t), ctypes.c_size_t)

# `dll[name]` builds a fresh function object: our argtypes never touch wasmtime-py's own bindings.
_set_epoch_callback = ffi.dll["wasmtime_store_epoch_deadline_callback"]
_set_epoch_callback.argtypes = [ctypes.c_void_p, _EpochCallback, ctypes.c_void_p, ctypes.c_void_p]
_set_epoch_callback.restype = None
_define_function = ffi.dll["wasmtime_linker_define_func"]
_define_function.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                             ctypes.c_void_p, HostFunction, ctypes.c_void_p, ctypes.c_void_p]
_define_function.restype = ctypes.c_void_p


_keys = itertools.count(1)
_controls: dict[int, Control] = {}
_binding = threading.local()  # the Control of the instance running on this thread


def error(message: str) -> int:
    """A new `wasmtime_error_t*` (as an address) that the engine takes ownership of."""
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), ctypes.c_void_p).value or 0


def next_key() -> int:
    """A process-unique key for native callbacks' `env`/`data` pointers."""
    return next(_keys)


def current_control() -> Control | None:
    """The Control of the instance being instantiated or run on this thread (see `bound`)."""
    control: Control | None = getattr(_binding, "control", None)
    return control


def define_wasi_function(linker: wasmtime.Linker, name: str, signature: wasmtime.FuncType, function: Any,
                         env: int | None = None) -> None:
    """Define (or replace) `wasi_snapshot_preview1.<name>` in `linker` as the native callback `function`."""
    module, field = b"wasi_snapshot_preview1", name.encode()
    linker.allow_shadowing = True
    failure = _define_function(ctypes.cast(linker.ptr(), ctypes.c_void_p), module, len(module), field, len(field),
                               ctypes.cast(signature.ptr(), ctypes.c_void_p), function, env, None)
    linker.allow_shadowing = False
    if failure:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(failure, ctypes.POINTER(ffi.wasmtime_error_t)))


def define_proc_exit(linker: wasmtime.Linker) -> None:
    """Replace WASI's `proc_exit` in `linker` (after `define_wasi`) with ours."""
    define_wasi_function(linker, "proc_exit", wasmtime.FuncType([wasmtime.ValType.i32()], []), _proc_exit)


def trap(message: str) -> int:
    """A new `wasm_trap_t*` (as an address) for a host function to return: the run ends with it."""
    data = message.encode()
    return ctypes.cast(ffi.wasmtime_trap_new(data, len(data)), ctypes.c_void_p).value or 0


def watch(store: wasmtime.Store, control: Control) -> int:
    """Route `store`'s epoch deadlines to `control`; returns the key to pass to `unwatch`."""
    key = next(_keys)
    _controls[key] = control
    _set_epoch_callback(ctypes.cast(store.ptr(), ctypes.c_void_p), _on_epoch_deadline, key, None)
    store.set_epoch_deadline(1)
    return key


def unwatch(key: int) -> None:
    _controls.pop(key, None)


class bound:  # noqa: N801 - a context manager around a module's instantiation and run
    """Inside the block, memories created and `proc_exit` called on this thread are `control`'s."""

    def __init__(self, control: Control) -> None:
        self._control = control

    def __enter__(self) -> None:
        _binding.control = self._control

    def __exit__(self, *exc: Any) -> None:
        _binding.control = None


@_EpochCallback
def _on_epoch_deadline(context: Any, key: Any, delta: Any, kind: Any) -> int | None:
    try:
        control = _controls.get(key or 0)
        if control is not None and not control.on_deadline():
            return error(control.kill_message())
    except BaseException:  # pragma: no cover - never let an exception reach native code
        log.exception("epoch deadline callback")
    delta[0] = 1
    kind[0] = _UPDATE_DEADLINE_CONTINUE
    return None


@HostFunction
def _proc_exit(env: Any, caller: Any, args: Any, nargs: int, results: Any, nresults: int) -> int | None:
    try:
        status = args[0].of.i32 & 0xFF  # as a Linux process's exit status: the low 8 bits
        control = current_control()
        if control is not None:
            control.exit_code = status
        message = f"proc_exit({status})"
    except BaseException:  # pragma: no cover
        log.exception("proc_exit")
        message = "proc_exit"
    return trap(message)
