"""Registry auth against real distribution servers: basic auth with credentials from an
imagePullSecret, and the bearer-token challenge flow against a token service of our own."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wasmlet.cli.push import push_module
from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.oci.auth import Credentials
from wasmlet.nodeagent.oci.client import RegistryState
from wasmlet.nodeagent.oci.reference import parse_reference

from tests.fixtures.registry import TEST_PASSWORD, TEST_USERNAME, OciRegistry, push_wasm_artifact, start_registry
from tests.integration.agent_helpers import module_bytes
from tests.integration.oci_helpers import cache, pull
from tests.integration.token_service import TokenService, token_service

HELLO = module_bytes("hello")
LOGIN = Credentials(TEST_USERNAME, TEST_PASSWORD)


def pull_secret(name: str, registry: str, password: str = TEST_PASSWORD, kind: str = "dockerconfigjson") -> dict[str, Any]:
    auth = base64.b64encode(f"{TEST_USERNAME}:{password}".encode()).decode()
    config = json.dumps({"auths": {registry: {"auth": auth}}}).encode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": f"kubernetes.io/{kind}", "data": {f".{kind}": base64.b64encode(config).decode()}}


def objects(*secrets: dict[str, Any]) -> StaticObjects:
    store = StaticObjects()
    store.replace(list(secrets))
    return store


async def test_basic_auth_uses_the_pods_image_pull_secret(oci_registry_auth: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry_auth.repository("auth/basic")
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry_auth, repo, "v1", HELLO)
    image = f"{oci_registry_auth.host}/{repo}:v1"
    secrets = objects(pull_secret("other", "registry.example.com", "nope"),
                      pull_secret("regcred", f"http://{oci_registry_auth.host}/"))
    module = await pull(cache(tmp_path, secrets), image, secrets=("missing", "other", "regcred"))
    assert module.path.read_bytes() == HELLO


@pytest.mark.parametrize("secrets", [(), ("wrong",), ("not-a-pull-secret",)],
                         ids=["no-secret", "wrong-password", "wrong-secret-type"])
async def test_basic_auth_without_working_credentials_is_unauthorized(
        oci_registry_auth: OciRegistry, tmp_path: Path, secrets: tuple[str, ...]) -> None:
    store = objects(pull_secret("wrong", oci_registry_auth.host, "wrong-password"),
                    {**pull_secret("not-a-pull-secret", oci_registry_auth.host), "type": "Opaque"})
    with pytest.raises(PullError, match="unauthorized") as error:
        await pull(cache(tmp_path, store), f"{oci_registry_auth.host}/auth/none:v1", secrets=secrets)
    assert error.value.reason == "ErrImagePull"


@pytest.fixture
async def token_registry(tmp_path: Path) -> AsyncIterator[tuple[OciRegistry, TokenService]]:
    async with token_service(tmp_path) as service:
        assert service.auth is not None
        with start_registry(tmp_path / "registry", token=service.auth) as registry:
            yield registry, service


async def test_the_bearer_token_flow_pushes_and_pulls_with_a_token_from_the_realm(
        token_registry: tuple[OciRegistry, TokenService], tmp_path: Path) -> None:
    registry, service = token_registry
    ref = parse_reference(f"{registry.host}/auth/bearer:v1")
    digest = await push_module(HELLO, ref, LOGIN, RegistryState())
    # The registry names the actions in either order (a Go map): compare them as sets.
    assert (TEST_USERNAME, {"pull", "push"}) in [(user, set(scope.rsplit(":", 1)[1].split(",")))
                                                 for user, scope in service.requests]
    modules = cache(tmp_path, objects(pull_secret("regcred", registry.host)))
    module = await pull(modules, str(ref), secrets=("regcred",))
    assert module.path.read_bytes() == HELLO
    assert module.image_id == f"{registry.host}/auth/bearer@{digest}"
    assert service.requests[-1] == (TEST_USERNAME, "repository:auth/bearer:pull")
    asked = len(service.requests)
    await pull(modules, str(ref), "Always", secrets=("regcred",))
    assert len(service.requests) == asked  # the token is reused until it expires


async def test_the_bearer_token_flow_without_credentials_is_unauthorized(
        token_registry: tuple[OciRegistry, TokenService], tmp_path: Path) -> None:
    registry, service = token_registry
    with pytest.raises(PullError, match="unauthorized: the token service .* refused an anonymous token"):
        await pull(cache(tmp_path), f"{registry.host}/auth/bearer:v1")
    assert service.requests == [(None, "repository:auth/bearer:pull")]
