"""One running wasmtime instance: its own thread, its output pipes, and how it ends.

Calls into wasmtime block, so each instance runs on a thread of its own (the GIL is released
while wasm runs: a busy module never stalls the event loop). The module's stdout and stderr
are pipes: wasmtime writes to them natively and the event loop reads them as data arrives,
so a log follower sees every line as it is written, and a full pipe (nobody reading) simply
blocks the module. Measured: ~1.2 M lines/s, where the binding's per-write Python callback
(`stdout_custom`) managed ~17 k lines/s and ran on wasmtime's tokio threads (see
docs/runtimes.md). The pipes end (EOF) when the store is closed: `wait()` returns only after
every byte has reached the sink.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import wasmtime

from wasmlet.nodeagent.cpus import LOOP, SHORT_SECONDS
from wasmlet.nodeagent.runtime import EXIT_KILLED, ExitStatus, OutputSink, RunSpec
from wasmlet.nodeagent.runtime import wasmtime_native as native
from wasmlet.nodeagent.runtime.wasmtime_component import Entry
from wasmlet.nodeagent.runtime.wasmtime_control import Control
from wasmlet.nodeagent.runtime.wasmtime_exits import exit_status, summary
from wasmlet.nodeagent.runtime.wasmtime_output import CapturedOutput, OutputPipes
from wasmlet.nodeagent.runtime.wasmtime_preopens import Preopens
from wasmlet.nodeagent.runtime.wasmtime_threads import InstanceThreads

log = logging.getLogger(__name__)

# After a stop request a busy module ends within one epoch tick and a sleeping one at once
# (`wasmtime_poll`); one blocked in another host call (reading a FIFO on a hostPath) only when
# the call returns. Past this margin the instance is reported killed and its thread is left to
# end by itself at its next wasm instruction.
KILL_MARGIN = 2.0
# Output still in the pipes when the module's thread has ended is drained for at most this long.
DRAIN_SECONDS = 2.0


class StartFailed(Exception):
    """The module could not be instantiated (unknown import, unopenable volume)."""


class WasmtimeInstance:
    """A module running on its own thread; `wait()`/`stop()` are safe to call more than once."""

    def __init__(self, spec: RunSpec, engine: wasmtime.Engine, instantiate: Callable[[wasmtime.Store], Entry],
                 control: Control, output: OutputSink, threads: InstanceThreads, preopens: Preopens,
                 store_closed: Callable[[], None] | None = None) -> None:
        """`store_closed` is called once the instance's store is closed (or was never made), on
        whichever thread closed it."""
        self._loop = asyncio.get_running_loop()
        self._spec = spec
        self._preopens = preopens  # ours until the module's thread has handed them to wasmtime
        self._engine = engine
        self._instantiate = instantiate  # a core module's or a component's (`wasmtime_component`)
        self._control = control
        self._pipes: OutputPipes | CapturedOutput = (
            OutputPipes(self._loop, output) if spec.capture_limit is None
            else CapturedOutput(self._loop, output, spec.capture_limit))
        self._started: asyncio.Future[str | None] = self._loop.create_future()
        self._ended: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._status: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._collector = asyncio.create_task(self._collect())
        self._threads = threads
        self._done = threading.Event()  # the module's thread is finished with it
        self._store_closed = store_closed
        # An HTTP request's instance is short work for the loop: it runs beside the loop's thread
        # until it has run `SHORT_SECONDS`, then on every CPU (`cpus`); others run on every CPU.
        self._short = spec.capture_limit is not None and LOOP.cpu is not None
        self._long = False  # it has run `SHORT_SECONDS` (set on the loop)
        self._tid = 0  # its thread, once it runs (set on that thread)

    async def launch(self) -> None:
        """Start the thread; return once the module is instantiated, or raise `StartFailed`."""
        if self._short:
            spread = self._loop.call_later(SHORT_SECONDS, self._spread)
            self._ended.add_done_callback(lambda _: spread.cancel())
        try:
            self._threads.run(self._main, f"wasmtime {self._spec.container}")
        except RuntimeError as exc:  # the process is out of threads
            self._preopens.close()
            self._closed_store()
            self._done.set()
            self._pipes.ended()
            self._control.end()
            self._ended.set_result(ExitStatus(EXIT_KILLED, "StartError", str(exc)))
            self._started.set_result(f"cannot start a thread for the module: {exc}")
        problem = await self._started
        if problem is not None:
            await self.wait()
            raise StartFailed(problem)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._status)

    async def stop(self, grace_seconds: float) -> ExitStatus:
        if not self._status.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._status), timeout=max(grace_seconds, 0))
            except TimeoutError:
                self._control.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(self._status), timeout=KILL_MARGIN)
                except TimeoutError:
                    await self._abandon()
        return await self.wait()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the event loop once the instance's status is known."""
        self._status.add_done_callback(lambda _: callback())

    @property
    def alive(self) -> bool:
        """The module's thread still runs (after an abandoned stop, until its host call returns)."""
        return not self._done.is_set()

    def join(self, timeout: float) -> None:
        """Blocking: wait (up to `timeout`) for the module's thread to end."""
        self._done.wait(timeout)

    def _spread(self) -> None:
        self._long = True  # a thread that has not begun yet sees this and spreads itself
        if self._tid and not self._done.is_set():
            LOOP.spread_thread(self._tid)

    async def _collect(self) -> None:
        status = await asyncio.shield(self._ended)
        try:
            async with asyncio.timeout(DRAIN_SECONDS):  # not wait_for: no task of its own, per request
                await self._pipes.drained()
        except TimeoutError:
            log.warning("%s: output pipes still open %ss after the module ended", self._spec.container, DRAIN_SECONDS)
        self._pipes.close()
        if not self._status.done():
            self._status.set_result(status)

    async def _abandon(self) -> None:
        self._collector.cancel()
        await asyncio.gather(self._collector, return_exceptions=True)
        self._pipes.close()
        if not self._status.done():
            self._status.set_result(ExitStatus(EXIT_KILLED, "Error", "killed by the agent: the module did not "
                                               f"return from a host call within {KILL_MARGIN:g}s of the stop"))

    # -- on the module's thread -------------------------------------------------------------

    def _main(self) -> None:
        if self._short:
            self._tid = threading.get_native_id()
        if self._short and not self._long:
            LOOP.beside_loop()
        else:
            LOOP.spread()
        try:
            status = self._execute()
        except BaseException as exc:  # a bug here must still end the instance, never the agent
            log.exception("%s: wasmtime instance failed", self._spec.container)
            self._post(self._started, f"wasmtime: {exc}")
            status = ExitStatus(EXIT_KILLED, "Error", f"wasmtime: {exc}")
        finally:
            self._preopens.close()
            self._closed_store()
            self._control.end()
            self._pipes.ended()
        self._post(self._ended, status)
        self._done.set()

    def _execute(self) -> ExitStatus:
        store = wasmtime.Store(self._engine)
        key = native.watch(store, self._control)
        try:
            try:
                stdin = _stdin_file(self._spec.stdin) if self._spec.stdin else None  # b"": stdin is empty anyway
                try:
                    store.set_wasi(self._wasi(stdin))
                finally:
                    if stdin is not None:
                        os.close(stdin)  # wasmtime opened its own descriptor of it
                self._pipes.close_write_ends()  # wasmtime holds its own: EOF comes when the store closes
                with native.bound(self._control):
                    entry = self._instantiate(store)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                if self._control.memory_wanted is None:
                    self._post(self._started, f"cannot instantiate the module: {summary(str(exc))}")
                    return ExitStatus(EXIT_KILLED, "StartError", summary(str(exc)))
                self._post(self._started, None)
                return exit_status(self._control, exc)
            self._post(self._started, None)
            self._control.begin()
            try:
                with native.bound(self._control):
                    code = entry(store)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                return exit_status(self._control, exc)
            if code is not None and self._control.exit_code is None:
                self._control.exit_code = code
            return exit_status(self._control, None)
        finally:
            native.unwatch(key)
            store.close()

    def _closed_store(self) -> None:
        if self._store_closed is not None:
            self._store_closed()

    def _wasi(self, stdin: int | None) -> wasmtime.WasiConfig:
        spec = self._spec
        wasi = wasmtime.WasiConfig()
        wasi.argv = spec.argv
        wasi.env = list(spec.env.items())
        self._pipes.configure(wasi)
        if stdin is not None:
            wasi.stdin_file = f"/proc/self/fd/{stdin}"
        for fd, guest, writable in self._preopens.entries:
            self._preopen(wasi, self._preopens.host_path(fd), guest, writable)
        self._preopens.close()  # wasmtime opened its own descriptors of them
        return wasi

    @staticmethod
    def _preopen(wasi: wasmtime.WasiConfig, host: str, guest: str, writable: bool) -> None:
        try:
            # wasmtime-py 51 takes one writable flag (later releases take permission flags).
            wasi.preopen_dir(host, guest, writable)
        except wasmtime.WasmtimeError as exc:
            raise wasmtime.WasmtimeError(f"volume at {guest}: cannot open its directory") from exc

    def _post(self, future: asyncio.Future[Any], value: Any) -> None:
        def deliver() -> None:
            if not future.done():
                future.set_result(value)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _stdin_file(data: bytes) -> int:
    """An in-memory file holding `data`, for wasmtime to open as stdin (at offset 0, then EOF)."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd
