"""How a wasmtime run ends, in the kubelet's words, and where a container's working directory is.

Pure functions over what the engine reported: no engine calls, no I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import wasmtime

from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TERMINATED, EXIT_TRAP, ExitStatus, Mount, RunSpec
from wasmlet.nodeagent.runtime.wasmtime_control import Control


def exit_status(control: Control, error: BaseException | None) -> ExitStatus:
    """The status of a run that returned (`error` None) or raised `error`."""
    if control.memory_wanted is not None:
        # Over the limit is fatal whatever the module did next, as the kernel's OOM killer is.
        limit = control.memory_limit
        return ExitStatus(EXIT_KILLED, "OOMKilled", f"linear memory limit of {limit} bytes exceeded: "
                          f"memory.grow to {control.memory_wanted} bytes was refused")
    if control.exit_code is not None:
        return ExitStatus.from_code(control.exit_code)
    if error is None:
        return ExitStatus.from_code(0)
    if isinstance(error, wasmtime.ExitTrap):
        return ExitStatus.from_code(error.code)
    if control.stopped:
        return ExitStatus(EXIT_TERMINATED, "Error", "stopped by the agent")
    cause = summary(str(error), cause_only=True)
    return ExitStatus(EXIT_TRAP, "Error", cause if cause.startswith("wasm trap:") else f"wasm trap: {cause}")


def summary(text: str, cause_only: bool = False) -> str:
    """One line from wasmtime's multi-line errors: the context and its root cause (or the cause alone).

    wasmtime writes `<context>\\n<backtrace>\\n\\nCaused by:\\n    <cause>`; the backtrace is noise
    in a Pod's status.
    """
    head, _, cause = text.partition("Caused by:")
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    root = lines[-1] if lines else ""
    context = next((line.strip() for line in head.splitlines() if line.strip()), "")
    if cause_only and root:
        return root
    if context.startswith("error while executing at wasm backtrace"):
        context = ""
    return ": ".join(part for part in (context, root) if part) or text.strip()


def working_dir_mount(spec: RunSpec) -> Mount | None:
    """The mount that holds the container's workingDir (the deepest one), if any."""
    if spec.working_dir is None:
        return None
    candidates = [m for m in spec.mounts if _inside(spec.working_dir, m.guest_path)]
    return max(candidates, key=lambda m: len(m.guest_path.rstrip("/")), default=None)


def _inside(path: str, root: str) -> bool:
    pure, base = PurePosixPath(path), PurePosixPath(root)
    return ".." not in pure.parts and (pure == base or base in pure.parents)
