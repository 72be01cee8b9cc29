"""Fetch modules into one content-addressed cache per node (DESIGN.md §6).

Every blob is verified (sha256, size) before it is used; writes are atomic (a temporary file
in the same folder, fsync, rename), so no half-written module is ever visible, even after a
crash; concurrent pulls of the same reference share one download.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from wasmlet.nodeagent.errors import PodConfigError, PullError
from wasmlet.nodeagent.objects import ObjectStore
from wasmlet.nodeagent.podspec import ModuleRef

WASM_MAGIC = b"\0asm"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)


@dataclass(frozen=True)
class Module:
    """A verified module in the cache."""

    path: Path
    digest: str  # "sha256:<hex>"
    size: int


class ModuleCache:
    """Resolves ModuleRefs to verified files under `root/sha256/`."""

    def __init__(self, root: Path, objects: ObjectStore, max_bytes: int, allow_unpinned_urls: bool = False) -> None:
        self._blobs = root / "sha256"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._objects = objects
        self._max_bytes = max_bytes
        self._allow_unpinned = allow_unpinned_urls
        self._inflight: dict[tuple[str, str, str, str], asyncio.Future[Module]] = {}

    async def fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None = None) -> Module:
        """Return the module for `ref`, downloading it at most once however many Pods ask at once."""
        key = (ref.kind, namespace, ref.ref, ref.sha256 or "")
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(ref, namespace, base_dir))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        module = await asyncio.shield(pending)
        # Whoever shares a download still gets only what its own pin allows.
        if ref.sha256 and module.digest != f"sha256:{ref.sha256}":
            raise PullError(f"{ref.ref}: digest mismatch: expected sha256:{ref.sha256}, got {module.digest}")
        return module

    def cached(self, sha256: str) -> Module | None:
        path = self._blobs / sha256
        return Module(path, f"sha256:{sha256}", path.stat().st_size) if path.is_file() else None

    async def _fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None) -> Module:
        if ref.sha256 and (hit := self.cached(ref.sha256)):
            return hit
        if ref.kind == "configmap":
            data = await self._from_configmap(ref, namespace)
        elif ref.kind == "http":
            data = await self._from_http(ref)
        elif ref.kind == "file":
            data = self._from_file(ref, base_dir)
        else:
            raise PullError(f"cannot pull {ref.ref!r}: OCI registry pulls are not available in this agent "
                            "build; use an http(s):// URL with a sha256, or configmap://<name>/<key>")
        return self._store(data, ref)

    async def _from_configmap(self, ref: ModuleRef, namespace: str) -> bytes:
        name, _, key = ref.ref.partition("/")
        configmap = await self._objects.configmap(namespace, name)
        if configmap is None:
            raise PodConfigError(f'configmap "{name}" not found (module configmap://{ref.ref})')
        binary = (configmap.get("binaryData") or {}).get(key)
        if binary is None:
            raise PodConfigError(f'couldn\'t find key {key} in ConfigMap {namespace}/{name} binaryData')
        try:
            return base64.b64decode(binary, validate=True)
        except ValueError as exc:
            raise PullError(f"ConfigMap {namespace}/{name} key {key}: binaryData is not base64") from exc

    async def _from_http(self, ref: ModuleRef) -> bytes:
        if ref.sha256 is None and not self._allow_unpinned:
            raise PullError(f"{ref.ref}: http(s) modules must be pinned with a sha256 "
                            "(annotation wasmlet.dev/sha256.<container>)", reason="ErrImagePull")
        chunks: list[bytes] = []
        size = 0
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
                async with session.get(ref.ref, max_redirects=5) as response:
                    if response.status != 200:
                        raise PullError(f"{ref.ref}: HTTP {response.status} {response.reason}")
                    async for chunk in response.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > self._max_bytes:
                            raise PullError(f"{ref.ref}: larger than the {self._max_bytes}-byte module limit")
                        chunks.append(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PullError(f"{ref.ref}: {exc.__class__.__name__}: {exc}") from exc
        return b"".join(chunks)

    def _from_file(self, ref: ModuleRef, base_dir: Path | None) -> bytes:
        path = Path(ref.ref)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            if path.stat().st_size > self._max_bytes:
                raise PullError(f"{path}: larger than the {self._max_bytes}-byte module limit")
            return path.read_bytes()
        except OSError as exc:
            raise PullError(f"cannot read module file {path}: {exc.strerror}") from exc

    def _store(self, data: bytes, ref: ModuleRef) -> Module:
        digest = hashlib.sha256(data).hexdigest()
        if ref.sha256 and digest != ref.sha256:
            raise PullError(f"{ref.ref}: digest mismatch: expected sha256:{ref.sha256}, got sha256:{digest}",
                            reason="ErrImagePull")
        if not data.startswith(WASM_MAGIC):
            raise PullError(f"{ref.ref}: not a wasm module (no \\0asm header)", reason="ErrImagePull")
        target = self._blobs / digest
        if not target.is_file():
            fd, tmp = tempfile.mkstemp(dir=self._blobs, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return Module(target, f"sha256:{digest}", len(data))
