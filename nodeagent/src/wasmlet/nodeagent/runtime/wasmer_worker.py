"""A wasmer worker: the process that runs one Pod's containers in wasmer-sdk, so the agent can kill it.

wasmer-sdk stops a module only at a host call: a busy loop keeps its thread (and a core) after
every stop the SDK reports as done, until its process exits (docs/wasmer-sdk.md §4). It has no
memory limit either. So each Pod's modules run here, in a child process of the agent that ends
with the Pod (SIGKILL), under a memory cap (`wasmer_memory`), and that dies with the agent
(`PR_SET_PDEATHSIG`). The Pod's containers share this process's one sandbox, so an emptyDir under
`/workspace` is shared between them as before.

Run as `python -m wasmlet.nodeagent.runtime.wasmer_worker CACHE_DIR NODE_CAP_BYTES`; it speaks
`wasmer_protocol` on stdin/stdout, and its stderr is the agent's.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TERMINATED, EXIT_TRAP, ExitStatus
from wasmlet.nodeagent.runtime.wasmer_memory import MemoryGuard
from wasmlet.nodeagent.runtime.wasmer_protocol import Message, encode, read_message, unpack_files

import wasmer_sdk as sdk

_PR_SET_PDEATHSIG = 1


class Worker:
    """One Pod's sandbox and its running processes; answers the agent's messages."""

    def __init__(self, client: Any, guard: MemoryGuard, send: Any) -> None:
        self._client = client
        self._guard = guard
        self._send = send
        self._packages: dict[tuple[str, str], Any] = {}
        self._sandbox: Any = None
        self._installed: set[str] = set()
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
        elif op == "prepare":
            try:
                await self._package(message["module"], message["digest"], "main", {})
                self._send({"ev": "prepared", "error": None})
            except sdk.WasmerError as exc:
                self._send({"ev": "prepared", "error": f"not a loadable wasm module ({message['digest'][:19]}): {exc}"})

    async def _start(self, message: Message, payload: bytes) -> None:
        ident = int(message["id"])
        packaged, offset = unpack_files(message["files"], payload)
        workspace, offset = unpack_files(message["workspace"], payload, offset)
        stdin = payload[offset:] if message.get("stdin") else None
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
        self._send({"ev": "started", "id": ident})
        self._spawn_task(self._supervise(ident, process, stdin, capture is not None))

    async def _supervise(self, ident: int, process: Any, stdin: bytes | None, captured: bool) -> None:
        """Stream the output, feed stdin, and report how the process ended."""
        pumps = [] if captured else [asyncio.create_task(self._pump(ident, process.stdout, "stdout")),
                                     asyncio.create_task(self._pump(ident, process.stderr, "stderr"))]
        feeder = asyncio.create_task(_feed(process.stdin, stdin)) if stdin is not None else None
        try:
            output = await process.wait()
            status = exit_status(output)
            if captured:
                for name, stream in (("stdout", output.stdout), ("stderr", output.stderr)):
                    if stream is not None and stream.bytes:
                        self._send({"ev": "out", "id": ident, "stream": name}, stream.bytes)
        except sdk.WasmerError as exc:  # a trap surfaces as an execution error, not as an exit code
            status = ExitStatus(EXIT_TRAP, "Error", f"wasm trap: {_first_line(str(exc))}")
        if feeder is not None:  # the module ended: what it did not read is dropped
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._processes.pop(ident, None)
        self._ended(ident)
        self._send({"ev": "exit", "id": ident, "code": status.exit_code, "reason": status.reason,
                    "message": status.message})

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
        if self._sandbox is None:
            self._sandbox = await self._client.sandboxes.create(files=files,
                                                                network="host" if network else "disabled")
        for path in dirs:  # an empty volume has no files to create it with
            await self._sandbox.fs.mkdir(path, recursive=True)
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


def _protocol_fds() -> tuple[int, int]:
    """Take stdin/stdout for the protocol and give fds 0/1 to /dev/null and stderr, so that nothing
    the native library prints can corrupt a message."""
    inbound, outbound = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    return inbound, outbound


async def serve(cache_dir: Path, node_cap: int) -> None:
    """Answer the agent until it closes our stdin."""
    inbound, outbound = _protocol_fds()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(inbound, "rb", 0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(outbound, "wb", 0))
    client = sdk.Wasmer(cache_root=cache_dir)
    guard = MemoryGuard(node_cap)  # after the client: its overhead is the worker's, not the Pod's
    worker = Worker(client, guard, lambda message, payload=b"": transport.write(encode(message, payload)))
    transport.write(encode({"ev": "ready", "baseline": guard.baseline}))
    while (received := await read_message(reader)) is not None:
        await worker.handle(*received)


def main() -> None:
    """Entry point; the process ends with `os._exit` (the SDK's threads may abort a normal exit)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the agent died before the line above: nobody to work for
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the agent; the agent ends us
    try:
        asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2])))
    except BaseException as exc:  # noqa: BLE001 - reported on stderr, then the agent sees the exit
        os.write(2, f"wasmer worker: {exc!r}\n".encode())
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main()
