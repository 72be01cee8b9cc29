"""One wasmtime engine of the backend: its configuration, linkers, epoch clock, and the
modules and components compiled for it (in memory and in its on-disk cache).

The backend keeps two for containers (`WasmtimeRuntime`), because one configuration cannot serve both:
- `capped` allocates linear memories itself (`wasmtime_memory`), so a memory limit can end an
  instance `OOMKilled`. Its memories are private copies: data segments are copied at every
  instantiation (`memory_init_cow` off).
- `shared` leaves memories to wasmtime, which maps a module's initial memory image copy-on-write
  from the compiled artifact. For a componentize-py component (an interpreter heap snapshot)
  that is the difference between ~6 ms and ~1 ms per start, and between ~11.8 MB and ~4.6 MB
  of resident memory per running instance (bench/RESULTS.md).
A container with `resources.limits.memory` runs on `capped`, every other one on `shared`.
wasmtime refuses an artifact compiled for the other configuration, so each engine has its own
cache directory: the compiled cache is keyed by binary digest and engine.

A third, `pooled`, runs HTTP requests' instances of core modules: `shared`'s configuration with
wasmtime's pooling allocator (`wasmtime_pooling`), which reuses linear memories instead of
mapping one per instance. Its artifacts are `shared`'s (the allocator does not change compiled
code), so it reads and writes `shared`'s cache directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import component

from wasmlet.nodeagent.errors import ModuleError
from wasmlet.nodeagent.runtime import RunSpec
from wasmlet.nodeagent.runtime import wasmtime_native as native
from wasmlet.nodeagent.runtime.wasmtime_component import ComponentLinkers, Entry, run_export
from wasmlet.nodeagent.runtime.wasmtime_control import EpochClock
from wasmlet.nodeagent.runtime.wasmtime_exits import summary
from wasmlet.nodeagent.runtime.wasmtime_memory import install_memory_creator
from wasmlet.nodeagent.runtime.wasmtime_poll import define_poll_oneoff
from wasmlet.nodeagent.runtime.wasmtime_pooling import install_pooling
from wasmlet.nodeagent.wasmbinary import MAGIC, World, describe, kind_of

log = logging.getLogger(__name__)

Compiled = wasmtime.Module | component.Component


class Engine:
    """A configured engine and what was compiled for it; `worlds` is shared by the backend's engines.
    `pool_slots` > 0 makes it allocate instances from a pool of that many slots."""

    def __init__(self, cache_dir: Path, capped: bool, worlds: dict[str, World],
                 pool_slots: int = 0) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.consume_fuel = False
        if capped:
            install_memory_creator(config)
        if pool_slots:
            install_pooling(config, pool_slots)
        self.engine = wasmtime.Engine(config)
        self.clock = EpochClock(self.engine)
        self.cache_dir = cache_dir
        self._linker = wasmtime.Linker(self.engine)
        self._linker.define_wasi()
        native.define_proc_exit(self._linker)
        define_poll_oneoff(self._linker, self.engine)
        self._components = ComponentLinkers(self.engine)
        self._worlds = worlds  # per component digest: what it imports and exports
        self._modules: dict[str, Compiled] = {}
        self._linked: dict[str, wasmtime.InstancePre] = {}
        self._compiling: dict[str, asyncio.Task[Compiled]] = {}

    async def close(self) -> None:
        """Cancel compiles in flight (their threads finish on their own)."""
        for task in self._compiling.values():
            task.cancel()
        await asyncio.gather(*self._compiling.values(), return_exceptions=True)

    async def compiled(self, path: Path, digest: str) -> Compiled:
        """The compiled module or component for `digest`: from memory, the disk cache, or compiled (once at a time)."""
        module = self._modules.get(digest)
        if module is not None:
            return module
        task = self._compiling.get(digest)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self._load_or_compile, path, digest))
            self._compiling[digest] = task
            task.add_done_callback(lambda _: self._compiling.pop(digest, None))
        module = await asyncio.shield(task)
        self._modules[digest] = module
        return module

    def _load_or_compile(self, path: Path, digest: str) -> Compiled:
        """Blocking: runs in a worker thread. The binary's header says module or component; a
        cached artifact is enough without the binary (wasmtime refuses one of the other kind)."""
        header = _header(path)
        kind = kind_of(header)
        cached = self.cache_path(digest)
        kinds: list[type[Compiled]] = [component.Component] if kind == "component" else [wasmtime.Module] \
            if kind == "module" else [wasmtime.Module, component.Component]
        for loader in kinds if cached.exists() else []:
            try:
                return self._checked(loader.deserialize_file(self.engine, str(cached)), digest)
            except wasmtime.WasmtimeError as exc:  # another engine version or configuration, or kind
                log.info("compiled cache %s not usable (%s)", cached.name, summary(str(exc)))
        if kind is None:
            why = describe(header) if header[:4] == MAGIC else "it does not start with the wasm magic bytes"
            raise ModuleError(f"not a wasm module ({digest[:19]}): {why}", reason="InvalidModule")
        try:
            compiled = self._checked(kinds[0](self.engine, path.read_bytes()), digest)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"not a valid wasm {kind} ({digest[:19]}): {summary(str(exc))}",
                              reason="InvalidModule") from exc
        self._store_compiled(cached, compiled)
        return compiled

    def _checked(self, compiled: Compiled, digest: str) -> Compiled:
        """`compiled` if it is a WASI command (a module exporting `_start`, a component exporting
        `wasi:cli/run`), else ModuleError; a component's imports and exports are recorded."""
        if isinstance(compiled, wasmtime.Module):
            if not any(e.name == "_start" and isinstance(e.type, wasmtime.FuncType) for e in compiled.exports):
                raise ModuleError(f"module {digest[:19]} exports no _start function: not a WASI command",
                                  reason="InvalidModule")
            return compiled
        kind = compiled.type
        found = World(tuple(kind.imports(self.engine)), tuple(kind.exports(self.engine)))
        if run_export(found) is None:
            raise ModuleError(f"component {digest[:19]} exports no wasi:cli/run@0.2.x: not a WASI command "
                              f"(it exports {', '.join(found.exports) or 'nothing'})", reason="InvalidModule")
        self._worlds[digest] = found
        return compiled

    def cache_path(self, digest: str) -> Path:
        return self.cache_dir / f"{digest.removeprefix('sha256:')}.cwasm"

    def _store_compiled(self, path: Path, module: Compiled) -> None:
        tmp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
                tmp = Path(handle.name)
                handle.write(module.serialize())
            os.replace(tmp, path)  # readers see the whole artifact or none
        except OSError as exc:
            log.warning("cannot cache compiled module %s: %s", path.name, exc)
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def instantiation(self, spec: RunSpec, compiled: Compiled) -> Callable[[wasmtime.Store], Entry]:
        """How an instance of `compiled` is made in a store, and entered."""
        if isinstance(compiled, component.Component):
            run = run_export(self._worlds[spec.module_digest])
            assert run is not None  # checked when it was compiled
            return self._components.entry(compiled, run, spec.network)
        pre = self._linked.get(spec.module_digest)
        if pre is None:
            try:
                pre = self._linker.instantiate_pre(compiled)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"cannot link module {spec.module_digest[:19]}: {summary(str(exc))}",
                                  reason="StartError") from exc
            self._linked[spec.module_digest] = pre
        linked = pre

        def instantiate(store: wasmtime.Store) -> Entry:
            start = linked.instantiate(store).exports(store)["_start"]
            if not isinstance(start, wasmtime.Func):
                raise wasmtime.WasmtimeError("the module's _start export is not a function")
            return lambda store: start(store)
        return instantiate


def _header(path: Path) -> bytes:
    """The binary's first 8 bytes (empty when it cannot be read: its compiled artifact may do)."""
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except OSError:
        return b""
