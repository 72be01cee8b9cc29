"""The module cache pulls from a real OCI registry (distribution): every artifact format, by tag
and by digest, through an image index, with each imagePullPolicy."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.podspec import ModuleRef

from tests.fixtures.registry import OciRegistry, push_wasm_artifact, sha256_digest
from tests.integration.agent_helpers import module_bytes
from tests.integration.oci_helpers import cache, manifest_size, pull, push_index, push_legacy, push_tar_image, tar_layer

HELLO = module_bytes("hello")
EXIT = module_bytes("exit")


def module_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_a_cncf_wasm_artifact_pulls_by_tag_and_by_digest(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("formats/cncf")
    async with aiohttp.ClientSession() as session:
        pushed = await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
    by_tag = await pull(cache(tmp_path / "a"), f"{oci_registry.host}/{repo}:v1")
    by_digest = await pull(cache(tmp_path / "b"), f"{oci_registry.host}/{repo}@{pushed}")
    for module in (by_tag, by_digest):
        assert module.path.read_bytes() == HELLO
        assert module.digest == module_digest(HELLO)
        assert module.image_id == f"{oci_registry.host}/{repo}@{pushed}"


async def test_the_legacy_wasm_to_oci_layer_pulls(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("formats/legacy")
    async with aiohttp.ClientSession() as session:
        pushed = await push_legacy(session, oci_registry, repo, "v1", EXIT)
    module = await pull(cache(tmp_path), f"{oci_registry.host}/{repo}@{pushed}")
    assert module.path.read_bytes() == EXIT


@pytest.mark.parametrize("docker", [False, True], ids=["oci-image", "docker-schema2"])
async def test_a_single_layer_image_holding_one_wasm_file_pulls(oci_registry: OciRegistry, tmp_path: Path,
                                                                docker: bool) -> None:
    repo = oci_registry.repository("formats/image")
    layer = tar_layer({"app/": b"", "app/hello.wasm": HELLO, "README": b"not a module"})
    async with aiohttp.ClientSession() as session:
        pushed = await push_tar_image(session, oci_registry, repo, "v1", layer, docker=docker)
    module = await pull(cache(tmp_path / "tag"), f"{oci_registry.host}/{repo}:v1")
    assert module.path.read_bytes() == HELLO
    assert module.digest == module_digest(HELLO)  # the module's own digest, not the layer's
    assert module.image_id == f"{oci_registry.host}/{repo}@{pushed}"
    by_digest = await pull(cache(tmp_path / "digest"), f"{oci_registry.host}/{repo}@{pushed}")
    assert by_digest.digest == module.digest


async def test_the_image_entrypoint_picks_the_module_among_several(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("formats/entrypoint")
    layer = tar_layer({"hello.wasm": HELLO, "bin/exit.wasm": EXIT}, compress=False)
    async with aiohttp.ClientSession() as session:
        await push_tar_image(session, oci_registry, repo, "v1", layer, entrypoint=["/bin/exit.wasm"])
    module = await pull(cache(tmp_path), f"{oci_registry.host}/{repo}:v1")
    assert module.path.read_bytes() == EXIT


async def test_an_index_resolves_to_its_wasip1_wasm_entry(oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("formats/index")
    async with aiohttp.ClientSession() as session:
        linux = await push_tar_image(session, oci_registry, repo, "linux", tar_layer({"bin/sh": b"#!"}))
        wasm = await push_wasm_artifact(session, oci_registry, repo, "wasm", HELLO)
        index = await push_index(session, oci_registry, repo, "multi", [
            (linux, await manifest_size(session, oci_registry, repo, linux), "linux", "amd64"),
            (wasm, await manifest_size(session, oci_registry, repo, wasm), "wasip1", "wasm")])
    module = await pull(cache(tmp_path), f"{oci_registry.host}/{repo}:multi")
    assert module.path.read_bytes() == HELLO
    assert module.image_id == f"{oci_registry.host}/{repo}@{index}"  # the index digest, as a kubelet reports it


async def test_if_not_present_keeps_what_a_tag_resolved_to_until_the_module_is_gone(
        oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("policy/ifnotpresent")
    image = f"{oci_registry.host}/{repo}:v1"
    modules = cache(tmp_path)
    async with aiohttp.ClientSession() as session:
        first = await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
        assert (await pull(modules, image)).image_id.endswith(first)
        await push_wasm_artifact(session, oci_registry, repo, "v1", EXIT)  # the tag moves
    assert (await pull(modules, image)).path.read_bytes() == HELLO
    assert (await pull(cache(tmp_path), image)).path.read_bytes() == HELLO  # the index survives a restart
    assert (await pull(modules, image, "Always")).path.read_bytes() == EXIT


async def test_always_resolves_the_tag_but_reuses_a_module_it_already_has(
        oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("policy/always")
    modules = cache(tmp_path)
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry, repo, "latest", HELLO)
        await pull(modules, f"{oci_registry.host}/{repo}", "Always")
        # Without its blob the registry cannot serve the module again: a reuse is the only way to pass.
        async with session.delete(f"{oci_registry.url}/v2/{repo}/blobs/{sha256_digest(HELLO)}") as deleted:
            assert deleted.status == 202
    module = await pull(modules, f"{oci_registry.host}/{repo}", "Always")
    assert module.path.read_bytes() == HELLO
    with pytest.raises(PullError, match="not found: blob"):  # the premise: a new download would fail
        await pull(cache(tmp_path / "fresh"), f"{oci_registry.host}/{repo}", "Always")


async def test_never_uses_only_the_cache_and_says_err_image_never_pull(oci_registry: OciRegistry,
                                                                       tmp_path: Path) -> None:
    repo = oci_registry.repository("policy/never")
    image = f"{oci_registry.host}/{repo}:v1"
    modules = cache(tmp_path)
    with pytest.raises(PullError) as missing:
        await pull(modules, image, "Never")
    assert missing.value.reason == "ErrImageNeverPull"
    assert f'Container image "{image}" is not present with pull policy of Never' in missing.value.message
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
    await pull(modules, image)
    assert (await pull(modules, image, "Never")).path.read_bytes() == HELLO


async def test_concurrent_pulls_of_one_module_share_the_store_and_hold_it(oci_registry: OciRegistry,
                                                                          tmp_path: Path) -> None:
    repo = oci_registry.repository("cache/concurrent")
    async with aiohttp.ClientSession() as session:
        digest = await push_wasm_artifact(session, oci_registry, repo, "v1", HELLO)
    modules = cache(tmp_path, cache_max_bytes=1)  # everything not held must go
    refs = [f"{oci_registry.host}/{repo}:v1", f"{oci_registry.host}/{repo}@{digest}"] * 4
    results = await asyncio.gather(*(modules.fetch(ModuleRef("oci", ref), "default", holder=f"pod-{i}")
                                     for i, ref in enumerate(refs)))
    assert {m.digest for m in results} == {module_digest(HELLO)}
    blobs = tmp_path / "modules" / "sha256"
    assert [p.name for p in blobs.iterdir()] == [module_digest(HELLO)[7:]]
    for i in range(len(refs) - 1):
        modules.release(f"pod-{i}")
    assert results[0].path.exists()  # the last Pod still holds it
    modules.release(f"pod-{len(refs) - 1}")
    assert not results[0].path.exists()
