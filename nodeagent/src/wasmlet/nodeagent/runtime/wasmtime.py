"""The `wasmtime` backend, on wasmtime-py (docs/runtimes.md): real host directories, memory caps,
CPU limits, and stops that work against busy code.

Shape of the backend:
- Engines (`wasmtime_engine`): containers with a memory limit run on one whose linear
  memories the agent allocates (so a refused grow is seen), all others on one whose memories
  wasmtime maps copy-on-write; an HTTP request's instance of a core module runs on a third
  that takes it from a pool of reusable slots (`wasmtime_pooling`), or on the second when all
  slots are taken. Each has one compiled `Module` and one linked `InstancePre` per module
  digest; per instance there is only a `Store` with its WASI context and a thread
  (`wasmtime_instance`). Epoch interruption is on, fuel off.
- WASI 0.2 components (`wasi:cli/run`) run beside core modules, told apart by the binary's
  header (`wasmbinary`); they link by name per instance (`wasmtime_component`: wasmtime-py
  has no pre-instantiation for components), with the same WASI context, limits and stops.
- Compiled modules and components are cached on disk per engine
  (`<cache_dir>/wasmtime-<version>[-capped]/<digest>.cwasm`, written atomically) so a restarted
  agent does not compile again. wasmtime refuses an artifact from another version or
  configuration; it is then compiled afresh.
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
import resource
from collections.abc import Callable
from pathlib import Path

import wasmtime

from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.runtime import OutputSink, RunSpec
from wasmlet.nodeagent.runtime.wasmtime_component import missing_imports, unsupported_message
from wasmlet.nodeagent.runtime.wasmtime_control import Control
from wasmlet.nodeagent.runtime.wasmtime_engine import Compiled, Engine
from wasmlet.nodeagent.runtime.wasmtime_exits import working_dir_mount
from wasmlet.nodeagent.runtime.wasmtime_instance import StartFailed, WasmtimeInstance
from wasmlet.nodeagent.runtime.wasmtime_pooling import SLOTS, PooledSlots
from wasmlet.nodeagent.runtime.wasmtime_preopens import open_preopens
from wasmlet.nodeagent.runtime.wasmtime_threads import InstanceThreads
from wasmlet.nodeagent.wasmbinary import World

log = logging.getLogger(__name__)

# A stopped instance's thread ends right after its status is known; an abandoned one (stuck in
# a host call) is not waited for longer than this when the agent closes.
CLOSE_JOIN_SECONDS = 1.0
# How wasmtime says a module does not fit a slot of the pool (checked when the module is loaded).
POOL_MISFIT = "does not fit in pooling allocator requirements"


class WasmtimeRuntime:
    """Runs WASI command modules (wasip1) and components (wasip2) in wasmtime, one thread per running instance."""

    name = "wasmtime"

    def __init__(self, cache_dir: Path, pool_slots: int = SLOTS) -> None:
        _raise_open_files_limit()
        version = importlib.metadata.version("wasmtime")
        self.version = f"wasmtime-py/{version}"
        self._worlds: dict[str, World] = {}  # per component digest: what it imports and exports
        self._shared = Engine(cache_dir / f"wasmtime-{version}", capped=False, worlds=self._worlds)
        self._capped: Engine | None = None  # made when a container first has a memory limit
        self._capped_dir = cache_dir / f"wasmtime-{version}-capped"
        self._pooled: Engine | None = None  # made at the first HTTP request
        self._slots = PooledSlots(pool_slots)
        self._unpoolable: set[str] = set()  # digests of modules beyond the pool's per-instance bounds
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
        """Compile for the engine of containers without a memory limit (the common case)."""
        await self._shared.compiled(module_path, digest)

    async def start(self, spec: RunSpec, output: OutputSink) -> WasmtimeInstance:
        engine = self._engine_for(spec)
        compiled = await engine.compiled(spec.module_path, spec.module_digest)
        self.check(spec)  # after compiling: a component's imports are known then
        instance = await self._launch_pooled(spec, engine, compiled, output)
        if instance is None:
            instance = await self._launch(spec, engine, compiled, output)
        self._running.add(instance)
        instance.on_end(lambda: self._running.discard(instance))
        return instance

    async def _launch_pooled(self, spec: RunSpec, engine: Engine, compiled: Compiled,
                             output: OutputSink) -> WasmtimeInstance | None:
        """An HTTP request's instance of a core module without a memory limit, on the pooled
        engine; None for every other instance, when no slot is free, or when the module does not
        fit the pool (then never again: its requests run on the on-demand engine)."""
        if (spec.capture_limit is None or engine is not self._shared or not isinstance(compiled, wasmtime.Module)
                or not self._slots.slots or spec.module_digest in self._unpoolable):
            return None
        if self._pooled is None:
            self._pooled = Engine(self._shared.cache_dir, capped=False, worlds=self._worlds,
                                  pool_slots=self._slots.slots)
        give_back = self._slots.take()
        if give_back is None:
            return None
        # Once the instance exists it gives the slot back itself (when its store closes); a second
        # give_back() here, after it failed to start, is a no-op.
        try:
            pooled = await self._pooled.compiled(spec.module_path, spec.module_digest)
            return await self._launch(spec, self._pooled, pooled, output, store_closed=give_back)
        except ModuleError as exc:
            give_back()
            if POOL_MISFIT not in exc.message:
                raise  # the module's own failure, which the on-demand engine would meet as well
            log.info("module %s does not run in wasmtime's instance pool (%s): its requests use the "
                     "on-demand engine", spec.module_digest[:19], exc.message)
            self._unpoolable.add(spec.module_digest)
            return None
        except BaseException:
            give_back()
            raise

    async def _launch(self, spec: RunSpec, engine: Engine, compiled: Compiled, output: OutputSink,
                      store_closed: Callable[[], None] | None = None) -> WasmtimeInstance:
        instantiate = engine.instantiation(spec, compiled)
        preopens = open_preopens(spec)  # now, as the container starts: PodConfigError for a link on the way
        control = Control(engine.clock, spec.memory_limit_bytes, spec.cpu_limit)
        try:
            try:
                instance = WasmtimeInstance(spec, engine.engine, instantiate, control, output, self._threads, preopens,
                                            store_closed=store_closed)
            except BaseException:
                preopens.close()
                raise
            await instance.launch()
        except StartFailed as exc:
            raise ModuleError(str(exc), reason="StartError") from exc
        except OSError as exc:  # out of file descriptors for the output pipes
            raise ModuleError(f"cannot start module {spec.module_digest[:19]}: {exc}", reason="StartError") from exc
        return instance

    @property
    def pooled_instances(self) -> int:
        """Instances holding a slot of the pooled engine now."""
        return self._slots.taken

    def cache_path(self, digest: str) -> Path:
        """Where the compiled artifact for containers without a memory limit is cached."""
        return self._shared.cache_path(digest)

    async def release(self, pod_uid: str) -> None:
        """Nothing is shared per Pod: volumes are host directories, preopened per instance."""

    async def close(self) -> None:
        """Stop every instance at once (no grace: the agent is going away) and wait for their threads."""
        instances = list(self._running)
        await asyncio.gather(*(instance.stop(0) for instance in instances))
        await asyncio.to_thread(self._join, instances)
        self._threads.close()
        for engine in self._engines():
            await engine.close()

    def _engine_for(self, spec: RunSpec) -> Engine:
        if spec.memory_limit_bytes is None:
            return self._shared
        if self._capped is None:
            self._capped = Engine(self._capped_dir, capped=True, worlds=self._worlds)
        return self._capped

    def _engines(self) -> list[Engine]:
        return [self._shared] + [engine for engine in (self._capped, self._pooled) if engine is not None]

    def _join(self, instances: list[WasmtimeInstance]) -> None:
        for instance in instances:
            instance.join(CLOSE_JOIN_SECONDS)
        for engine in self._engines():
            engine.clock.join(CLOSE_JOIN_SECONDS)


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
