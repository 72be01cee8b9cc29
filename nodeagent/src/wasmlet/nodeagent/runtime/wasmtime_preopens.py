"""The directories a wasmtime instance preopens, opened beneath their volumes as it starts.

wasmtime takes a host *path* for a preopen and opens it itself, at `WasiConfig.preopen_dir`
(measured: a directory renamed away after that call is still the one the module sees). Handing it
the volume's path joined with a subPath or workingDir would let a link that a container planted
on the way lead the preopen anywhere on the host. So every directory is opened here first, beneath
its volume (`runtime.beneath`), and wasmtime is handed `/proc/self/fd/N`: the kernel resolves that
magic link to the open directory itself, never by walking a path again, so nothing a container
swaps in later is followed. wasmtime then holds its own descriptor and ours are closed. Inside the
module, WASI resolves every path beneath its preopen and refuses links that leave it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from wasmlet.nodeagent.runtime import RunSpec
from wasmlet.nodeagent.runtime.beneath import open_mount
from wasmlet.nodeagent.runtime.wasmtime_exits import working_dir_mount


@dataclass
class Preopens:
    """Open directories for one instance: (descriptor, guest path, writable); `.` is the workingDir."""

    entries: list[tuple[int, str, bool]] = field(default_factory=list)

    def host_path(self, fd: int) -> str:
        """The path wasmtime opens to reach the directory `fd` holds (not a path on the host's tree)."""
        return f"/proc/self/fd/{fd}"

    def close(self) -> None:
        """Close our descriptors (wasmtime keeps its own); safe to call more than once."""
        entries, self.entries = self.entries, []
        for fd, _, _ in entries:
            os.close(fd)


def open_preopens(spec: RunSpec) -> Preopens:
    """Open every mount of `spec` and its workingDir; raise `PodConfigError` for a link on the way."""
    preopens = Preopens()
    try:
        for mount in spec.mounts:
            preopens.entries.append((open_mount(mount, spec.container), mount.guest_path, not mount.read_only))
        holder = working_dir_mount(spec)
        if holder is not None and spec.working_dir is not None:
            fd = open_mount(holder, spec.container, spec.working_dir)
            preopens.entries.append((fd, ".", not holder.read_only))
    except BaseException:
        preopens.close()
        raise
    return preopens
