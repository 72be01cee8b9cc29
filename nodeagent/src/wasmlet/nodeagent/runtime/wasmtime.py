"""The `wasmtime` backend, on wasmtime-py (DESIGN.md §5): real host directories, memory caps,
CPU limits, and stops that work against busy code.

Shape of the backend:
- One `Engine` for every instance (epoch interruption on, fuel off), one compiled `Module` and
  one linked `InstancePre` per module digest, and per instance only a `Store` with its WASI
  context and a thread (`wasmtime_instance`).
- WASI 0.2 components (`wasi:cli/run`) run beside core modules, told apart by the binary's
  header (`wasmbinary`); they link by name per instance (`wasmtime_component`: wasmtime-py
  has no pre-instantiation for components), with the same WASI context, limits and stops.
- Compiled modules and components are cached on disk (`<cache_dir>/wasmtime-<version>/<digest>.cwasm`,
  written atomically) so a restarted agent does not compile again. wasmtime refuses an
  artifact from another version or configuration; it is then compiled afresh.
- Limits: `resources.limits.memory` caps each linear memory, and a refused grow ends the
  instance `OOMKilled` (`wasmtime_memory`); `resources.limits.cpu` is a CFS-style duty cycle;
  a stop ends a busy loop within a 10 ms epoch tick of its grace period (`wasmtime_control`)
  and a sleeping module at once (`wasmtime_poll`). docs/runtimes.md has the semantics and the
  measurements.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import component

from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.runtime import OutputSink, RunSpec
from wasmlet.nodeagent.runtime import wasmtime_native as native
from wasmlet.nodeagent.runtime.wasmtime_component import (ComponentLinkers, Entry, missing_imports, run_export,
                                                           unsupported_message)
from wasmlet.nodeagent.runtime.wasmtime_control import Control, EpochClock
from wasmlet.nodeagent.runtime.wasmtime_exits import summary, working_dir_mount
from wasmlet.nodeagent.runtime.wasmtime_instance import StartFailed, WasmtimeInstance
from wasmlet.nodeagent.runtime.wasmtime_memory import install_memory_creator
from wasmlet.nodeagent.runtime.wasmtime_poll import define_poll_oneoff
from wasmlet.nodeagent.runtime.wasmtime_threads import InstanceThreads
from wasmlet.nodeagent.wasmbinary import World, describe, kind_of

log = logging.getLogger(__name__)

Compiled = wasmtime.Module | component.Component
# A stopped instance's thread ends right after its status is known; an abandoned one (stuck in
# a host call) is not waited for longer than this when the agent closes.
CLOSE_JOIN_SECONDS = 1.0


class WasmtimeRuntime:
    """Runs WASI command modules (wasip1) and components (wasip2) in wasmtime, one thread per running instance."""

    name = "wasmtime"

    def __init__(self, cache_dir: Path) -> None:
        _raise_open_files_limit()
        self.version = f"wasmtime-py/{importlib.metadata.version('wasmtime')}"
        self._cache_dir = cache_dir / f"wasmtime-{importlib.metadata.version('wasmtime')}"
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.consume_fuel = False
        install_memory_creator(config)
        self._engine = wasmtime.Engine(config)
        self._linker = wasmtime.Linker(self._engine)
        self._linker.define_wasi()
        native.define_proc_exit(self._linker)
        define_poll_oneoff(self._linker, self._engine)
        self._components = ComponentLinkers(self._engine)
        self._clock = EpochClock(self._engine)
        self._modules: dict[str, Compiled] = {}
        self._worlds: dict[str, World] = {}  # per component digest: what it imports and exports
        self._linked: dict[str, wasmtime.InstancePre] = {}
        self._compiling: dict[str, asyncio.Task[Compiled]] = {}
        self._running: set[WasmtimeInstance] = set()
        self._threads = InstanceThreads()

    def check(self, spec: RunSpec) -> None:
        if spec.working_dir is not None and working_dir_mount(spec) is None:
            raise UnsupportedPod(
                f"container {spec.container!r}: workingDir {spec.working_dir!r} is not inside any volumeMount; a "
                "wasm module sees only its mounted directories, so mount a volume at or above it",
                reason="UnsupportedField")
        known = self._worlds.get(spec.module_digest)
        missing = missing_imports(known, spec.network) if known is not None else []
        if missing:
            raise UnsupportedPod(unsupported_message(spec.container, missing, spec.network),
                                 reason="UnsupportedComponent")

    async def prepare(self, module_path: Path, digest: str) -> None:
        await self._module(module_path, digest)

    async def start(self, spec: RunSpec, output: OutputSink) -> WasmtimeInstance:
        compiled = await self._module(spec.module_path, spec.module_digest)
        self.check(spec)  # after compiling: a component's imports are known then
        instantiate = self._instantiation(spec, compiled)
        control = Control(self._clock, spec.memory_limit_bytes, spec.cpu_limit)
        try:
            instance = WasmtimeInstance(spec, self._engine, instantiate, control, output, self._threads)
            await instance.launch()
        except StartFailed as exc:
            raise ModuleError(str(exc), reason="StartError") from exc
        except OSError as exc:  # out of file descriptors for the output pipes
            raise ModuleError(f"cannot start module {spec.module_digest[:19]}: {exc}", reason="StartError") from exc
        self._running.add(instance)
        instance.on_end(lambda: self._running.discard(instance))
        return instance

    def _instantiation(self, spec: RunSpec, compiled: Compiled) -> Callable[[wasmtime.Store], Entry]:
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
            return lambda store: start(store)  # type: ignore[operator]
        return instantiate

    async def release(self, pod_uid: str) -> None:
        """Nothing is shared per Pod: volumes are host directories, preopened per instance."""

    async def close(self) -> None:
        """Stop every instance at once (no grace: the agent is going away) and wait for their threads."""
        instances = list(self._running)
        await asyncio.gather(*(instance.stop(0) for instance in instances))
        await asyncio.to_thread(self._join, instances)
        self._threads.close()
        for task in self._compiling.values():
            task.cancel()
        await asyncio.gather(*self._compiling.values(), return_exceptions=True)

    def _join(self, instances: list[WasmtimeInstance]) -> None:
        for instance in instances:
            instance.join(CLOSE_JOIN_SECONDS)
        self._clock.join(CLOSE_JOIN_SECONDS)

    async def _module(self, path: Path, digest: str) -> Compiled:
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
                return self._checked(loader.deserialize_file(self._engine, str(cached)), digest)
            except wasmtime.WasmtimeError as exc:  # another engine version or configuration, or kind
                log.info("compiled cache %s not usable (%s)", cached.name, summary(str(exc)))
        if kind is None:
            raise ModuleError(f"not a wasm module ({digest[:19]}): {describe(header)} (its first bytes are "
                              f"{header.hex(' ') or 'none'})", reason="InvalidModule")
        try:
            compiled = self._checked(kinds[0](self._engine, path.read_bytes()), digest)
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
        found = World(tuple(kind.imports(self._engine)), tuple(kind.exports(self._engine)))
        if run_export(found) is None:
            raise ModuleError(f"component {digest[:19]} exports no wasi:cli/run@0.2.x: not a WASI command "
                              f"(it exports {', '.join(found.exports) or 'nothing'})", reason="InvalidModule")
        self._worlds[digest] = found
        return compiled

    def cache_path(self, digest: str) -> Path:
        return self._cache_dir / f"{digest.removeprefix('sha256:')}.cwasm"

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


def _header(path: Path) -> bytes:
    """The binary's first 8 bytes (empty when it cannot be read: its compiled artifact may do)."""
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except OSError:
        return b""


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one, as Go programs (containerd, the kubelet)
    do at start: every running instance holds four pipe ends plus its preopened directories,
    and the usual soft limit of 1024 would stop a node at ~200 instances."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux's default fs.nr_open
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.info("cannot raise the open files limit from %d: %s", soft, exc)
