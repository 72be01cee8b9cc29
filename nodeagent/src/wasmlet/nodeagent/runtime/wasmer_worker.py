"""A wasmer worker: the process that runs one Pod's containers in wasmer-sdk, so the agent can kill it.

wasmer-sdk stops a module only at a host call: a busy loop keeps its thread (and a core) after
every stop the SDK reports as done, until its process exits (docs/wasmer-sdk.md §4). It has no
memory limit either. So each Pod's modules run here, in a process of their own that the agent
SIGKILLs when the Pod ends, under a memory cap (`wasmer_memory`), and that dies with its parent
(`PR_SET_PDEATHSIG`). The Pod's containers share this process's one sandbox, so an emptyDir under
`/workspace` is shared between them as before.

`python -m wasmlet.nodeagent.runtime.wasmer_worker CONTROL_FD CACHE_DIR NODE_CAP_BYTES` is the
fork server (`zygote`): it imports wasmer-sdk once, starts no thread, and forks one worker per
request of the agent (`wasmer_forkserver`). A worker speaks `wasmer_protocol` on the two pipes
the agent sent with the request; its stderr is the agent's.
"""

from __future__ import annotations

import array
import asyncio
import ctypes
import gc
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import wasmer_sdk as sdk

from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TERMINATED, EXIT_TRAP, ExitStatus
from wasmlet.nodeagent.runtime.wasmer_forkserver import PACKET as _PACKET
from wasmlet.nodeagent.runtime.wasmer_memory import MemoryGuard
from wasmlet.nodeagent.runtime.wasmer_protocol import Message, encode, pack_files, read_message, unpack_files

_PR_SET_PDEATHSIG = 1
# `(module (memory (export "memory") 1) (func (export "_start")))`: a WASI command that does nothing.
_EMPTY_MODULE = bytes.fromhex("0061736d01000000010401600000030201000503010001071302065f7374617274000006"
                              "6d656d6f72790200" "0a040102000b")


class Worker:
    """One Pod's sandbox and its running processes; answers the agent's messages."""

    def __init__(self, client: Any, guard: MemoryGuard, send: Any) -> None:
        self._client = client
        self._guard = guard
        self._send = send
        self._packages: dict[tuple[str, str], Any] = {}
        self._sandbox: Any = None
        self._dirs: set[str] = set()  # empty volumes made in `_sandbox`
        self._blank: Any = None  # a sandbox made ahead (no files, no network), for the Pod to take
        self._installed: set[str] = set()  # packages installed in `_sandbox`
        self._blank_installed: set[str] = set()  # and in `_blank`, by preloads
        self._processes: dict[int, Any] = {}
        self._limits: dict[int, int | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, message: Message, payload: bytes) -> None:
        op = message.get("op")
        if op == "start":
            await self._start(message, payload)
        elif op == "stop":
            process = self._processes.get(int(message["id"]))
            if process is not None:
                self._spawn_task(_terminate(process, float(message["grace"])))
        elif op == "recycle":
            error = await self._recycle(message.get("preload", []))
            self._send({"ev": "recycled", "baseline": self._guard.baseline, "error": error})
        elif op == "prepare":  # `quiet`: a preload for a Pod that may come; nobody waits for it
            try:
                await self._load(message["module"], message["digest"], message.get("command", "main"),
                                 into_blank=bool(message.get("quiet")))
                error = None
            except (sdk.WasmerError, OSError) as exc:
                error = f"not a loadable wasm module ({message['digest'][:19]}): {exc}"
            if not message.get("quiet"):
                self._send({"ev": "prepared", "error": error})

    async def warm_up(self) -> None:
        """Run an empty module once, so that the SDK's one-time set-up in this process (its
        runtime's threads, the engine) is done while the worker is a spare, not on a Pod's start;
        its sandbox is kept for a Pod whose sandbox needs no files and no network (most)."""
        try:
            package = await self._client.packages.create(sdk.PackageDefinition(
                modules={"module": _EMPTY_MODULE}, commands={"warm-up": sdk.PackageCommandDefinition(module="module")}))
            sandbox = await self._client.sandboxes.create(files={}, network="disabled")
            process = await sandbox.command(await sandbox.install_package(package), [], env={}).spawn(
                stdin="closed", stdout="pipe", stderr="pipe")
            await process.wait()
            self._blank = sandbox
        except sdk.WasmerError as exc:  # only slower without it
            os.write(2, f"wasmer worker: warm-up failed: {exc}\n".encode())

    async def _load(self, module: str, digest: str, command: str, into_blank: bool) -> None:
        """Compile (or load from the cache) a module as `command`; with `into_blank`, install it
        in the blank sandbox a next Pod takes too."""
        package = await self._package(module, digest, command, {})
        if into_blank and self._blank is not None and package.id not in self._blank_installed:
            await self._blank.install_package(package)
            self._blank_installed.add(package.id)

    async def _recycle(self, preload: list[list[str]]) -> str | None:
        """The Pod is gone and every module of it ended by itself: close its sandbox (its
        /workspace with it) and make a blank one for the next Pod of the namespace, with the
        `preload` modules (file, digest, command) installed. Compiled packages without files
        stay: they hold code, not a Pod's data. The error text if not done."""
        if self._processes:
            return f"{len(self._processes)} module(s) still run"
        sandbox, self._sandbox, self._installed, self._dirs = self._sandbox, None, set(), set()
        self._limits.clear()
        self._guard.set_limits([])
        try:
            if sandbox is not None:
                await sandbox.close()
            if self._blank is None:
                self._blank = await self._client.sandboxes.create(files={}, network="disabled")
                self._blank_installed = set()
            for module, digest, command in preload:
                await self._load(module, digest, command, into_blank=True)
        except (sdk.WasmerError, OSError) as exc:
            return f"cannot reset the sandbox: {exc}"
        return None

    async def _start(self, message: Message, payload: bytes) -> None:
        ident = int(message["id"])
        packaged, offset = unpack_files(message["files"], payload)
        workspace, offset = unpack_files(message["workspace"], payload, offset)
        stdin = payload[offset:] or None  # an empty stdin is a closed one: the module reads its end at once
        if self._sandbox is None and not self._limits:  # the first start: this is the Pod's worker now
            self._guard.rebase()
        self._limits[ident] = message.get("memory")
        self._guard.set_limits(list(self._limits.values()))
        try:
            package = await self._package(message["module"], message["digest"], message["command"], packaged)
        except sdk.WasmerError as exc:
            self._ended(ident)
            self._send({"ev": "failed", "id": ident, "reason": "InvalidModule",
                        "message": f"not a loadable wasm module ({message['digest'][:19]}): {exc}"})
            return
        try:
            sandbox = await self._ensure_sandbox(workspace, message["dirs"], bool(message.get("network")))
            if package.id not in self._installed:
                package = await sandbox.install_package(package)
                self._installed.add(package.id)
            command = sandbox.command(package, message["argv"], env=message["env"])
            capture = message.get("capture")
            modes = {"stdout": "pipe", "stderr": "pipe", "output_bytes": 0} if capture is None else \
                {"stdout": "capture", "stderr": "capture", "output_bytes": int(capture) + 1}
            process = await command.spawn(stdin="pipe" if stdin is not None else "closed", **modes)
        except sdk.WasmerError as exc:
            self._ended(ident)
            self._send({"ev": "failed", "id": ident, "reason": "StartError",
                        "message": f"cannot start module {message['digest'][:19]}: {exc}"})
            return
        self._processes[ident] = process
        self._send({"ev": "started", "id": ident, "baseline": self._guard.baseline})
        self._spawn_task(self._supervise(ident, process, stdin, capture is not None))

    async def _supervise(self, ident: int, process: Any, stdin: bytes | None, captured: bool) -> None:
        """Stream the output, feed stdin, and report how the process ended."""
        pumps = [] if captured else [asyncio.create_task(self._pump(ident, process.stdout, "stdout")),
                                     asyncio.create_task(self._pump(ident, process.stderr, "stderr"))]
        feeder = asyncio.create_task(_feed(process.stdin, stdin)) if stdin is not None else None
        captures: dict[str, bytes] = {}
        try:
            output = await process.wait()
            status = exit_status(output)
            if captured:  # sent with the exit, in one message, packed as volume files are
                for name, stream in (("stdout", output.stdout), ("stderr", output.stderr)):
                    if stream is not None and stream.bytes:
                        captures[name] = stream.bytes
        except sdk.WasmerError as exc:  # a trap surfaces as an execution error, not as an exit code
            status = ExitStatus(EXIT_TRAP, "Error", f"wasm trap: {_first_line(str(exc))}")
        if feeder is not None:  # the module ended: what it did not read is dropped
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._processes.pop(ident, None)
        self._ended(ident)
        index, data = pack_files(captures)
        self._send({"ev": "exit", "id": ident, "code": status.exit_code, "reason": status.reason,
                    "message": status.message, "out": index}, data)

    def _ended(self, ident: int) -> None:
        self._limits.pop(ident, None)
        self._guard.set_limits(list(self._limits.values()))

    async def _pump(self, ident: int, stream: Any, name: str) -> None:
        if stream is not None:
            async for chunk in stream:
                self._send({"ev": "out", "id": ident, "stream": name}, chunk)

    async def _package(self, module: str, digest: str, name: str, files: dict[str, bytes]) -> Any:
        """The module as a package whose one command is `name` (the guest's argv[0]); cached without files."""
        package = None if files else self._packages.get((digest, name))
        if package is None:
            definition = sdk.PackageDefinition(modules={"module": Path(module).read_bytes()},
                                               commands={name: sdk.PackageCommandDefinition(module="module")},
                                               files=files)
            package = await self._client.packages.create(definition)
            if not files:
                self._packages[(digest, name)] = package
        return package

    async def _ensure_sandbox(self, files: dict[str, bytes], dirs: list[str], network: bool) -> Any:
        if self._sandbox is None and self._blank is not None and not files and not network:
            self._sandbox, self._installed = self._blank, self._blank_installed
        if self._sandbox is None:
            self._sandbox = await self._client.sandboxes.create(files=files,
                                                                network="host" if network else "disabled")
        self._blank = None
        for path in dirs:  # an empty volume has no files to create it with; made once, as a volume is
            if path not in self._dirs:
                await self._sandbox.fs.mkdir(path, recursive=True)
                self._dirs.add(path)
        return self._sandbox

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _terminate(process: Any, grace: float) -> None:
    try:
        await process.terminate(grace_period=max(grace, 0.001))
    except sdk.WasmerError:
        pass  # it ended meanwhile


async def _feed(stream: Any, data: bytes) -> None:
    """Write `data` to the module's stdin and close it; a module that exits unread is fine."""
    try:
        if data:
            await stream.write(data)
        await stream.close()
    except sdk.WasmerError:
        pass


def exit_status(output: Any) -> ExitStatus:
    """How a process that returned from `wait()` ended, in the kubelet's words."""
    if output.reason is sdk.ExitReason.TERMINATED:
        code = output.exit_code or EXIT_TERMINATED
        return ExitStatus(code, "Error" if code != EXIT_KILLED else "Killed", "stopped by the agent")
    if output.reason is sdk.ExitReason.TIMEOUT:
        return ExitStatus(EXIT_KILLED, "DeadlineExceeded", "the runtime's timeout expired")
    return ExitStatus.from_code(output.exit_code)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


async def serve(cache_dir: Path, node_cap: int, inbound: int, outbound: int) -> None:
    """Answer the agent on the two pipes until it closes `inbound`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(inbound, "rb", 0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(outbound, "wb", 0))
    client = sdk.Wasmer(cache_root=cache_dir)
    guard = MemoryGuard(node_cap)  # after the client: its overhead is the worker's, not the Pod's
    worker = Worker(client, guard, lambda message, payload=b"": transport.write(encode(message, payload)))
    await worker.warm_up()  # ready means warm: the agent forks only a few at once, until ready
    transport.write(encode({"ev": "ready", "baseline": guard.baseline}))
    while (received := await read_message(reader)) is not None:
        await worker.handle(*received)


def zygote(control: socket.socket, cache_dir: Path, node_cap: int) -> None:
    """The fork server: fork a worker per `F` request, report each pid (with a pidfd) and, once
    reaped, each worker's exit status. Single-threaded, so that a fork is safe."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.freeze()  # what was imported stays shared with the workers instead of being copied by the GC
    while True:
        ready, _, _ = select.select([control.fileno(), wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 512)
            _reap(control)
        if control.fileno() not in ready:
            continue
        data, ancillary, _, _ = control.recvmsg(1, socket.CMSG_SPACE(2 * 4))
        if not data:  # the agent is gone or done: so are we, and our workers with us
            os._exit(0)
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        pid = os.fork()
        if pid == 0:
            _worker_child(control, (wake_read, wake_write), fds[0], fds[1], cache_dir, node_cap)
        pidfd = os.pidfd_open(pid)  # before it can be reaped: the pid cannot be reused yet
        control.sendmsg([_PACKET.pack(b"F", pid, 0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))])
        for fd in (pidfd, *fds):
            os.close(fd)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.sendmsg([_PACKET.pack(b"X", pid, os.waitstatus_to_exitcode(status))])


def _worker_child(control: socket.socket, wake: tuple[int, int], inbound: int, outbound: int,
                  cache_dir: Path, node_cap: int) -> None:
    """In the forked child: drop the server's state, then serve one Pod; never returns."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for fd in wake:
            os.close(fd)
        _die_with_parent()
        asyncio.run(serve(cache_dir, node_cap, inbound, outbound))
    except BaseException as exc:  # noqa: BLE001 - reported on stderr, then the agent sees the exit
        os.write(2, f"wasmer worker: {exc!r}\n".encode())
        os._exit(1)
    os._exit(0)  # the SDK's threads may abort a normal interpreter exit (docs/wasmer-sdk.md)


def _die_with_parent() -> None:
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above: nobody to work for
        os._exit(1)


def main() -> None:
    """Entry point of the fork server: `CONTROL_FD CACHE_DIR NODE_CAP_BYTES`."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the agent; the agent ends us
    control = socket.socket(fileno=int(sys.argv[1]))
    try:
        zygote(control, Path(sys.argv[2]), int(sys.argv[3]))
    except BaseException as exc:  # noqa: BLE001 - reported on stderr, then the agent sees the end
        os.write(2, f"wasmer fork server: {exc!r}\n".encode())
        os._exit(1)


if __name__ == "__main__":
    main()
