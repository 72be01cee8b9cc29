"""Publish modules to the test registry in every format the agent pulls, and pull them back
through the agent's module cache."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import aiohttp

from wasmlet.nodeagent.modules import Module, ModuleCache
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.oci.manifest import DOCKER_MANIFEST, LEGACY_WASM_LAYER, OCI_INDEX, OCI_MANIFEST
from wasmlet.nodeagent.podspec import ModuleRef

from tests.fixtures.registry import OciRegistry, push_blob, sha256_digest

OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _headers(registry: OciRegistry, content_type: str) -> dict[str, str]:
    auth = registry.authorization
    return {"Content-Type": content_type, **({"Authorization": auth} if auth else {})}


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


async def put_manifest(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str,
                       manifest: dict[str, Any]) -> str:
    """PUT a manifest or index under `tag` (or a digest); return its digest."""
    body = json.dumps(manifest).encode()
    async with session.put(f"{registry.url}/v2/{repository}/manifests/{tag}", data=body,
                           headers=_headers(registry, manifest["mediaType"])) as response:
        assert response.status == 201, f"manifest push: {response.status} {await response.text()}"
    return sha256_digest(body)


async def push_image(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str, *,
                     config: bytes, config_type: str, layers: list[tuple[bytes, str]],
                     manifest_type: str = OCI_MANIFEST) -> str:
    """Push blobs and a manifest made of them; return the manifest digest."""
    await push_blob(session, registry, repository, config)
    for data, _ in layers:
        await push_blob(session, registry, repository, data)
    return await put_manifest(session, registry, repository, tag, {
        "schemaVersion": 2, "mediaType": manifest_type, "config": descriptor(config_type, config),
        "layers": [descriptor(media_type, data) for data, media_type in layers]})


async def push_legacy(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str,
                      module: bytes) -> str:
    """The wasm-to-oci format: one `application/vnd.wasm.content.layer.v1+wasm` layer."""
    return await push_image(session, registry, repository, tag, config=b"{}",
                            config_type="application/vnd.wasm.config.v1+json", layers=[(module, LEGACY_WASM_LAYER)])


def tar_layer(files: dict[str, bytes], compress: bool = True, links: dict[str, str] | None = None) -> bytes:
    """A layer tar(.gz) holding `files`, and symlinks `links` (name → target) for the hostile cases."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


async def push_tar_image(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str,
                         layer: bytes, entrypoint: list[str] | None = None, docker: bool = False) -> str:
    """A single-layer container image (OCI, or Docker schema 2), `wasi/wasm`, with an optional entrypoint."""
    config = json.dumps({"architecture": "wasm", "os": "wasi", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Entrypoint": entrypoint} if entrypoint else {}}).encode()
    return await push_image(session, registry, repository, tag, config=config,
                            config_type=DOCKER_IMAGE_CONFIG if docker else OCI_IMAGE_CONFIG,
                            layers=[(layer, DOCKER_TAR_GZIP if docker else OCI_TAR_GZIP)],
                            manifest_type=DOCKER_MANIFEST if docker else OCI_MANIFEST)


async def push_index(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str,
                     entries: list[tuple[str, int, str, str]]) -> str:
    """An OCI image index of (manifest digest, size, os, architecture) entries."""
    return await put_manifest(session, registry, repository, tag, {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                       "platform": {"os": os, "architecture": arch}} for digest, size, os, arch in entries]})


async def manifest_size(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, digest: str) -> int:
    auth = registry.authorization
    async with session.get(f"{registry.url}/v2/{repository}/manifests/{digest}",
                           headers={"Accept": OCI_MANIFEST, **({"Authorization": auth} if auth else {})}) as got:
        return len(await got.read())


def cache(tmp: Path, objects: StaticObjects | None = None, **options: Any) -> ModuleCache:
    max_bytes = options.pop("max_bytes", 8 << 20)
    return ModuleCache(tmp / "modules", objects or StaticObjects(), max_bytes, **options)


async def pull(modules: ModuleCache, image: str, policy: str = "IfNotPresent", secrets: tuple[str, ...] = (),
               namespace: str = "default") -> Module:
    return await modules.fetch(ModuleRef("oci", image), namespace, pull_policy=policy, pull_secrets=secrets)

