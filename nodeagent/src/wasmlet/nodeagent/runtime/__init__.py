"""The narrow runtime interface every backend implements, and the lazy backend loader.

A backend turns a `RunSpec` into a running `Instance`. It never talks to the API, never
decides about restarts, and never blocks the event loop. Backends are imported on first use:
`wasmer_sdk` alone costs ~41 MB of resident memory (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Exit codes for ends that are not a WASI exit, spelled as a container runtime would:
# 128 + the POSIX signal that means the same thing.
EXIT_TRAP = 134  # SIGABRT: a wasm trap (unreachable, out-of-bounds access, stack overflow)
EXIT_TERMINATED = 143  # SIGTERM: stopped within its grace period
EXIT_KILLED = 137  # SIGKILL: killed after its grace period, or its memory limit


@dataclass(frozen=True)
class Mount:
    """A volume as the module sees it: `guest_path` is the container's mountPath.

    `host_path` is the volume's root directory and `sub_path` the part of it mounted (the
    volumeMount's subPath, "" for all of it). The two stay apart until the container starts: a
    backend opens `sub_path` beneath `host_path` then (`runtime.beneath`), because a container
    may have made any part of it a symbolic link in the meantime.
    `volume_type` is the Pod volume's type (`hostPath`, `emptyDir`, `configMap`, …), so that a
    backend can refuse a type it cannot mount (Wasmer has no host directories); `volume` is its
    name, for messages.
    """

    host_path: Path
    guest_path: str
    read_only: bool
    volume_type: str = ""
    sub_path: str = ""
    volume: str = ""


@dataclass(frozen=True)
class RunSpec:
    """Everything a backend needs to start one container of one Pod."""

    pod_uid: str
    container: str
    module_path: Path
    module_digest: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount] = field(default_factory=list)
    working_dir: str | None = None
    memory_limit_bytes: int | None = None
    network: bool = False
    cpu_limit: float | None = None  # cores (`resources.limits.cpu`: 500m → 0.5)
    stdin: bytes | None = None  # the module's stdin, then end of file (an HTTP request's body); None: closed
    # A request's instance: its output may reach the sink in one piece when it ends (no live
    # log), and each stream may be cut after this many bytes (a backend may stream it anyway).
    capture_limit: int | None = None
    # The Pod's namespace: a backend may let Pods of one namespace use what another of them used.
    pod_namespace: str = ""


@dataclass(frozen=True)
class ExitStatus:
    """How an instance ended. `reason` uses the kubelet's words (`Completed`, `Error`, `OOMKilled`)."""

    exit_code: int
    reason: str
    message: str = ""

    @classmethod
    def from_code(cls, code: int, message: str = "") -> ExitStatus:
        return cls(code, "Completed" if code == 0 else "Error", message)


OutputSink = Callable[[str, bytes], None]
"""Receives (`stdout`|`stderr`, bytes) as the module writes them."""


class Instance(Protocol):
    """One running container. Both methods are safe to call more than once."""

    async def wait(self) -> ExitStatus:
        """Wait until the module ends; its output has been delivered to the sink by then."""

    async def stop(self, grace_seconds: float) -> ExitStatus:
        """Ask the module to stop; kill it once `grace_seconds` have passed; return how it ended."""


class Runtime(Protocol):
    """A wasm engine that can run many instances at once."""

    name: str
    version: str

    def check(self, spec: RunSpec) -> None:
        """Raise `UnsupportedPod` naming the field this backend cannot honour (e.g. a memory limit)."""

    async def prepare(self, module_path: Path, digest: str) -> None:
        """Compile (or load from the compiled cache) ahead of start; idempotent per digest."""

    async def start(self, spec: RunSpec, output: OutputSink) -> Instance:
        """Start the module; raise `ModuleError` when it cannot be instantiated."""

    async def release(self, pod_uid: str) -> None:
        """Free what the Pod's containers shared (a sandbox); called once none of them runs."""

    async def close(self) -> None:
        """Stop every instance and release the engine."""


BACKENDS: dict[str, str] = {
    "wasmer": "wasmlet.nodeagent.runtime.wasmer:WasmerRuntime",
    "wasmtime": "wasmlet.nodeagent.runtime.wasmtime:WasmtimeRuntime",
}


def load_backend(name: str, cache_dir: Path, allocatable_memory: int = 0) -> Runtime:
    """Import and construct backend `name` (the RuntimeClass handler). wasmer caps its Pods'
    memory together at `allocatable_memory` (0: the node's memory)."""
    module_name, _, cls_name = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    options = {"allocatable_memory": allocatable_memory or None} if name == "wasmer" else {}
    runtime: Runtime = cls(cache_dir=cache_dir / name, **options)
    return runtime
