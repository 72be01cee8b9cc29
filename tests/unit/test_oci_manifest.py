"""Manifests and indexes: which entry and which layer hold the module, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    LEGACY_WASM_LAYER,
    OCI_INDEX,
    OCI_MANIFEST,
    WASM_CONFIG,
    WASM_LAYER,
    entrypoint,
    find_module,
    parse_document,
    pick_platform,
)

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
TAR_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"


def desc(media_type: str, digest: str = D1, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 10, **extra}


def manifest(config: str, *layers: str, media_type: str = OCI_MANIFEST) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": desc(config, D3),
                       "layers": [desc(m, d) for m, d in zip(layers, (D1, D2, D3), strict=False)]}).encode()


def index(*platforms: tuple[str, str] | None, media_type: str = OCI_INDEX) -> bytes:
    entries = [desc(OCI_MANIFEST, d, **({"platform": {"os": p[0], "architecture": p[1]}} if p else {}))
               for p, d in zip(platforms, (D1, D2, D3), strict=False)]
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()


@pytest.mark.parametrize(("body", "packed", "config"), [
    (manifest(WASM_CONFIG, WASM_LAYER), False, True),  # the config says wasip1 or wasip2: checked after the pull
    (manifest("application/vnd.wasm.config.v1+json", LEGACY_WASM_LAYER), False, False),
    (manifest(IMAGE_CONFIG, TAR_GZ), True, True),
    (manifest("application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip",
              media_type=DOCKER_MANIFEST), True, True),
], ids=["cncf", "legacy", "oci-image", "docker-image"])
def test_each_format_names_the_layer_that_holds_the_module(body: bytes, packed: bool, config: bool) -> None:
    artifact = find_module(parse_document(body, ""))
    assert (artifact.layer.digest, artifact.packed) == (D1, packed)
    assert (artifact.config is not None) == config


@pytest.mark.parametrize(("body", "problem"), [
    (manifest(WASM_CONFIG, WASM_LAYER, WASM_LAYER), "2 wasm layers"),
    (manifest(IMAGE_CONFIG, TAR_GZ, TAR_GZ), "an image with 2 layers"),
    (manifest("application/vnd.cncf.helm.config.v1+json", "application/x-tar"), "config application/vnd.cncf.helm"),
    (json.dumps({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
                 "fsLayers": []}).encode(), "unsupported manifest type"),
])
def test_what_holds_no_single_module_is_not_a_wasm_artifact(body: bytes, problem: str) -> None:
    with pytest.raises(PullError, match=f"not a wasm artifact: .*{problem}"):
        find_module(parse_document(body, ""))


@pytest.mark.parametrize(("platforms", "chosen"), [
    ((("linux", "amd64"), ("wasip1", "wasm")), D2),
    ((("wasi", "wasm"), ("wasip1", "wasm")), D2),  # the wasm OCI artifact's spelling first
    ((("linux", "arm64"), ("wasi", "wasm")), D2),  # then docker buildx's
    ((None,), D1),  # a lone entry without a platform
])
def test_an_index_resolves_to_its_wasm_platform(platforms: tuple[tuple[str, str] | None, ...], chosen: str) -> None:
    for media_type in (OCI_INDEX, DOCKER_LIST):
        assert pick_platform(parse_document(index(*platforms, media_type=media_type), "")).digest == chosen


def test_an_index_without_a_wasm_entry_lists_what_it_has() -> None:
    with pytest.raises(PullError, match=r"no wasip1/wasm platform entry \(it has: linux/amd64, linux/arm64\)"):
        pick_platform(parse_document(index(("linux", "amd64"), ("linux", "arm64")), ""))


def test_the_content_type_header_classifies_a_body_without_a_media_type() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_document(body, OCI_INDEX + "; charset=utf-8").is_index


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"mediaType": OCI_MANIFEST, "config": desc(WASM_CONFIG, "md5:x"), "layers": []}).encode(),
     "is not a sha256 digest"),
    (json.dumps({"mediaType": OCI_MANIFEST, "config": {**desc(WASM_CONFIG), "size": -1}, "layers": []}).encode(),
     "is not a byte count"),
])
def test_malformed_manifests_are_invalid(body: bytes, problem: str) -> None:
    with pytest.raises(PullError, match=f"invalid manifest: .*{problem}"):
        parse_document(body, "")


@pytest.mark.parametrize(("config", "expected"), [
    ({"config": {"Entrypoint": ["/app.wasm"], "Cmd": ["--flag"]}}, "app.wasm"),
    ({"config": {"Cmd": ["./bin/main.wasm"]}}, "bin/main.wasm"),
    ({"config": {"Entrypoint": ["/bin/sh", "-c"]}}, None),
    ({"architecture": "wasm"}, None),
])
def test_the_image_config_entrypoint_names_a_module(config: dict[str, Any], expected: str | None) -> None:
    assert entrypoint(json.dumps(config).encode()) == expected
