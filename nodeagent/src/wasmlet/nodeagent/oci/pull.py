"""Pull one OCI reference into the module store, honouring imagePullPolicy as the kubelet does.

- `IfNotPresent`: the store's index says what the reference (a digest, or the tag's last
  resolved digest) resolved to; when that module is present, no registry is asked.
- `Always`: the tag is resolved again (one `HEAD` on the manifest), but a module already in
  the store under the resolved digest is reused, not downloaded.
- `Never`: the store only, else `ErrImageNeverPull`.
The module reports `imageID` `registry/repository@sha256:…` (the manifest or index digest, as
a kubelet reports an image's repo digest); the module's own digest keys the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci import distribution, layers
from wasmlet.nodeagent.oci.auth import Credentials
from wasmlet.nodeagent.oci.client import TIMEOUT, RegistryClient, RegistryState
from wasmlet.nodeagent.oci.distribution import WASM_MAGIC
from wasmlet.nodeagent.oci.manifest import (
    MAX_CONFIG_BYTES,
    Artifact,
    Descriptor,
    check_kind,
    declared_kind,
    entrypoint,
    find_module,
    parse_document,
    pick_platform,
)
from wasmlet.nodeagent.oci.reference import Reference
from wasmlet.nodeagent.store import BlobStore, Module, Writer


class OciPuller:
    """Pulls references into `store`; concurrent pulls of one layer from one origin (registry,
    repository, credentials: `RegistryClient.origin`) share one download."""

    def __init__(self, store: BlobStore, state: RegistryState, max_bytes: int) -> None:
        self._store = store
        self._state = state
        self._max_bytes = max_bytes
        self._inflight: dict[str, asyncio.Future[Module]] = {}

    async def pull(self, ref: Reference, policy: str, credentials: Credentials | None) -> Module:
        """The module `ref` names, from the store when the policy allows, else from the registry."""
        if policy != "Always" and (hit := await self.present(ref)):
            return hit
        if policy == "Never":
            raise PullError(f'Container image "{ref}" is not present with pull policy of Never',
                            reason="ErrImageNeverPull")
        try:
            return await self._pull(ref, policy, credentials)
        except PullError as exc:
            raise PullError(f"{ref}: {exc.message}", reason=exc.reason) from exc

    async def present(self, ref: Reference) -> Module | None:
        """The module `ref` last resolved to, when it is in the store (no network)."""
        top = ref.digest or self._store.lookup(f"{ref.name}:{ref.tag}")
        module_hex = self._store.lookup(f"{ref.name}@{top}") if top else None
        module = await asyncio.to_thread(self._store.get, module_hex) if module_hex else None
        return replace(module, image_id=f"{ref.name}@{top}") if module else None

    async def _pull(self, ref: Reference, policy: str, credentials: Credentials | None) -> Module:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            client = RegistryClient(session, self._state, ref.registry, ref.api_host, ref.repository, credentials)
            selector = ref.selector
            if policy == "Always" and not ref.pinned:
                resolved = await distribution.head(client, selector)
                if resolved and (hit := await self.present(ref.at(resolved))):
                    self._store.remember({f"{ref.name}:{ref.tag}": resolved})
                    return hit
                selector = resolved or selector
            top, artifact = await self._resolve(client, selector)
            module = await self._module(client, artifact)
        entries = {f"{ref.name}@{top}": module.digest.removeprefix("sha256:")}
        if not ref.pinned:
            entries[f"{ref.name}:{ref.tag}"] = top
        self._store.remember(entries)
        return replace(module, image_id=f"{ref.name}@{top}")

    async def _resolve(self, client: RegistryClient, selector: str) -> tuple[str, Artifact]:
        """The digest the selector names (the index's, for an index) and the artifact to run."""
        body, content_type, top = await distribution.manifest(client, selector)
        document = parse_document(body, content_type)
        if document.is_index:
            entry = pick_platform(document)
            body, content_type, _ = await distribution.manifest(client, entry.digest)
            document = parse_document(body, content_type)
            if document.is_index:
                raise PullError("not a wasm artifact: an image index inside an image index")
        return top, find_module(document)

    async def _module(self, client: RegistryClient, artifact: Artifact) -> Module:
        layer = artifact.layer
        if layer.size > self._max_bytes:
            raise PullError(f"too large: the module layer has {layer.size} bytes, the limit is {self._max_bytes}")
        if not artifact.packed:
            module = await self._once(f"{client.origin}@{layer.digest}", lambda: self._wasm_layer(client, layer))
            if artifact.config is not None and artifact.config.size <= MAX_CONFIG_BYTES:
                declared = declared_kind(await distribution.small_blob(client, artifact.config))
                check_kind(declared, await asyncio.to_thread(_header, module))
            return module
        entry = None
        if artifact.config is not None and artifact.config.size <= MAX_CONFIG_BYTES:
            entry = entrypoint(await distribution.small_blob(client, artifact.config))
        key = f"layer:{layer.digest}#{entry or ''}"
        return await self._once(f"{client.origin}@{key}", lambda: self._packed_layer(client, layer, entry, key))

    async def _once(self, key: str, make: Callable[[], Awaitable[Module]]) -> Module:
        future = self._inflight.get(key)
        if future is None:
            future = self._inflight[key] = asyncio.ensure_future(make())
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    async def _wasm_layer(self, client: RegistryClient, layer: Descriptor) -> Module:
        hexdigest = layer.digest.removeprefix("sha256:")
        if hit := await asyncio.to_thread(self._store.get, hexdigest):
            return hit
        with self._store.writer() as out:
            await distribution.download(client, layer, out, check_magic=True)
            return self._store.commit(out, layer.digest, layer.size)

    async def _packed_layer(self, client: RegistryClient, layer: Descriptor, entry: str | None, key: str) -> Module:
        known = self._store.lookup(key)
        if known and (hit := await asyncio.to_thread(self._store.get, known)):
            return hit
        with self._store.writer() as blob, self._store.writer() as out:
            await distribution.download(client, layer, blob, check_magic=False)
            if f"sha256:{blob.hasher.hexdigest()}" != layer.digest or blob.size != layer.size:
                raise PullError(f"digest mismatch: layer {layer.digest} ({layer.size} bytes) arrived as "
                                f"sha256:{blob.hasher.hexdigest()} ({blob.size} bytes)")
            blob.file.flush()
            await asyncio.to_thread(self._unpack, blob, out, entry)
            module = self._store.commit(out)
        self._store.remember({key: module.digest.removeprefix("sha256:")})
        return module

    def _unpack(self, blob: Writer, out: Writer, entry: str | None) -> None:
        name = layers.choose(layers.wasm_files(blob.path, self._max_bytes), entry)
        layers.copy_member(blob.path, name, out.write, self._max_bytes)
        out.file.seek(0)
        if out.file.read(4) != WASM_MAGIC:
            raise PullError(f"not a wasm artifact: /{name} is not a wasm module (no \\0asm header)")
        out.file.seek(0, 2)


def _header(module: Module) -> bytes:
    with module.path.open("rb") as handle:
        return handle.read(8)
