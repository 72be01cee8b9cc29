"""Open paths beneath a volume's directory, never through a symbolic link.

Any container that can write a volume can turn any entry of it into a symbolic link, at any
moment (an init container before the next one starts, or a container running beside it). So the
agent never hands a runtime a host path that it resolved earlier: when a container starts, it
opens the volume's root directory and then the rest of the path relative to that descriptor, with
`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. Where the kernel has no `openat2` (before Linux
5.6, or a seccomp filter that answers ENOSYS) it walks one component at a time with
`openat(O_NOFOLLOW)`, which refuses the same links. A link anywhere on the way is refused, whether
it points inside the volume or not: a path the agent resolves is a plain directory chain or
nothing. The descriptor pins the directory itself, so a link swapped in afterwards changes nothing
(docs/security.md explains how the runtimes are handed it).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from wasmlet.nodeagent.errors import ModuleError, PodConfigError
from wasmlet.nodeagent.runtime import Mount
from wasmlet.nodeagent.validation import go_quoted

# linux/openat2.h
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
SYS_OPENAT2 = 437  # the same number on every architecture (a syscall added after the table unification)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Volumes whose root is a node path someone with power over the node chose (a hostPath, or the
# hostPath/local PersistentVolume a claim is bound to): its own last component may be a link, as
# the kubelet lets it be. Every other root is a directory the agent made.
NODE_PATH_VOLUMES = frozenset({"hostPath", "persistentVolumeClaim"})


class UnsafePath(Exception):
    """A path inside a volume cannot be opened safely; the message names it, never a host path."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


def open_mount(mount: Mount, container: str, working_dir: str | None = None) -> int:
    """A descriptor of the directory that `mount` gives `container`, or of its `working_dir` in it.

    A link or a non-directory on the way is `PodConfigError` (the kubelet's
    CreateContainerConfigError, retried like it); a missing subPath or workingDir in a writable
    mount is created. The caller closes the descriptor.
    """
    node_path = mount.volume_type in NODE_PATH_VOLUMES
    try:
        root = open_root(mount.host_path, follow=node_path)
    except OSError as exc:
        shown = f" {mount.host_path}" if node_path else ""
        raise ModuleError(f"volume at {mount.guest_path}: cannot open directory{shown}: {exc.strerror}",
                          reason="StartError") from None
    rel = mount.sub_path
    if working_dir is not None:
        inner = PurePosixPath(working_dir).relative_to(mount.guest_path)
        rel = str(PurePosixPath(rel or ".", inner))
    try:
        return (open_dir_beneath if mount.read_only else ensure_dir_beneath)(root, rel)
    except UnsafePath as exc:
        what = f"subPath for volumeMount {go_quoted(mount.volume)}" if working_dir is None else \
            f"workingDir {go_quoted(working_dir)}"
        raise PodConfigError(f"failed to prepare {what} of container {go_quoted(container)}: {exc}") from None
    except OSError as exc:  # the agent is out of descriptors, or the disk failed: not the Pod's doing
        raise ModuleError(f"volume at {mount.guest_path}: {exc.strerror}", reason="StartError") from None
    finally:
        os.close(root)


def relative_parts(rel: str) -> tuple[str, ...]:
    """The components of `rel`, refusing an absolute path or `..` (as the API server refuses a subPath)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise UnsafePath(f"{rel!r} must be a relative path without '..'")
    return pure.parts


def open_root(path: Path, follow: bool) -> int:
    """A descriptor of a volume's root directory; `follow` lets its last component be a link
    (a hostPath names a node path that the node's administrator controls, as the kubelet lets it)."""
    return os.open(path, DIR_FLAGS & ~os.O_NOFOLLOW if follow else DIR_FLAGS)


def open_dir_beneath(root_fd: int, rel: str) -> int:
    """A new descriptor of directory `rel` under `root_fd`; `UnsafePath` names a link or a gap on the way."""
    parts = relative_parts(rel)
    if not parts:
        return os.dup(root_fd)
    fd = _openat2(root_fd, "/".join(parts))
    if fd is not None:
        return fd
    # No openat2, or it refused: the walk opens what is safe and names the component that is not.
    return _walk(root_fd, parts)


def _openat2(root_fd: int, rel: str) -> int | None:
    how = _OpenHow(DIR_FLAGS, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root_fd), ctypes.c_char_p(os.fsencode(rel)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    return int(fd) if fd >= 0 else None


def _walk(root_fd: int, parts: tuple[str, ...]) -> int:
    fd = os.dup(root_fd)
    try:
        for depth, part in enumerate(parts):
            try:
                following = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UnsafePath(_why(fd, part, "/".join(parts[:depth + 1]), exc)) from None
            os.close(fd)
            fd = following
        return fd
    except BaseException:
        os.close(fd)
        raise


def _why(parent_fd: int, name: str, shown: str, exc: OSError) -> str:
    """Why `name` could not be opened as a directory, in terms of the volume only."""
    try:
        mode = os.lstat(name, dir_fd=parent_fd).st_mode
    except OSError:
        return f"{shown!r} does not exist"
    if stat.S_ISLNK(mode) or exc.errno == errno.ELOOP:
        return f"{shown!r} is a symbolic link, and a path in a volume is never followed through one"
    if not stat.S_ISDIR(mode):
        return f"{shown!r} is not a directory"
    return f"{shown!r} cannot be opened: {os.strerror(exc.errno or 0)}"


def ensure_dir_beneath(root_fd: int, rel: str) -> int:
    """Like `open_dir_beneath`, creating missing directories on the way (the kubelet creates a
    missing subPath, and a container runtime a missing workingDir) without following a link."""
    parts = relative_parts(rel)
    fd = os.dup(root_fd)
    try:
        for depth, part in enumerate(parts):
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass  # a directory, or a link that the open below refuses
            except OSError as exc:
                raise UnsafePath(_why(fd, part, "/".join(parts[:depth + 1]), exc)) from None
            following = _walk_named(fd, parts, depth)
            os.close(fd)
            fd = following
        return fd
    except BaseException:
        os.close(fd)
        raise


def _walk_named(fd: int, parts: tuple[str, ...], depth: int) -> int:
    """Open `parts[depth]` under `fd`, naming it by its whole path from the volume in an error."""
    try:
        return os.open(parts[depth], DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise UnsafePath(_why(fd, parts[depth], "/".join(parts[:depth + 1]), exc)) from None


class TooLarge(UnsafePath):
    """The files under a directory hold more bytes than the caller allows."""


def regular_files(dir_fd: int, budget: int, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """Every regular file under `dir_fd` as (relative path, bytes); a link anywhere is `UnsafePath`,
    more than `budget` bytes in all is `TooLarge` (no file is read past it).

    Each entry is opened relative to its parent's descriptor with O_NOFOLLOW, so an entry swapped
    for a link between the listing and the open is refused, not followed. Other special files
    (FIFOs, devices, sockets) are skipped without being opened: opening one can block or act.
    """
    for entry in sorted(os.scandir(dir_fd), key=lambda e: e.name):
        shown = prefix + entry.name
        try:
            mode = os.lstat(entry.name, dir_fd=dir_fd).st_mode
        except FileNotFoundError:  # removed since the listing: it is not part of the volume any more
            continue
        if stat.S_ISLNK(mode):
            raise UnsafePath(f"{shown!r} is a symbolic link, and a path in a volume is never followed through one")
        if stat.S_ISDIR(mode):
            child = _walk_named(dir_fd, (entry.name,), 0)
            try:
                for found in regular_files(child, budget, shown + "/"):
                    budget -= len(found[1])
                    yield found
            finally:
                os.close(child)
        elif stat.S_ISREG(mode):
            data = _read_regular(dir_fd, entry.name, shown, budget)
            if data is not None:
                budget -= len(data)
                yield shown, data


def _read_regular(dir_fd: int, name: str, shown: str, budget: int) -> bytes | None:
    """The bytes of file `name`, or None when it has gone since it was listed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePath(_why(dir_fd, name, shown, exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO or device since the lstat
            raise UnsafePath(f"{shown!r} is not a regular file")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, budget - total + 1)):
            chunks.append(chunk)
            total += len(chunk)
            if total > budget:
                raise TooLarge(f"the files reach past {shown!r} hold more than the limit")
        return b"".join(chunks)
    finally:
        os.close(fd)
