"""Every pull failure says what failed, and nothing hostile reaches the cache (or beyond it).

The real registry serves whatever bytes were pushed, so hostile layers go through it. It never
serves content that does not match its digest, so the digest-mismatch cases use a tiny aiohttp
registry (`lying_registry`) that does exactly that.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import socket
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.manifest import OCI_MANIFEST, WASM_CONFIG, WASM_LAYER

from tests.fixtures.registry import OciRegistry, push_wasm_artifact, sha256_digest
from tests.integration.agent_helpers import module_bytes
from tests.integration.oci_helpers import cache, pull, push_image, push_index, push_tar_image, tar_layer

HELLO = module_bytes("hello")


async def push_layer_image(registry: OciRegistry, name: str, layer: bytes) -> str:
    repo = registry.repository(name)
    async with aiohttp.ClientSession() as session:
        await push_tar_image(session, registry, repo, "v1", layer)
    return f"{registry.host}/{repo}:v1"


def assert_nothing_written(tmp_path: Path) -> None:
    """Neither a module nor a partial file in the store, and nothing next to it."""
    assert list((tmp_path / "modules" / "sha256").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modules"]


async def test_an_unknown_tag_or_repository_is_not_found(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("errors/notfound")
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
    for image in (f"{oci_registry.host}/{repo}:v2", f"{oci_registry.host}/errors/never-pushed:v1"):
        with pytest.raises(PullError, match=r"not found: manifest 'v\d' \(HTTP 404, (MANIFEST|NAME)_UNKNOWN"):
            await pull(cache(tmp_path), image)


async def test_an_unreachable_registry_says_so(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(PullError, match=f"registry unreachable: 127.0.0.1:{port}"):
        await pull(cache(tmp_path), f"127.0.0.1:{port}/errors/unreachable:v1")


async def test_other_artifacts_are_not_wasm_artifacts(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("errors/notwasm")
    async with aiohttp.ClientSession() as session:
        await push_image(session, oci_registry, repo, "helm", config=b"{}",
                         config_type="application/vnd.cncf.helm.config.v1+json",
                         layers=[(b"chart", "application/vnd.cncf.helm.chart.content.v1.tar+gzip")])
        await push_image(session, oci_registry, repo, "text", config=b"{}", config_type=WASM_CONFIG,
                         layers=[(b"#!/bin/sh\necho hi\n", WASM_LAYER)])
        await push_tar_image(session, oci_registry, repo, "nowasm", tar_layer({"bin/sh": b"\x7fELF"}))
        linux = await push_tar_image(session, oci_registry, repo, "linux", tar_layer({"bin/sh": b"\x7fELF"}))
        await push_index(session, oci_registry, repo, "index", [(linux, 500, "linux", "arm64")])
    expected = {"helm": "config application/vnd.cncf.helm.config.v1",
                "text": "is not a wasm module", "nowasm": "holds no .wasm file",
                "index": "no wasip1/wasm platform entry (it has: linux/arm64)"}
    for tag, detail in expected.items():
        with pytest.raises(PullError, match="not a wasm artifact") as error:
            await pull(cache(tmp_path), f"{oci_registry.host}/{repo}:{tag}")
        assert detail in error.value.message
    assert list((tmp_path / "modules" / "sha256").iterdir()) == []


async def test_a_module_over_the_size_limit_is_too_large_before_any_download(
        oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("errors/large")
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
    with pytest.raises(PullError, match=f"too large: the module layer has {len(HELLO)} bytes, the limit is 1024"):
        await pull(cache(tmp_path, max_bytes=1024), f"{oci_registry.host}/{repo}:v1")


@pytest.mark.parametrize(("files", "links", "detail"), [
    ({"../escape.wasm": HELLO}, None, "points outside the layer ('..')"),
    ({"app/../../escape.wasm": HELLO}, None, "points outside the layer ('..')"),
    ({"/etc/escape.wasm": HELLO}, None, "has an absolute path"),
    ({"app.wasm": HELLO}, {"evil.wasm": "/etc/passwd"}, "is a link"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink"])
async def test_a_hostile_image_layer_is_rejected_and_writes_nothing(
        oci_registry: OciRegistry, tmp_path: Path, files: dict[str, bytes], links: dict[str, str] | None,
        detail: str) -> None:
    image = await push_layer_image(oci_registry, "errors/hostile", tar_layer(files, links=links))
    with pytest.raises(PullError, match="layer rejected") as error:
        await pull(cache(tmp_path), image)
    assert detail in error.value.message
    assert_nothing_written(tmp_path)


async def test_a_hardlink_in_a_layer_is_rejected(oci_registry: OciRegistry, tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("app.wasm")
        info.size = len(HELLO)
        archive.addfile(info, io.BytesIO(HELLO))
        link = tarfile.TarInfo("other.wasm")
        link.type, link.linkname = tarfile.LNKTYPE, "app.wasm"
        archive.addfile(link)
    image = await push_layer_image(oci_registry, "errors/hardlink", raw.getvalue())
    with pytest.raises(PullError, match="layer rejected: entry 'other.wasm' is a link"):
        await pull(cache(tmp_path), image)
    assert_nothing_written(tmp_path)


async def test_a_gzip_bomb_is_stopped_by_its_ratio(oci_registry: OciRegistry, tmp_path: Path) -> None:
    # 64 MiB of zeros in one file: ~64 KiB of gzip, far past any real module's ratio.
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w") as archive:
        info = tarfile.TarInfo("app.wasm")
        info.size = 64 << 20
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    image = await push_layer_image(oci_registry, "errors/bomb", gzip.compress(bomb.getvalue(), 9, mtime=0))
    with pytest.raises(PullError, match="a gzip bomb"):
        await pull(cache(tmp_path, max_bytes=256 << 20), image)
    assert_nothing_written(tmp_path)
    with pytest.raises(PullError, match="is too large"):  # and by its size, under a smaller limit
        await pull(cache(tmp_path, max_bytes=8 << 20), image)


@pytest.fixture
async def lying_registry() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A registry that serves `content[path]` as it is, whatever digest the path names."""
    content: dict[str, bytes] = {}

    async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = content.get(request.path)
        if body is None:
            return aiohttp.web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "unknown"}]}, status=404)
        return aiohttp.web.Response(body=body, content_type=OCI_MANIFEST if "/manifests/" in request.path
                                    else "application/octet-stream")

    app = aiohttp.web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}", content
    finally:
        await runner.cleanup()


def _manifest(layer: bytes, size: int | None = None) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": WASM_CONFIG, "digest": sha256_digest(b"{}"), "size": 2},
                       "layers": [{"mediaType": WASM_LAYER, "digest": sha256_digest(layer),
                                   "size": len(layer) if size is None else size}]}).encode()


async def test_a_blob_that_does_not_match_its_digest_is_rejected(
        lying_registry: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    host, content = lying_registry
    content["/v2/lies/manifests/v1"] = _manifest(HELLO)
    content[f"/v2/lies/blobs/{sha256_digest(HELLO)}"] = HELLO[:-1] + b"\x01"  # same size, other bytes
    with pytest.raises(PullError, match=f"digest mismatch: expected {sha256_digest(HELLO)}"):
        await pull(cache(tmp_path), f"{host}/lies:v1")
    content[f"/v2/lies/blobs/{sha256_digest(HELLO)}"] = HELLO + b"\0"  # longer than declared
    with pytest.raises(PullError, match="digest mismatch: blob .* is longer than"):
        await pull(cache(tmp_path), f"{host}/lies:v1")
    assert_nothing_written(tmp_path)


async def test_a_manifest_that_does_not_match_the_pinned_digest_is_rejected(
        lying_registry: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    host, content = lying_registry
    pinned = "sha256:" + hashlib.sha256(b"another manifest").hexdigest()
    content[f"/v2/lies/manifests/{pinned}"] = _manifest(HELLO)
    with pytest.raises(PullError, match=f"digest mismatch: manifest '{pinned}' should be {pinned}"):
        await pull(cache(tmp_path), f"{host}/lies@{pinned}")


async def test_a_hostile_registry_serving_a_layer_digest_cannot_fail_an_honest_pull_of_it(
        oci_registry: OciRegistry, tmp_path: Path) -> None:
    """Two Pods pull the same layer digest at once, one from a registry that stalls and then lies:
    the honest pull does not wait for, or share, the hostile download."""
    asked, release = asyncio.Event(), asyncio.Event()

    async def stall_then_lie(request: aiohttp.web.Request) -> aiohttp.web.Response:
        if "/manifests/" in request.path:
            return aiohttp.web.Response(body=_manifest(HELLO), content_type=OCI_MANIFEST)
        asked.set()
        await release.wait()
        return aiohttp.web.Response(body=HELLO[:-1] + b"\x01", content_type="application/octet-stream")

    app = aiohttp.web.Application()
    app.router.add_get("/{tail:.*}", stall_then_lie)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        repo = oci_registry.repository("dedup/honest")
        async with aiohttp.ClientSession() as session:
            await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
        modules = cache(tmp_path)
        hostile = asyncio.create_task(pull(modules, f"127.0.0.1:{runner.addresses[0][1]}/dedup/hostile:v1"))
        await asyncio.wait_for(asked.wait(), 20)
        async with asyncio.timeout(20):
            honest = await pull(modules, f"{oci_registry.host}/{repo}:v1")
        assert honest.path.read_bytes() == HELLO
        release.set()
        with pytest.raises(PullError, match="digest mismatch"):
            await hostile
    finally:
        release.set()
        await runner.cleanup()
