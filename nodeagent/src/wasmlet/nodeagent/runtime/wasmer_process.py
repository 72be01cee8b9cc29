"""The agent's side of a wasmer worker process (`wasmer_worker`): start it, talk to it, kill it.

A `WorkerProcess` runs one Pod's containers; each container is a `WasmerInstance` here that
proxies the `Instance` protocol to the worker. When the worker ends, for whatever cause, every
container still running in it ends too, with a status that says why: `OOMKilled` when the worker
passed its memory cap, the status the agent chose when the agent killed it, `Error` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from wasmlet.nodeagent.errors import ModuleError
from wasmlet.nodeagent.runtime import EXIT_KILLED, ExitStatus, OutputSink
from wasmlet.nodeagent.runtime.wasmer_forkserver import Forked, ForkServer
from wasmlet.nodeagent.runtime.wasmer_memory import OOM_EXIT, anonymous_bytes, pod_cap
from wasmlet.nodeagent.runtime.wasmer_protocol import Message, ProtocolError, encode, read_message, unpack_output

log = logging.getLogger(__name__)

# A worker that does not say `ready` in this time is broken (it starts in ~0.1-0.3 s).
READY_TIMEOUT = 60.0
# A worker that does not say it is reset for the next Pod in this time (~1 ms) is killed instead.
RECYCLE_TIMEOUT = 5.0
# How much longer than its grace period a stop may take before the worker is killed: wasmer-sdk
# kills a module at the end of its grace period, so this is only the report's way back (a busy
# loop's report may never come: measured > 15 s late under load).
STOP_SLACK = 1.0
_TICKS = os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """One running worker: its instances by id, its memory cap, and how to end it."""

    def __init__(self, forked: Forked, reader: asyncio.StreamReader, writer: asyncio.WriteTransport,
                 node_cap: int) -> None:
        self._forked = forked
        self._stdout = reader
        self._stdin = writer
        self.node_cap = node_cap
        self.pid = forked.pid
        self.baseline = 0
        self.instances: dict[int, WasmerInstance] = {}
        self.sandboxed = False  # a start reached it, so its sandbox (and /workspace) exists
        self.pods = 0  # Pods it has run (it may run one Pod after another: `recycle`)
        # The agent stopped a module of it while it ran: wasmer-sdk may have left it spinning.
        self.stopped_running = False
        self._recycled: asyncio.Future[str | None] | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._prepared: asyncio.Future[str | None] | None = None
        self._preparing = asyncio.Lock()
        self._kill_status: ExitStatus | None = None
        self._reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

    @classmethod
    async def spawn(cls, server: ForkServer, node_cap: int) -> WorkerProcess:
        """Fork a worker and wait until it is ready for messages."""
        forked = await server.fork()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(forked.outbound_read, "rb", 0))
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(forked.inbound_write, "wb", 0))
        worker = cls(forked, reader, writer, node_cap)
        try:
            ready = await asyncio.wait_for(read_message(reader), READY_TIMEOUT)
        except (TimeoutError, ProtocolError) as exc:
            await worker.kill()
            raise ModuleError(f"the wasmer worker did not start: {exc!r}", reason="StartError") from exc
        except asyncio.CancelledError:
            await asyncio.shield(worker.kill())
            raise
        if ready is None or ready[0].get("ev") != "ready":
            await worker.kill()
            raise ModuleError("the wasmer worker did not start", reason="StartError")
        worker.baseline = int(ready[0].get("baseline", 0))
        worker._reader = asyncio.create_task(worker._read())
        return worker

    @property
    def alive(self) -> bool:
        return not self.ended.is_set()

    def charged_bytes(self) -> int:
        """The memory charged to the Pod: the worker's anonymous memory above its own overhead."""
        return max(anonymous_bytes(self.pid) - self.baseline, 0)

    def cap(self) -> int:
        return pod_cap([i.memory_limit for i in self.instances.values()], self.node_cap)

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker has used (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / _TICKS

    async def prepare(self, module_path: Path, digest: str) -> str | None:
        """Compile a module into the shared compiled cache; the error text if it is not loadable."""
        async with self._preparing:  # one at a time: the worker answers them in order, unnamed
            self._check_alive()
            self._prepared = asyncio.get_running_loop().create_future()
            self._send({"op": "prepare", "module": str(module_path), "digest": digest})
            return await self._prepared

    async def recycle(self, preload: list[tuple[Path, str, str]], timeout: float = RECYCLE_TIMEOUT) -> bool:
        """Make it ready for another Pod: its Pod's sandbox closed, a blank one made with the
        `preload` modules (file, digest, command) in it. False (and the worker killed) when it
        cannot be."""
        if not self.alive or self.instances or self._recycled is not None:
            return False
        self._recycled = asyncio.get_running_loop().create_future()
        self._send({"op": "recycle", "preload": [[str(path), digest, command] for path, digest, command in preload]})
        try:
            error = await asyncio.wait_for(asyncio.shield(self._recycled), timeout)
        except (TimeoutError, ModuleError) as exc:
            error = str(exc) or "no answer"
        finally:
            self._recycled = None
        if error is not None:
            log.info("wasmer worker %d is not reused: %s", self.pid, error)
            await self.close()
            return False
        self.sandboxed = False
        return True

    def preload(self, module_path: Path, digest: str, command: str) -> None:
        """Load a module as `command` into the spare's sandbox ahead of a Pod that may run it (that
        Pod's start then only spawns it); no answer."""
        self._send({"op": "prepare", "module": str(module_path), "digest": digest, "command": command, "quiet": True})

    async def start(self, message: Message, payload: bytes, output: OutputSink,
                    memory_limit: int | None) -> WasmerInstance:
        """Start one container (`message` is the start message without its id)."""
        self._check_alive()
        self._next_id += 1
        ident = self._next_id
        instance = WasmerInstance(self, ident, output, memory_limit)
        self.instances[ident] = instance
        started = self._pending[ident] = asyncio.get_running_loop().create_future()
        self.sandboxed = True
        self._send({**message, "op": "start", "id": ident}, payload)
        try:
            await started  # the worker's answer, or its end (`_finish_all`)
        except ModuleError:
            self.instances.pop(ident, None)
            raise
        finally:
            self._pending.pop(ident, None)
        return instance

    def _check_alive(self) -> None:
        if not self.alive:
            raise ModuleError(f"the Pod's wasmer worker has ended: {self._exit_cause().message}", reason="StartError")

    def stop(self, ident: int, grace: float) -> None:
        self._send({"op": "stop", "id": ident, "grace": grace})

    async def kill(self, status: ExitStatus | None = None) -> None:
        """SIGKILL the worker (a spinning module with it); its running containers end with `status`."""
        self._kill_status = self._kill_status or status
        self._signal_kill()
        if self._reader is not None:
            await self._reader
        else:
            await self._forked.exited
            self._finish_all()

    async def close(self) -> None:
        """End the worker; kills what still runs in it."""
        await self.kill(ExitStatus(EXIT_KILLED, "Error", "stopped by the agent"))

    def _send(self, message: Message, payload: bytes = b"") -> None:
        if not self._stdin.is_closing() and self.alive:
            self._stdin.write(encode(message, payload))

    def _signal_kill(self) -> None:
        """SIGKILL through the pidfd: that very process, even if its pid were reused since. Not once
        it has ended: its pidfd is closed then, and the number may be another worker's."""
        if self.ended.is_set():
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._forked.pidfd, signal.SIGKILL)

    async def _read(self) -> None:
        try:
            while (received := await read_message(self._stdout)) is not None:
                self._dispatch(*received)
        except (ProtocolError, ConnectionError) as exc:
            log.warning("wasmer worker %d: %s; killing it", self.pid, exc)
            self._signal_kill()
        try:
            await asyncio.wait_for(asyncio.shield(self._forked.exited), STOP_SLACK * 5)
        except TimeoutError:  # its output ended but it lives on: it is of no use any more
            self._signal_kill()
            await self._forked.exited
        self._finish_all()

    def _dispatch(self, message: Message, payload: bytes) -> None:
        event, ident = message.get("ev"), int(message.get("id", 0))
        instance = self.instances.get(ident)
        if event == "out" and instance is not None:
            instance.output(str(message.get("stream")), payload)
        elif event == "started" and ident in self._pending:
            self.baseline = int(message.get("baseline", self.baseline))
            self._pending[ident].set_result(None)
        elif event == "failed" and ident in self._pending:
            self._pending[ident].set_exception(ModuleError(str(message.get("message")),
                                                           reason=str(message.get("reason", "StartError"))))
        elif event == "exit" and instance is not None:
            for stream, data in unpack_output(message.get("out", []), payload):  # a bad index ends the worker
                instance.output(stream, data)
            self.instances.pop(ident, None)
            instance.finish(ExitStatus(int(message["code"]), str(message["reason"]), str(message.get("message", ""))))
        elif event == "prepared" and self._prepared is not None and not self._prepared.done():
            self._prepared.set_result(message.get("error"))
        elif event == "recycled" and self._recycled is not None and not self._recycled.done():
            self.baseline = int(message.get("baseline", self.baseline))
            self._recycled.set_result(message.get("error"))

    def _finish_all(self) -> None:
        """The worker is gone: every container still in it ends, with the cause."""
        if self.ended.is_set():
            return
        status = self._exit_cause()
        for instance in list(self.instances.values()):
            instance.finish(status)
        self.instances.clear()
        self._stdin.close()
        with contextlib.suppress(OSError):
            os.close(self._forked.pidfd)
        for pending in self._pending.values():
            if pending.done():
                continue
            if status.reason == "OOMKilled":  # it started and took too much: start() returns it ended
                pending.set_result(None)
            else:
                pending.set_exception(ModuleError(status.message, reason="StartError"))
        for waiting in (self._prepared, self._recycled):
            if waiting is not None and not waiting.done():
                waiting.set_exception(ModuleError(status.message, reason="StartError"))
        self.ended.set()

    def _exit_cause(self) -> ExitStatus:
        code = self._forked.exited.result() if self._forked.exited.done() else None
        if code == OOM_EXIT:
            return ExitStatus(EXIT_KILLED, "OOMKilled", f"memory limit of {self.cap()} bytes exceeded "
                              "(the Pod's wasmer worker was over its cap)")
        if self._kill_status is not None:
            return self._kill_status
        return ExitStatus(EXIT_KILLED if code == -signal.SIGKILL else 1, "Error",
                          f"the Pod's wasmer worker ended unexpectedly (status {code})")


class WasmerInstance:
    """One container running in a worker; `Instance` for the agent."""

    def __init__(self, worker: WorkerProcess, ident: int, output: OutputSink, memory_limit: int | None) -> None:
        self.worker = worker
        self.ident = ident
        self.output = output
        self.memory_limit = memory_limit
        self.status: ExitStatus | None = None
        self.after_stop: Callable[[], None] | None = None  # called once a stop has ended the module
        self._done = asyncio.Event()

    def finish(self, status: ExitStatus) -> None:
        if self.status is None:
            self.status = status
            self._done.set()

    async def wait(self) -> ExitStatus:
        await self._done.wait()
        assert self.status is not None
        return self.status

    async def stop(self, grace_seconds: float) -> ExitStatus:
        """wasmer-sdk kills the module after the grace period; if its report does not come back,
        the worker is killed (with every container in it)."""
        if self.status is None:
            self.worker.stopped_running = True
            self.worker.stop(self.ident, grace_seconds)
            try:
                await asyncio.wait_for(self._done.wait(), max(grace_seconds, 0) + STOP_SLACK)
            except TimeoutError:
                log.warning("wasmer worker %d did not stop a module in time; killing it", self.worker.pid)
                await self.worker.kill(ExitStatus(EXIT_KILLED, "Error", "stopped by the agent"))
            if self.after_stop is not None:
                self.after_stop()
        return await self.wait()
