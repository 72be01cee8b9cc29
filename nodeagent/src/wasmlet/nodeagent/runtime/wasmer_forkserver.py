"""The agent's side of the wasmer fork server: one process that imported wasmer-sdk once and forks
a worker per Pod (`wasmer_worker.zygote`).

Starting Python and importing wasmer-sdk for every Pod cost ~0.1-0.4 s and ~18 MiB per Pod
(bench/RESULTS.md, "wasmer containment"); a fork of a process that has imported it, but started
no thread yet, costs ~1 ms and shares the imported pages copy-on-write.

The agent and the fork server talk over a `SOCK_SEQPACKET` socket (one message per packet):
- agent → server: `F`, with two descriptors (the worker's inbound read end and outbound write end);
- server → agent: `F` pid, with a pidfd of the new worker (so the agent signals that very process,
  never a reused pid), in the order of the requests; `X` pid status, when a worker ended (the
  server is its parent and reaps it; status as `returncode`: negative for a signal).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from wasmlet.nodeagent.cpus import LOOP
from wasmlet.nodeagent.errors import ModuleError

PACKET = struct.Struct(">cii")  # tag, pid, status
WORKER_MODULE = "wasmlet.nodeagent.runtime.wasmer_worker"


@dataclass
class Forked:
    """A new worker: its pid and pidfd, the agent's ends of its two pipes, and its exit status."""

    pid: int
    pidfd: int
    inbound_write: int
    outbound_read: int
    exited: asyncio.Future[int]


class ForkServer:
    """A running fork server; `fork()` a worker, `close()` to end it (its workers die with it)."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self._process = process
        self._control = control
        self._forks: collections.deque[asyncio.Future[Forked]] = collections.deque()
        self._pipes: collections.deque[tuple[int, int]] = collections.deque()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._closed = False

    @classmethod
    async def start(cls, cache_dir: Path, node_cap: int) -> ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()), str(cache_dir), str(node_cap),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        LOOP.spread_thread(process.pid)  # its workers run Pods: every CPU, not the loop's (before it forks any)
        ours.setblocking(False)
        server = cls(process, ours)
        asyncio.get_running_loop().add_reader(ours.fileno(), server._receive)
        return server

    @property
    def alive(self) -> bool:
        return not self._closed and self._process.returncode is None

    async def fork(self) -> Forked:
        """A new worker process, ready to be spoken to over its pipes."""
        if not self.alive:
            raise ModuleError("the wasmer fork server has ended", reason="StartError")
        inbound_read, inbound_write = os.pipe()
        outbound_read, outbound_write = os.pipe()
        future: asyncio.Future[Forked] = asyncio.get_running_loop().create_future()
        try:
            self._control.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [inbound_read, outbound_write]))])
        except OSError as exc:
            os.close(inbound_write)
            os.close(outbound_read)
            raise ModuleError(f"the wasmer fork server does not answer: {exc}", reason="StartError") from exc
        finally:  # the worker's ends: the server has its own copies now
            os.close(inbound_read)
            os.close(outbound_write)
        self._forks.append(future)
        self._pipes.append((inbound_write, outbound_read))
        return await future

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()  # the server sees the end, and its workers die with it
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        await self._process.wait()
        self._fail_all()

    def _receive(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self._control.recvmsg(PACKET.size, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the server ended: nothing more will come
                asyncio.get_running_loop().remove_reader(self._control.fileno())
                self._closed = True
                self._fail_all()
                return
            tag, pid, status = PACKET.unpack(data)
            if tag == b"F" and self._forks:
                fds = array.array("i")
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                exited = self._exits[pid] = asyncio.get_running_loop().create_future()
                inbound_write, outbound_read = self._pipes.popleft()
                self._forks.popleft().set_result(Forked(pid, fds[0], inbound_write, outbound_read, exited))
            elif tag == b"X" and pid in self._exits:
                self._exits.pop(pid).set_result(status)

    def _fail_all(self) -> None:
        """The server is gone: pending forks fail, and its workers count as killed (they die with it)."""
        while self._forks:
            future = self._forks.popleft()
            inbound_write, outbound_read = self._pipes.popleft()
            os.close(inbound_write)
            os.close(outbound_read)
            if not future.done():
                future.set_exception(ModuleError("the wasmer fork server has ended", reason="StartError"))
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(-9)
        self._exits.clear()
