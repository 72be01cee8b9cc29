"""Pull secrets are read and matched as the kubelet's keyring does; auth challenges are parsed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wasmlet.nodeagent.oci.auth import Credentials, credentials_for, parse_challenge, secret_credentials
from wasmlet.nodeagent.oci.client import RegistryState
from wasmlet.nodeagent.oci.reference import parse_reference


def secret(auths: dict[str, Any], kind: str = "kubernetes.io/dockerconfigjson") -> dict[str, Any]:
    key = ".dockerconfigjson" if kind.endswith("json") else ".dockercfg"
    body = {"auths": auths} if kind.endswith("json") else auths
    return {"type": kind, "data": {key: base64.b64encode(json.dumps(body).encode()).decode()}}


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_dockerconfigjson_and_dockercfg_secrets_give_credentials() -> None:
    found = secret_credentials(secret({"reg.example.com": {"auth": basic("alice", "pw:with:colons")},
                                       "other.example.com": {"username": "bob", "password": "pw"}}))
    assert found == {"reg.example.com": Credentials("alice", "pw:with:colons"),
                     "other.example.com": Credentials("bob", "pw")}
    legacy = secret_credentials(secret({"https://reg.example.com": {"auth": basic("carol", "x")}},
                                       "kubernetes.io/dockercfg"))
    assert legacy == {"https://reg.example.com": Credentials("carol", "x")}
    raw = {"type": "kubernetes.io/dockerconfigjson",
           "stringData": {".dockerconfigjson": json.dumps({"auths": {"r.io": {"auth": basic("d", "e")}}})}}
    assert secret_credentials(raw) == {"r.io": Credentials("d", "e")}  # static manifests may use stringData


@pytest.mark.parametrize(("obj", "problem"), [
    ({"type": "Opaque", "data": {}}, "is not kubernetes.io/dockerconfigjson"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {}}, "has no .dockerconfigjson"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "***"}}, "not base64"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": base64.b64encode(b"{").decode()}},
     "not JSON"),
])
def test_an_unusable_pull_secret_says_why(obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        secret_credentials(obj)


@pytest.mark.parametrize(("image", "expected"), [
    ("reg.example.com/app", "exact"),
    ("reg.example.com/team/app:v1", "team"),  # the key with a path is more specific
    ("reg.example.com:5000/app", "port"),
    ("eu.mirror.example.com/app", "glob"),
    ("busybox", "hub"),
    ("docker.io/someone/app", "hub"),
    ("elsewhere.example.org/app", None),
    ("a.b.mirror.example.com/app", None),  # a glob matches one DNS label, not several
])
def test_keys_match_images_by_host_glob_port_and_path(image: str, expected: str | None) -> None:
    keyring = {"reg.example.com": Credentials("exact", ""), "https://reg.example.com/team/": Credentials("team", ""),
               "reg.example.com:5000": Credentials("port", ""), "*.mirror.example.com": Credentials("glob", ""),
               "https://index.docker.io/v1/": Credentials("hub", "")}
    found = credentials_for(keyring, parse_reference(image))
    assert (found.username if found else None) == expected


def test_credentials_never_show_their_password() -> None:
    assert "s3cret" not in repr(Credentials("alice", "s3cret"))
    assert Credentials("alice", "s3cret").basic() == "Basic " + basic("alice", "s3cret")


def test_auth_challenges_are_parsed_with_quoted_and_bare_parameters() -> None:
    bearer = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                             'scope="repository:team/app:pull,push"')
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                             "scope": "repository:team/app:pull,push"}
    assert parse_challenge("Basic realm=registry").params == {"realm": "registry"}


@pytest.mark.parametrize(("registry", "insecure"), [
    ("127.0.0.1:5000", True), ("127.8.9.10", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("mirror.internal:5000", True),  # configured
    ("mirror.internal:5001", False), ("10.0.0.5:5000", False), ("ghcr.io", False), ("docker.io", False),
])
def test_plain_http_is_allowed_for_loopback_and_configured_registries_only(registry: str, insecure: bool) -> None:
    assert RegistryState(insecure=("mirror.internal:5000",)).is_insecure(registry) is insecure
