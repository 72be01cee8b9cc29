"""Fetch modules into the node's one content-addressed store (docs/contract.md).

Sources: OCI registries (`oci.pull`), http(s) URLs pinned by sha256, ConfigMap `binaryData`,
and (static Pods only) files. Whatever the source, a module reaches a runtime only through
the store (`store.BlobStore`): verified, written atomically, held while a Pod uses it.
Concurrent fetches of one reference by many Pods share one job; the job puts the module on
hold for every Pod waiting on it before any of them resumes, so eviction can never take a
module between its download and its first use.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from wasmlet.kube import ApiError
from wasmlet.nodeagent.errors import PodConfigError, PullError
from wasmlet.nodeagent.objects import ObjectStore
from wasmlet.nodeagent.oci.auth import Credentials, credentials_for, secret_credentials
from wasmlet.nodeagent.oci.client import RegistryState
from wasmlet.nodeagent.oci.distribution import WASM_MAGIC
from wasmlet.nodeagent.oci.pull import OciPuller
from wasmlet.nodeagent.oci.reference import InvalidReference, parse_reference
from wasmlet.nodeagent.podspec import ModuleRef
from wasmlet.nodeagent.store import BlobStore, Module, Writer

__all__ = ["Module", "ModuleCache", "WASM_MAGIC"]

log = logging.getLogger(__name__)
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)
HTTP_MAX_REDIRECTS = 5
# The cap on the whole store; a module bigger than what is left still fits (held ones never go).
DEFAULT_CACHE_BYTES = 2 * 1024 ** 3


@dataclass
class _Job:
    task: asyncio.Future[Module] | None = None
    holders: set[str] = field(default_factory=set)


class ModuleCache:
    """Resolves ModuleRefs to verified modules in `root`, shared by every Pod of the node."""

    def __init__(self, root: Path, objects: ObjectStore, max_bytes: int, allow_unpinned_urls: bool = False, *,
                 cache_max_bytes: int = DEFAULT_CACHE_BYTES, insecure_registries: tuple[str, ...] = ()) -> None:
        self.store = BlobStore(root, cache_max_bytes)
        self._objects = objects
        self._max_bytes = max_bytes
        self._allow_unpinned = allow_unpinned_urls
        self._oci = OciPuller(self.store, RegistryState(insecure=insecure_registries), max_bytes)
        self._jobs: dict[tuple[str, ...], _Job] = {}

    async def fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None = None, *, holder: str = "",
                    pull_secrets: tuple[str, ...] = (), pull_policy: str = "IfNotPresent") -> Module:
        """The module for `ref`, fetched at most once however many Pods ask at once.

        With a `holder` (a Pod UID) the module stays on hold, safe from eviction, until `release(holder)`.
        """
        key = (ref.kind, namespace, ref.ref, ref.sha256 or "", pull_policy, *pull_secrets)
        job = self._jobs.get(key)
        if job is None:
            job = self._jobs[key] = _Job()
            job.task = asyncio.ensure_future(self._run(key, job, ref, namespace, base_dir, pull_secrets, pull_policy))
        if holder:
            job.holders.add(holder)
        assert job.task is not None
        module = await asyncio.shield(job.task)
        # Whoever shares a download still gets only what its own pin allows.
        if ref.sha256 and module.digest != f"sha256:{ref.sha256}":
            raise PullError(f"{ref.ref}: digest mismatch: expected sha256:{ref.sha256}, got {module.digest}")
        return module

    def release(self, holder: str) -> None:
        """The Pod is gone: its modules may be evicted again."""
        for job in self._jobs.values():
            job.holders.discard(holder)
        self.store.release(holder)

    async def _run(self, key: tuple[str, ...], job: _Job, ref: ModuleRef, namespace: str, base_dir: Path | None,
                   pull_secrets: tuple[str, ...], policy: str) -> Module:
        try:
            module = await self._fetch(ref, namespace, base_dir, pull_secrets, policy)
            hexdigest = module.digest.removeprefix("sha256:")
            for holder in job.holders:
                self.store.hold(holder, hexdigest)
            self.store.evict()
            return module
        finally:
            self._jobs.pop(key, None)  # in the same step as the holds: no one joins a finished job

    async def _fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None = None,
                     pull_secrets: tuple[str, ...] = (), policy: str = "IfNotPresent") -> Module:
        if ref.kind == "oci":
            try:
                image = parse_reference(ref.ref)
            except InvalidReference as exc:
                raise PullError(f"{ref.ref}: {exc}", reason="InvalidImageName") from exc
            keyring = await self._keyring(namespace, pull_secrets)
            return await self._oci.pull(image, policy, credentials_for(keyring, image))
        if ref.sha256 and (hit := await asyncio.to_thread(self.store.get, ref.sha256)):
            return hit
        if ref.kind == "http" and policy == "Never":
            raise PullError(f'Container image "{ref.ref}" is not present with pull policy of Never',
                            reason="ErrImageNeverPull")
        with self.store.writer() as out:
            if ref.kind == "configmap":
                out.write(await self._from_configmap(ref, namespace))
            elif ref.kind == "http":
                await self._from_http(ref, out)
            elif ref.kind == "file":
                await asyncio.to_thread(self._from_file, ref, base_dir, out)
            else:
                raise PullError(f"cannot pull {ref.ref!r}: unknown module source {ref.kind!r}")
            return self._commit(out, ref)

    async def _keyring(self, namespace: str, names: tuple[str, ...]) -> dict[str, Credentials]:
        """Credentials from the Pod's imagePullSecrets; missing or invalid ones are skipped, as the kubelet does."""
        keyring: dict[str, Credentials] = {}
        for name in names:
            try:
                secret = await self._objects.secret(namespace, name)
            except ApiError as exc:
                log.warning("image pull secret %s/%s unavailable (%s); pulling without it", namespace, name, exc)
                continue
            if secret is None:
                log.warning("image pull secret %s/%s not found; pulling without it", namespace, name)
                continue
            try:
                found = secret_credentials(secret)
            except ValueError as exc:
                log.warning("image pull secret %s/%s ignored: %s", namespace, name, exc)
                continue
            for key, creds in found.items():
                keyring.setdefault(key, creds)
        return keyring

    async def _from_configmap(self, ref: ModuleRef, namespace: str) -> bytes:
        name, _, key = ref.ref.partition("/")
        try:
            configmap = await self._objects.configmap(namespace, name)
        except ApiError as exc:
            raise PullError(f"cannot read ConfigMap {namespace}/{name} for configmap://{ref.ref}: {exc}") from exc
        if configmap is None:
            raise PodConfigError(f'configmap "{name}" not found (module configmap://{ref.ref})')
        binary = (configmap.get("binaryData") or {}).get(key)
        if binary is None:
            raise PodConfigError(f'couldn\'t find key {key} in ConfigMap {namespace}/{name} binaryData')
        try:
            return base64.b64decode(binary, validate=True)
        except ValueError as exc:
            raise PullError(f"ConfigMap {namespace}/{name} key {key}: binaryData is not base64") from exc

    async def _from_http(self, ref: ModuleRef, out: Writer) -> None:
        if ref.sha256 is None and not self._allow_unpinned:
            raise PullError(f"{ref.ref}: http(s) modules must be pinned with a sha256 "
                            "(annotation wasmlet.dev/sha256.<container>)")
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, \
                    session.get(ref.ref, max_redirects=HTTP_MAX_REDIRECTS) as response:
                    if response.status != 200:
                        what = "not found" if response.status == 404 else "unauthorized" \
                            if response.status in (401, 403) else "server error"
                        raise PullError(f"{ref.ref}: {what}: HTTP {response.status} {response.reason}")
                    if (response.content_length or 0) > self._max_bytes:
                        raise PullError(f"{ref.ref}: too large: {response.content_length} bytes, the module "
                                        f"limit is {self._max_bytes}")
                    async for chunk in response.content.iter_chunked(1 << 16):
                        if out.size + len(chunk) > self._max_bytes:
                            raise PullError(f"{ref.ref}: too large: over the {self._max_bytes}-byte module limit")
                        out.write(chunk)
        except aiohttp.TooManyRedirects as exc:
            raise PullError(f"{ref.ref}: more than {HTTP_MAX_REDIRECTS} redirects") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PullError(f"{ref.ref}: unreachable: {exc.__class__.__name__}: {exc or 'timed out'}") from exc

    def _from_file(self, ref: ModuleRef, base_dir: Path | None, out: Writer) -> None:
        path = Path(ref.ref)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            if path.stat().st_size > self._max_bytes:
                raise PullError(f"{path}: too large: over the {self._max_bytes}-byte module limit")
            with path.open("rb") as source:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    out.write(chunk)
        except OSError as exc:
            raise PullError(f"cannot read module file {path}: {exc.strerror}") from exc

    def _commit(self, out: Writer, ref: ModuleRef) -> Module:
        expected = f"sha256:{ref.sha256}" if ref.sha256 else None
        if expected and expected != f"sha256:{out.hasher.hexdigest()}":
            raise PullError(f"{ref.ref}: digest mismatch: expected {expected}, got sha256:{out.hasher.hexdigest()}")
        out.file.seek(0)
        if out.file.read(4) != WASM_MAGIC:
            raise PullError(f"{ref.ref}: not a wasm module (no \\0asm header)")
        out.file.seek(0, 2)
        return self.store.commit(out, expected)
