"""Take the one `.wasm` file out of an image layer, refusing anything hostile (no network).

Nothing is ever extracted by the archive's own names: the chosen member's bytes are copied
into a file the cache opened, so no tar entry can write outside the cache. A layer is
refused as a whole when any entry is suspicious — an absolute path, a `..` component, a
symlink, hardlink or device — because a layer built to carry one module has no reason to
hold one. Decompression is bounded by size and by ratio, so a gzip bomb costs at most
`max_bytes` of reading, never of disk or memory.
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from wasmlet.nodeagent.errors import PullError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A tar adds headers and padding around its files; allow this much on top of the module limit.
TAR_OVERHEAD = 1024 * 1024
# Wasm code compresses 2–4×; past 1 MiB of output, 100× more output than input is a bomb.
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024


class _Bounded(io.RawIOBase):
    """The layer's tar stream, decompressed, that fails once it grows past `limit` or `MAX_RATIO`."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        head = raw.read(4)
        raw.seek(0)
        if head.startswith(ZSTD_MAGIC):
            raise PullError("unsupported layer: zstd-compressed layers are not supported (use gzip or none)")
        self._source: BinaryIO = gzip.GzipFile(fileobj=raw) if head.startswith(GZIP_MAGIC) else raw  # type: ignore[assignment]
        self._limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._source.read(len(buffer))
        except (OSError, EOFError, zlib.error) as exc:
            raise PullError(f"corrupt layer: {exc}") from exc
        self.total += len(data)
        if self.total > self._limit:
            raise PullError(f"layer too large: it unpacks to more than {self._limit} bytes")
        if self.total > RATIO_FLOOR and self.total > MAX_RATIO * max(self._raw.tell(), 1):
            raise PullError(f"layer rejected: it decompresses more than {MAX_RATIO}:1 (a gzip bomb)")
        buffer[:len(data)] = data
        return len(data)


def _members(blob: Path, max_bytes: int) -> tuple[BinaryIO, tarfile.TarFile]:
    raw = blob.open("rb")
    try:
        stream = io.BufferedReader(_Bounded(raw, max_bytes + TAR_OVERHEAD), buffer_size=1 << 16)
        return raw, tarfile.open(fileobj=stream, mode="r|")
    except tarfile.TarError as exc:
        raw.close()
        raise PullError(f"not a wasm artifact: the layer is not a tar archive ({exc})") from exc
    except BaseException:
        raw.close()
        raise


def _check(member: tarfile.TarInfo, max_bytes: int) -> str:
    """The member's normalised name, or PullError when the entry must not be in a module layer."""
    name = member.name
    if name.startswith("/") or "\\" in name:
        raise PullError(f"layer rejected: entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PullError(f"layer rejected: entry {name!r} points outside the layer ('..')")
    if member.issym() or member.islnk():
        raise PullError(f"layer rejected: entry {name!r} is a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise PullError(f"layer rejected: entry {name!r} is a device, fifo or other special file")
    if member.isfile() and member.size > max_bytes:
        raise PullError(f"layer rejected: {name!r} is too large ({member.size} bytes, limit {max_bytes})")
    return "/".join(parts)


def wasm_files(blob: Path, max_bytes: int) -> list[str]:
    """Check every entry of the layer and list its `.wasm` files (normalised names)."""
    raw, archive = _members(blob, max_bytes)
    try:
        with raw, archive:
            return [name for member in archive
                    if (name := _check(member, max_bytes)).endswith(".wasm") and member.isfile()]
    except tarfile.TarError as exc:
        raise PullError(f"corrupt layer: {exc}") from exc


def choose(names: list[str], entrypoint: str | None) -> str:
    """The module to run: the one the image's entrypoint names, else the only `.wasm` in the layer."""
    if entrypoint is not None:
        if entrypoint in names:
            return entrypoint
        raise PullError(f"not a wasm artifact: the image entrypoint /{entrypoint} is not in its layer")
    if len(names) == 1:
        return names[0]
    if not names:
        raise PullError("not a wasm artifact: the image layer holds no .wasm file")
    raise PullError(f"not a wasm artifact: the image layer holds {len(names)} .wasm files and its config "
                    "names none as the entrypoint")


def copy_member(blob: Path, name: str, write: Callable[[bytes], object], max_bytes: int) -> None:
    """Feed the (already checked) member `name` to `write`, never touching the filesystem by its name."""
    raw, archive = _members(blob, max_bytes)
    try:
        with raw, archive:
            for member in archive:
                if _check(member, max_bytes) == name and member.isfile():
                    source = archive.extractfile(member)
                    assert source is not None  # a regular file always has content
                    for chunk in iter(functools.partial(source.read, 1 << 16), b""):
                        write(chunk)
                    return
    except tarfile.TarError as exc:
        raise PullError(f"corrupt layer: {exc}") from exc
    raise PullError(f"corrupt layer: {name!r} vanished between two reads")
