"""WASI 0.2 command components (`wasi:cli/run`) on wasmtime: which imports the host gives, and
how one is entered.

A component is linked by name against wasmtime's WASI 0.2 implementation (`add_wasip2`), and
against its outgoing `wasi:http` only when the Pod asks for the network (`hostNetwork: true`).
What a component imports is read from its binary (`wasmbinary.world`) and compared with
`HOST_INTERFACES` before it is started, so a Pod that cannot run here fails naming every
interface the host lacks, not only the first one the linker trips over. Interfaces match as
the linker matches them: by package and name, any `0.2.x` version (semver-compatible).

A component runs through its exported `wasi:cli/run@0.2.x` instance's `run` function. Its
result is `ok` (exit 0) or `err` (exit 1); `wasi:cli/exit` ends the run with an `ExitTrap`
carrying the code. Everything else — stores, WASI contexts, limits, stops — is shared with
core modules (`wasmtime_instance`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import wasmtime
from wasmtime import component

from wasmlet.nodeagent.wasmbinary import World

WASI_02 = "0.2."
# What `Linker.add_wasip2()` defines in wasmtime 51 (its `wasmtime-wasi` p2 bindings).
HOST_INTERFACES = frozenset({
    "wasi:cli/environment", "wasi:cli/exit", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
    "wasi:cli/terminal-input", "wasi:cli/terminal-output", "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout", "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock",
    "wasi:filesystem/types", "wasi:filesystem/preopens",
    "wasi:io/error", "wasi:io/poll", "wasi:io/streams",
    "wasi:random/random", "wasi:random/insecure", "wasi:random/insecure-seed",
    "wasi:sockets/network", "wasi:sockets/instance-network", "wasi:sockets/udp", "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp", "wasi:sockets/tcp-create-socket", "wasi:sockets/ip-name-lookup",
})
# What `Linker.add_wasi_http()` adds: outgoing requests only (no incoming handler).
HTTP_INTERFACES = frozenset({"wasi:http/types", "wasi:http/outgoing-handler"})
RUN_INTERFACE = "wasi:cli/run"

# Runs a started component or module in its store: None when it returned, or an exit code.
Entry = Callable[[wasmtime.Store], "int | None"]


def _split(name: str) -> tuple[str, str]:
    interface, _, version = name.partition("@")
    return interface, version


def missing_imports(world: World, network: bool) -> list[str]:
    """The imports of `world` the host does not give (with the network, when `network`)."""
    offered = HOST_INTERFACES | HTTP_INTERFACES if network else HOST_INTERFACES
    return [name for name in world.imports
            if _split(name)[0] not in offered or not _split(name)[1].startswith(WASI_02)]


def unsupported_message(container: str, missing: Iterable[str], network: bool) -> str:
    """Why a component cannot run here, naming each missing interface."""
    names = list(missing)
    text = (f"container {container!r}: the component imports {', '.join(names)}, which the wasmtime runtime does "
            f"not provide (it provides WASI 0.2: wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, "
            f"wasi:sockets")
    if not network and any(_split(name)[0] in HTTP_INTERFACES for name in names):
        return text + "; and outgoing wasi:http when the Pod has hostNetwork: true)"
    return text + (", and outgoing wasi:http)" if network else ")")


def run_export(world: World) -> str | None:
    """The `wasi:cli/run@0.2.x` export a command component is entered through, if any."""
    return next((name for name in world.exports
                 if _split(name)[0] == RUN_INTERFACE and _split(name)[1].startswith(WASI_02)), None)


class ComponentLinkers:
    """One linker without and one with outgoing `wasi:http`, shared by every instance."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._plain = component.Linker(engine)
        self._plain.add_wasip2()
        self._http = component.Linker(engine)
        self._http.add_wasip2()
        self._http.add_wasi_http()

    def entry(self, compiled: component.Component, run: str, network: bool) -> Callable[[wasmtime.Store], Entry]:
        """Instantiates `compiled` in a store (whose WASI is set) and returns how to run it there."""
        linker = self._http if network else self._plain

        def instantiate(store: wasmtime.Store) -> Entry:
            if network:
                store.set_wasi_http()
            instance = linker.instantiate(store, compiled)
            func = _run_function(instance, store, run)
            return lambda store: _outcome(func(store))
        return instantiate


def _run_function(instance: component.Instance, store: wasmtime.Store, run: str) -> Any:
    exported = instance.get_export_index(store, run)
    index = instance.get_export_index(store, "run", exported) if exported is not None else None
    func = instance.get_func(store, index) if index is not None else None
    if func is None:
        raise wasmtime.WasmtimeError(f"the component exports no function run in {run}")
    return func


def _outcome(result: Any) -> int | None:
    """`run` returns result<_, _>: ok is a normal return, err is exit status 1 (as wasmtime's CLI)."""
    return 1 if getattr(result, "tag", "ok") == "err" else None
