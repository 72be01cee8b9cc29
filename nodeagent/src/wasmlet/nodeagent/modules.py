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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from wasmlet.kube import ApiError, Forbidden
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
CONFIGMAP_MODULES = 1024  # ConfigMap versions remembered as already stored (the oldest are forgotten)


@dataclass
class _Job:
    task: asyncio.Future[Module] | None = None
    holders: set[str] = field(default_factory=set)


def check_module_reference(ref: ModuleRef, volumes: list[dict[str, Any]]) -> None:
    """Refuse a `configmap://` module whose ConfigMap no volume of the Pod names. A node identity
    may read only the ConfigMaps its Pods reference, and KubeEdge's MetaServer hides the 403 by
    answering from its own store: such a module would run only while some other Pod happens to
    reference the same ConfigMap, and could be a stale copy. Said plainly instead."""
    name = ref.ref.partition("/")[0]
    for volume in volumes:
        for source in [volume, *((volume.get("projected") or {}).get("sources") or [])]:
            if (source.get("configMap") or {}).get("name") == name:
                return
    raise PodConfigError(
        f'configmap "{name}" (module configmap://{ref.ref}) is not referenced by a volume of this Pod: behind '
        "KubeEdge's MetaServer a node reads only the ConfigMaps its Pods reference; add the volume "
        f'{{"name": "wasmlet-module", "configMap": {{"name": "{name}"}}}} to the Pod')


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
        # ConfigMap modules already in the store: (namespace, name, key) → (uid, resourceVersion, hex digest)
        self._from_configmaps: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    async def fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None = None, *, holder: str = "",
                    pull_secrets: tuple[str, ...] = (), pull_policy: str = "IfNotPresent",
                    on_pull: Callable[[], None] | None = None) -> Module:
        """The module for `ref`, fetched at most once however many Pods ask at once; `on_pull` is
        called when it is not in the store and a download begins (the kubelet's `Pulling`).

        With a `holder` (a Pod UID) the module stays on hold, safe from eviction, until `release(holder)`.
        """
        key = (ref.kind, namespace, ref.ref, ref.sha256 or "", pull_policy, *pull_secrets)
        job = self._jobs.get(key)
        if job is None:
            job = self._jobs[key] = _Job()
            job.task = asyncio.ensure_future(self._run(key, job, ref, namespace, base_dir, pull_secrets, pull_policy,
                                                      on_pull or _nothing))
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
                   pull_secrets: tuple[str, ...], policy: str, on_pull: Callable[[], None]) -> Module:
        try:
            module = await self._fetch(ref, namespace, base_dir, pull_secrets, policy, on_pull)
            hexdigest = module.digest.removeprefix("sha256:")
            for holder in job.holders:
                self.store.hold(holder, hexdigest)
            self.store.evict()
            return module
        finally:
            self._jobs.pop(key, None)  # in the same step as the holds: no one joins a finished job

    async def _fetch(self, ref: ModuleRef, namespace: str, base_dir: Path | None = None,
                     pull_secrets: tuple[str, ...] = (), policy: str = "IfNotPresent",
                     on_pull: Callable[[], None] = lambda: None) -> Module:
        if ref.kind == "oci":
            try:
                image = parse_reference(ref.ref)
            except InvalidReference as exc:
                raise PullError(f"{ref.ref}: {exc}", reason="InvalidImageName") from exc
            if policy != "Always" and (hit := await self._oci.present(image)):
                return replace(hit, cached=True)
            keyring = await self._keyring(namespace, pull_secrets)
            on_pull()
            return await self._oci.pull(image, policy, credentials_for(keyring, image))
        if ref.sha256 and (hit := await asyncio.to_thread(self.store.get, ref.sha256)):
            return replace(hit, cached=True)
        if ref.kind == "http" and policy == "Never":
            raise PullError(f'Container image "{ref.ref}" is not present with pull policy of Never',
                            reason="ErrImageNeverPull")
        if ref.kind == "configmap":
            return await self._configmap_module(ref, namespace, on_pull)
        on_pull()
        with self.store.writer() as out:
            if ref.kind == "http":
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

    async def _configmap_module(self, ref: ModuleRef, namespace: str, on_pull: Callable[[], None]) -> Module:
        """The module in a ConfigMap's binaryData; decoded and stored once per version of the ConfigMap."""
        name, _, key = ref.ref.partition("/")
        try:
            configmap = await self._objects.configmap(namespace, name)
        except Forbidden as exc:
            # A node identity reads only what the Node authorizer relates to its Pods: volumes,
            # env and envFrom references count, a `configmap://` image does not.
            raise PodConfigError(
                f'configmap "{name}" is forbidden to this node (module configmap://{ref.ref}): a node may read '
                "only the ConfigMaps its Pods reference from volumes, env or envFrom; add a volume "
                f'{{"name": "wasmlet-module", "configMap": {{"name": "{name}"}}}} to the Pod (the operator '
                f"does for WasmWorkloads) ({exc})") from exc
        except ApiError as exc:
            raise PullError(f"cannot read ConfigMap {namespace}/{name} for configmap://{ref.ref}: {exc}") from exc
        if configmap is None:
            raise PodConfigError(f'configmap "{name}" not found (module configmap://{ref.ref})')
        meta = configmap.get("metadata") or {}
        version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        known = self._from_configmaps.get((namespace, name, key))
        if known is not None and known[:2] == version and (hit := self.store.get(known[2])):
            return replace(hit, cached=True)
        on_pull()
        with self.store.writer() as out:
            out.write(_configmap_bytes(configmap, ref, namespace, key))
            module = self._commit(out, ref)
        self._from_configmaps[(namespace, name, key)] = (*version, module.digest.removeprefix("sha256:"))
        while len(self._from_configmaps) > CONFIGMAP_MODULES:
            del self._from_configmaps[next(iter(self._from_configmaps))]
        return module

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


def _configmap_bytes(configmap: dict[str, object], ref: ModuleRef, namespace: str, key: str) -> bytes:
    name = ref.ref.partition("/")[0]
    binary = (configmap.get("binaryData") or {}).get(key)  # type: ignore[attr-defined]
    if binary is None:
        raise PodConfigError(f'couldn\'t find key {key} in ConfigMap {namespace}/{name} binaryData')
    try:
        return base64.b64decode(binary, validate=True)
    except ValueError as exc:
        raise PullError(f"ConfigMap {namespace}/{name} key {key}: binaryData is not base64") from exc


def _nothing() -> None:
    """No one to tell that a download begins."""
