"""The registry fixture is a real OCI distribution server: a wasm module pushed as a CNCF wasm
artifact resolves by tag and comes back byte for byte, with and without basic auth."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.registry import (
    OCI_MANIFEST_MEDIA_TYPE,
    WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
    OciRegistry,
    push_wasm_artifact,
    sha256_digest,
)

HELLO = Path(__file__).resolve().parents[2] / "examples" / "modules" / "hello.wasm"


def _headers(registry: OciRegistry, **extra: str) -> dict[str, str]:
    auth = registry.authorization
    return {**extra, **({"Authorization": auth} if auth else {})}


async def _pull_back(session: aiohttp.ClientSession, registry: OciRegistry, repository: str, tag: str) -> tuple[str, bytes]:
    """Resolve `tag` with HEAD, fetch the manifest by digest, and fetch its wasm layer by digest."""
    accept = _headers(registry, Accept=OCI_MANIFEST_MEDIA_TYPE)
    async with session.head(f"{registry.url}/v2/{repository}/manifests/{tag}", headers=accept) as head:
        assert head.status == 200
        assert head.headers["Content-Type"] == OCI_MANIFEST_MEDIA_TYPE
        digest = head.headers["Docker-Content-Digest"]
    async with session.get(f"{registry.url}/v2/{repository}/manifests/{digest}", headers=accept) as got:
        assert got.status == 200
        body = await got.read()
    assert sha256_digest(body) == digest
    manifest = json.loads(body)
    assert manifest["config"]["mediaType"] == WASM_CONFIG_MEDIA_TYPE
    [layer] = manifest["layers"]
    assert layer["mediaType"] == WASM_LAYER_MEDIA_TYPE
    async with session.get(f"{registry.url}/v2/{repository}/blobs/{layer['digest']}", headers=_headers(registry)) as blob:
        assert blob.status == 200
        data = await blob.read()
    assert len(data) == layer["size"]
    return digest, data


def test_the_registry_listens_on_loopback_at_a_port_of_its_own(oci_registry: OciRegistry) -> None:
    host, port = oci_registry.host.split(":")
    assert host == "127.0.0.1"
    assert int(port) != 5000  # never the Debian package's own service
    assert oci_registry.url == f"http://{oci_registry.host}"
    assert oci_registry.authorization is None


async def test_a_pushed_wasm_artifact_resolves_by_tag_and_pulls_back_identical(oci_registry: OciRegistry) -> None:
    module = HELLO.read_bytes()
    repository = oci_registry.repository("wasmlet/hello")
    async with aiohttp.ClientSession() as session:
        pushed = await push_wasm_artifact(session, oci_registry, repository, "v1", module)
        digest, data = await _pull_back(session, oci_registry, repository, "v1")
    assert digest == pushed
    assert data == module


async def test_an_unknown_tag_is_a_404_manifest_unknown(oci_registry: OciRegistry) -> None:
    repository = oci_registry.repository("wasmlet/missing")
    async with aiohttp.ClientSession() as session, session.get(f"{oci_registry.url}/v2/{repository}/manifests/nope",
                           headers={"Accept": OCI_MANIFEST_MEDIA_TYPE}) as response:
        assert response.status == 404
        errors = (await response.json())["errors"]
    assert errors[0]["code"] in {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}


async def test_the_auth_registry_refuses_anonymous_requests_with_a_basic_challenge(oci_registry_auth: OciRegistry) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{oci_registry_auth.url}/v2/") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic ")
        wrong = base64.b64encode(f"{oci_registry_auth.username}:wrong".encode()).decode()
        async with session.get(f"{oci_registry_auth.url}/v2/", headers={"Authorization": f"Basic {wrong}"}) as response:
            assert response.status == 401


async def test_the_auth_registry_accepts_the_test_user_for_push_and_pull(oci_registry_auth: OciRegistry) -> None:
    module = HELLO.read_bytes()
    repository = oci_registry_auth.repository("wasmlet/private")
    async with aiohttp.ClientSession() as session:
        pushed = await push_wasm_artifact(session, oci_registry_auth, repository, "latest", module)
        digest, data = await _pull_back(session, oci_registry_auth, repository, "latest")
    assert (digest, data) == (pushed, module)


@pytest.mark.parametrize("name", ["oci_registry", "oci_registry_auth"])
def test_the_registry_stores_blobs_under_the_session_temp_dir(name: str, request: pytest.FixtureRequest) -> None:
    registry: OciRegistry = request.getfixturevalue(name)
    assert (registry.root / "config.yml").exists()
    assert "127.0.0.1" in (registry.root / "config.yml").read_text()
