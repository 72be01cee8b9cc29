"""The default backend, on the `wasmer-sdk` package (DESIGN.md §5).

What Wasmer can and cannot do decides the shape of this module:
- One `Wasmer()` client runs at most 200 processes at once (the 201st spawn waits for a free
  place: docs/wasmer-sdk.md), so instances are spread over shards, each a client holding at
  most `shard_capacity` of them.
- `terminate(grace)` cannot notify a wasip1 module: it runs on for the grace period, then is
  killed. A module spinning without host calls cannot be stopped at all (its thread spins on
  until the process exits); deadlines against busy code need the wasmtime backend.
- A sandbox's own files must live under `/workspace`; package files may sit at any absolute
  guest path as read-only overlays. So read-only volumes (configMap, secret, a read-only mount)
  become package files at their mountPath, and writable volumes must be mounted under
  `/workspace`, where the Pod's containers share one sandbox (an emptyDir shared in the Pod).
- There are no host-directory mounts and no memory limit: a Pod asking for either fails with
  a reason that names the field and the runtime that supports it.
- WASI 0.2 components do not run: wasmer-sdk 0.5 refuses them ("WebAssembly components are
  not supported by the sandbox command runner"). A Pod whose module is a component fails
  `UnsupportedComponent`, naming the wasmtime runtime, which runs them.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.runtime import (
    EXIT_KILLED,
    EXIT_TERMINATED,
    EXIT_TRAP,
    ExitStatus,
    Mount,
    OutputSink,
    RunSpec,
)
from wasmlet.nodeagent.wasmbinary import kind_of

import wasmer_sdk as sdk

log = logging.getLogger(__name__)

WORKSPACE = "/workspace"
# Measured: a client runs 200 processes at once and queues the rest; stay below that.
DEFAULT_SHARD_CAPACITY = 190
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
# A volume becomes in-memory package files: bound what one Pod may put there.
MAX_VOLUME_BYTES = 64 * 1024 * 1024


@dataclass
class _Shard:
    client: Any
    running: int = 0
    packages: dict[tuple[str, str], Any] = field(default_factory=dict)
    sandboxes: dict[str, Any] = field(default_factory=dict)
    installed: dict[str, set[str]] = field(default_factory=dict)


class WasmerRuntime:
    """Runs WASI modules in Wasmer sandboxes: one sandbox per Pod, shards of clients."""

    name = "wasmer"

    def __init__(self, cache_dir: Path, shard_capacity: int = DEFAULT_SHARD_CAPACITY) -> None:
        self.version = f"wasmer-sdk/{importlib.metadata.version('wasmer-sdk')}"
        self._cache_dir = cache_dir
        self._capacity = shard_capacity
        self._shards: list[_Shard] = []
        self._pod_shard: dict[str, _Shard] = {}
        self._lock = asyncio.Lock()

    def check(self, spec: RunSpec) -> None:
        if _is_component(spec.module_path):
            raise UnsupportedPod(
                f"container {spec.container!r}: the module is a WebAssembly component (WASI 0.2), and the wasmer "
                "runtime runs only core modules (wasip1); use runtimeClassName: wasmtime, which runs components",
                reason="UnsupportedComponent")
        if spec.memory_limit_bytes is not None:
            raise UnsupportedPod(
                f"container {spec.container!r}: resources.limits.memory cannot be enforced by the wasmer "
                "runtime; use runtimeClassName: wasmtime, which caps linear memory", reason="UnsupportedField")
        if spec.working_dir:
            # Measured: the sandbox's cwd does not move a wasip1 module's relative paths (docs/wasmer-sdk.md).
            raise UnsupportedPod(
                f"container {spec.container!r}: workingDir cannot be honoured by the wasmer runtime; use "
                "runtimeClassName: wasmtime, which preopens it as the module's current directory",
                reason="UnsupportedField")
        for mount in spec.mounts:
            if mount.volume_type in ("hostPath", "persistentVolumeClaim"):
                raise UnsupportedPod(
                    f"container {spec.container!r}: volumeMounts mountPath {mount.guest_path!r} is a "
                    f"{mount.volume_type} volume (a host directory), "
                    "and the wasmer runtime cannot mount host directories; use runtimeClassName: wasmtime, which "
                    "preopens them", reason="UnsupportedField")
            if not mount.read_only and not _under_workspace(mount.guest_path):
                raise UnsupportedPod(
                    f"container {spec.container!r}: volumeMounts mountPath {mount.guest_path!r} is writable, and the "
                    f"wasmer runtime can only give writable volumes under {WORKSPACE}; mount it there, make it "
                    "readOnly, or use runtimeClassName: wasmtime", reason="UnsupportedField")

    async def prepare(self, module_path: Path, digest: str) -> None:
        if await asyncio.to_thread(_is_component, module_path):
            return  # not an image problem: check() fails the Pod, naming the runtime that runs it
        async with self._lock:
            shard = self._shards[0] if self._shards else self._new_shard()
        await self._package(shard, module_path, digest, "main")

    async def start(self, spec: RunSpec, output: OutputSink) -> WasmerInstance:
        self.check(spec)
        shard = await self._reserve(spec.pod_uid)
        # Volumes under /workspace are sandbox files (a package file there would be hidden by the
        # workspace); the others, read-only by check(), are package files at their mountPath.
        packaged = [m for m in spec.mounts if not _under_workspace(m.guest_path)]
        name = command_name(spec.argv[0] if spec.argv else "")
        try:
            if packaged:
                package = await self._package_with_files(shard, spec, name, packaged)
            else:
                package = await self._package(shard, spec.module_path, spec.module_digest, name)
            sandbox = await self._sandbox(shard, spec)
            installed = shard.installed.setdefault(spec.pod_uid, set())
            if package.id not in installed:
                package = await sandbox.install_package(package)
                installed.add(package.id)
            command = sandbox.command(package, spec.argv[1:], cwd=spec.working_dir, env=spec.env)
            stdin = "pipe" if spec.stdin is not None else "closed"
            if spec.capture_limit is None:
                # output_bytes=0: the pipes are read live into the log; the SDK would otherwise keep its
                # own copy of up to 16 MiB per stream per process.
                process = await command.spawn(stdin=stdin, stdout="pipe", stderr="pipe", output_bytes=0)
            else:  # a request: the SDK keeps the output (one byte past the limit shows it was passed)
                process = await command.spawn(stdin=stdin, stdout="capture", stderr="capture",
                                              output_bytes=spec.capture_limit + 1)
        except sdk.WasmerError as exc:
            _release_slot(shard)
            raise ModuleError(f"cannot start module {spec.module_digest[:19]}: {exc}", reason="StartError") from exc
        except BaseException:
            _release_slot(shard)
            raise
        return WasmerInstance(process, output, on_exit=lambda: _release_slot(shard), stdin=spec.stdin,
                              captured=spec.capture_limit is not None)

    async def release(self, pod_uid: str) -> None:
        """Drop the Pod's sandbox once none of its containers runs any more."""
        shard = self._pod_shard.pop(pod_uid, None)
        sandbox = shard.sandboxes.pop(pod_uid, None) if shard else None
        if shard:
            shard.installed.pop(pod_uid, None)
        if sandbox is not None:
            await sandbox.close()

    async def close(self) -> None:
        for shard in self._shards:
            for sandbox in shard.sandboxes.values():
                await sandbox.close()
            await shard.client.close()
        self._shards.clear()
        self._pod_shard.clear()

    async def _reserve(self, pod_uid: str) -> _Shard:
        """A place for one instance, counted at once so that concurrent starts spread over shards.
        A Pod's containers share its shard (they share its sandbox)."""
        async with self._lock:
            shard = self._pod_shard.get(pod_uid)
            if shard is None:
                shard = min(self._shards, key=lambda s: s.running, default=None)
                if shard is None or shard.running >= self._capacity:
                    shard = self._new_shard()
                self._pod_shard[pod_uid] = shard
            shard.running += 1
            return shard

    def _new_shard(self) -> _Shard:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        shard = _Shard(sdk.Wasmer(cache_root=self._cache_dir))
        self._shards.append(shard)
        return shard

    async def _package(self, shard: _Shard, module_path: Path, digest: str, name: str) -> Any:
        """The module as a package whose one command is `name` (the guest's argv[0]); cached."""
        package = shard.packages.get((digest, name))
        if package is None:
            package = await self._create(shard, module_path, digest, name, {})
            shard.packages[(digest, name)] = package
        return package

    async def _package_with_files(self, shard: _Shard, spec: RunSpec, name: str, mounts: list[Mount]) -> Any:
        return await self._create(shard, spec.module_path, spec.module_digest, name, _collect_files(mounts))

    async def _create(self, shard: _Shard, module_path: Path, digest: str, name: str, files: dict[str, bytes]) -> Any:
        definition = sdk.PackageDefinition(
            modules={"module": module_path.read_bytes()},
            commands={name: sdk.PackageCommandDefinition(module="module")},
            files=files,
        )
        try:
            return await shard.client.packages.create(definition)
        except sdk.WasmerError as exc:
            raise ModuleError(f"not a loadable wasm module ({digest[:19]}): {exc}", reason="InvalidModule") from exc

    async def _sandbox(self, shard: _Shard, spec: RunSpec) -> Any:
        sandbox = shard.sandboxes.get(spec.pod_uid)
        if sandbox is None:
            sandbox = await shard.client.sandboxes.create(
                files=_collect_files([m for m in spec.mounts if _under_workspace(m.guest_path)]),
                network="host" if spec.network else "disabled",
            )
            shard.sandboxes[spec.pod_uid] = sandbox
        for mount in spec.mounts:
            if _under_workspace(mount.guest_path):  # an empty volume has no files to create it with
                await sandbox.fs.mkdir(mount.guest_path, recursive=True)
        return sandbox


class WasmerInstance:
    """A spawned Wasmer process whose output is pumped to the sink until it ends (or, `captured`,
    handed to it whole when it ends)."""

    def __init__(self, process: Any, output: OutputSink, on_exit: Any, stdin: bytes | None = None,
                 captured: bool = False) -> None:
        self._process = process
        self._on_exit = on_exit
        self._output = output if captured else None
        self._pumps = [] if captured else [
            asyncio.create_task(_pump(process.stdout, "stdout", output)),
            asyncio.create_task(_pump(process.stderr, "stderr", output)),
        ]
        self._feeder = asyncio.create_task(_feed(process.stdin, stdin)) if stdin is not None else None
        self._result: asyncio.Task[ExitStatus] = asyncio.create_task(self._wait())

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._result)

    async def stop(self, grace_seconds: float) -> ExitStatus:
        if not self._result.done():
            try:
                await self._process.terminate(grace_period=max(grace_seconds, 0.001))
            except sdk.WasmerError as exc:
                log.debug("terminate: %s", exc)
        return await self.wait()

    async def _wait(self) -> ExitStatus:
        try:
            output = await self._process.wait()
            status = _exit_status(output)
            if self._output is not None:
                for name, stream in (("stdout", output.stdout), ("stderr", output.stderr)):
                    if stream is not None and stream.bytes:
                        self._output(name, stream.bytes)
        except sdk.WasmerError as exc:
            # A trap surfaces as an execution error, not as an exit code.
            status = ExitStatus(EXIT_TRAP, "Error", f"wasm trap: {_first_line(str(exc))}")
        finally:
            self._on_exit()
        if self._feeder is not None:  # the module ended: what it did not read is dropped
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return status


async def _pump(stream: Any, name: str, output: OutputSink) -> None:
    if stream is None:
        return
    async for chunk in stream:
        output(name, chunk)


async def _feed(stream: Any, data: bytes) -> None:
    """Write `data` to the module's stdin and close it; a module that exits unread is fine."""
    try:
        if data:
            await stream.write(data)
        await stream.close()
    except sdk.WasmerError as exc:
        log.debug("stdin: %s", exc)


def _exit_status(output: Any) -> ExitStatus:
    if output.reason is sdk.ExitReason.TERMINATED:
        code = output.exit_code or EXIT_TERMINATED
        return ExitStatus(code, "Error" if code != EXIT_KILLED else "Killed", "stopped by the agent")
    if output.reason is sdk.ExitReason.TIMEOUT:
        return ExitStatus(EXIT_KILLED, "DeadlineExceeded", "the runtime's timeout expired")
    return ExitStatus.from_code(output.exit_code)


def _release_slot(shard: _Shard) -> None:
    shard.running -= 1


def _collect_files(mounts: list[Mount]) -> dict[str, bytes]:
    """Read the host files of `mounts` as {guest path: bytes}; refuse links that leave the volume."""
    files: dict[str, bytes] = {}
    total = 0
    for mount in mounts:
        root = mount.host_path.resolve()
        for path in sorted(root.rglob("*")):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise UnsupportedPod(f"volume file {path.name!r} links outside its volume", reason="InvalidVolume")
            if not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_VOLUME_BYTES:
                raise UnsupportedPod(f"volumes of this Pod exceed {MAX_VOLUME_BYTES} bytes", reason="InvalidVolume")
            files[mount.guest_path.rstrip("/") + "/" + path.relative_to(root).as_posix()] = data
    return files


def command_name(argv0: str) -> str:
    """Wasmer names argv[0] after the package command, which allows only [A-Za-z0-9_.+-]:
    use argv[0]'s base name when it qualifies, else `main`."""
    base = argv0.rsplit("/", 1)[-1]
    return base if _COMMAND_NAME.fullmatch(base) and base not in (".", "..") else "main"


def _under_workspace(path: str) -> bool:
    return path == WORKSPACE or path.startswith(WORKSPACE + "/")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _is_component(module_path: Path) -> bool:
    """The binary's header says component (an unreadable file is left to the package loader)."""
    try:
        with module_path.open("rb") as handle:
            return kind_of(handle.read(8)) == "component"
    except OSError:
        return False
