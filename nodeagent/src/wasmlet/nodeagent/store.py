"""The node's content-addressed module store: `root/sha256/<hex>`, shared by every Pod.

- Verified in: a blob becomes visible only through `commit`, after its sha256 (and size, when
  known) matched; writes go to a temporary file in the same folder, fsync, rename — so no
  half-written module is ever visible, even after a crash (leftovers are swept at start).
- Verified out: a blob is re-hashed the first time this process uses it, so a file damaged
  on disk while the agent was down is refused and fetched again, not run.
- Bounded: past `cap_bytes`, least recently used blobs are evicted, never one a Pod holds.
- `index.json` remembers what a reference resolved to (tag → digest → module), written
  atomically, so IfNotPresent and Never need no registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wasmlet.nodeagent.errors import PullError

log = logging.getLogger(__name__)
PARTIAL = ".partial-"


@dataclass(frozen=True)
class Module:
    """A verified module in the store. `image_id` is what the container status reports."""

    path: Path
    digest: str  # "sha256:<hex>" of the module itself: the runtimes' compiled-cache key
    size: int
    image_id: str = ""
    cached: bool = False  # found in the store, nothing downloaded ("already present on machine")


@dataclass
class Writer:
    """A temporary file that hashes what is written to it."""

    file: IO[bytes]
    path: Path
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.hasher.update(data)
        self.size += len(data)


class BlobStore:
    """Blobs by sha256, with holds (blobs in use), LRU eviction and the reference index."""

    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root = root
        self.blobs = root / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._index_path = root / "index.json"
        self._cap = cap_bytes
        self._verified: set[str] = set()
        self._holds: dict[str, set[str]] = {}  # holder (Pod UID) → hex digests
        for leftover in self.blobs.glob(f"{PARTIAL}*"):
            leftover.unlink(missing_ok=True)  # a crash mid-write: never visible, now gone
        self._index: dict[str, str] = self._load_index()

    def get(self, hexdigest: str) -> Module | None:
        """The blob if present and intact; it counts as used now (LRU)."""
        path = self.blobs / hexdigest
        try:
            if hexdigest not in self._verified:
                if _hash_file(path) != hexdigest:
                    log.warning("module blob %s is damaged on disk; removing it", hexdigest)
                    path.unlink(missing_ok=True)
                    return None
                self._verified.add(hexdigest)
            os.utime(path)
            return Module(path, f"sha256:{hexdigest}", path.stat().st_size)
        except FileNotFoundError:
            self._verified.discard(hexdigest)
            return None

    @contextlib.contextmanager
    def writer(self) -> Iterator[Writer]:
        """A hashing temporary file in the store's folder; removed unless committed."""
        fd, name = tempfile.mkstemp(dir=self.blobs, prefix=PARTIAL)
        try:
            with os.fdopen(fd, "w+b") as file:
                yield Writer(file, Path(name))
        finally:
            Path(name).unlink(missing_ok=True)

    def commit(self, writer: Writer, expected: str | None = None, size: int | None = None) -> Module:
        """Verify the written blob against `expected` ("sha256:…") and `size`, then make it visible."""
        digest = writer.hasher.hexdigest()
        if expected is not None and expected != f"sha256:{digest}":
            raise PullError(f"digest mismatch: expected {expected}, got sha256:{digest}")
        if size is not None and size != writer.size:
            raise PullError(f"size mismatch: expected {size} bytes, got {writer.size}")
        writer.file.flush()
        os.fsync(writer.file.fileno())
        os.replace(writer.path, self.blobs / digest)
        _fsync_dir(self.blobs)
        self._verified.add(digest)
        return Module(self.blobs / digest, f"sha256:{digest}", writer.size)

    # -- holds and eviction ------------------------------------------------------------------

    def hold(self, holder: str, hexdigest: str) -> None:
        """`holder` (a Pod UID) uses the blob: eviction skips it until `release(holder)`."""
        self._holds.setdefault(holder, set()).add(hexdigest)

    def release(self, holder: str) -> None:
        """Drop every hold of `holder`, and evict what no longer fits."""
        if self._holds.pop(holder, None):
            self.evict()

    def evict(self) -> list[str]:
        """Remove least recently used blobs nobody holds until the store fits its cap."""
        held = set().union(*self._holds.values()) if self._holds else set()
        entries = []
        for entry in os.scandir(self.blobs):
            if not entry.name.startswith(PARTIAL):
                stat = entry.stat()
                entries.append((stat.st_mtime_ns, entry.name, stat.st_size))
        total = sum(size for _, _, size in entries)
        evicted = []
        for _, name, size in sorted(entries):
            if total <= self._cap:
                break
            if name in held:
                continue
            (self.blobs / name).unlink(missing_ok=True)
            self._verified.discard(name)
            total -= size
            evicted.append(name)
        if evicted:
            log.info("module cache over %d bytes: evicted %d module(s)", self._cap, len(evicted))
        return evicted

    # -- what references resolved to ---------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        """What `key` (`name:tag` or `name@digest`) last resolved to, if known."""
        return self._index.get(key)

    def remember(self, entries: dict[str, str]) -> None:
        """Record reference → digest entries; the file is replaced atomically."""
        if all(self._index.get(k) == v for k, v in entries.items()):
            return
        self._index.update(entries)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=PARTIAL)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self._index, out, indent=0, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, self._index_path)
        finally:
            Path(name).unlink(missing_ok=True)

    def _load_index(self) -> dict[str, str]:
        for leftover in self.root.glob(f"{PARTIAL}*"):
            leftover.unlink(missing_ok=True)
        try:
            data = json.loads(self._index_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("module index %s unreadable (%s); starting a new one", self._index_path, exc)
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable: without it a crash may forget the new directory entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
