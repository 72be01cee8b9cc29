"""Image references are read as the kubelet reads them (distribution's grammar, Docker Hub names)."""

from __future__ import annotations

import pytest

from wasmlet.nodeagent.errors import UnsupportedPod
from wasmlet.nodeagent.oci.reference import InvalidReference, Reference, default_pull_policy, parse_reference
from wasmlet.nodeagent.podspec import parse_module_ref, parse_pod

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("busybox", Reference("docker.io", "library/busybox", "latest")),
    ("busybox:1.36", Reference("docker.io", "library/busybox", "1.36")),
    ("user/app", Reference("docker.io", "user/app", "latest")),
    ("docker.io/busybox", Reference("docker.io", "library/busybox", "latest")),
    ("index.docker.io/library/busybox:1", Reference("docker.io", "library/busybox", "1")),
    ("ghcr.io/org/team/app:v1.2.3", Reference("ghcr.io", "org/team/app", "v1.2.3")),
    ("localhost/app", Reference("localhost", "app", "latest")),
    ("localhost:5000/app:dev", Reference("localhost:5000", "app", "dev")),
    ("127.0.0.1:5000/a/b", Reference("127.0.0.1:5000", "a/b", "latest")),
    ("[::1]:5000/app:v1", Reference("[::1]:5000", "app", "v1")),
    (f"reg.example.com/app@{DIGEST}", Reference("reg.example.com", "app", None, DIGEST)),
    (f"reg.example.com:443/app:v1@{DIGEST}", Reference("reg.example.com:443", "app", "v1", DIGEST)),
    ("reg.example.com/my_app-x__y.z/app", Reference("reg.example.com", "my_app-x__y.z/app", "latest")),
])
def test_references_parse_and_normalise_like_the_kubelet(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_a_reference_prints_in_full_and_knows_where_its_api_is() -> None:
    ref = parse_reference("busybox")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.selector == "latest"
    assert str(ref.at(DIGEST)) == f"docker.io/library/busybox@{DIGEST}"
    pinned = parse_reference(f"127.0.0.1:5000/app:v1@{DIGEST}")
    assert (pinned.selector, pinned.pinned, pinned.api_host) == (DIGEST, True, "127.0.0.1:5000")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "invalid reference format"),
    ("Busybox", "must be lowercase"),
    ("reg.example.com/App:v1", "must be lowercase"),
    ("app:", "tag ''"),
    ("app:-bad", "tag '-bad'"),
    ("app:" + "x" * 129, "tag"),
    ("reg.example.com//app", "repository name"),
    ("reg.example.com/app-", "repository name"),
    ("bad_host:5000:x/app", "invalid reference format"),
    ("app@sha256:abc", "only sha256 digests"),
    ("app@sha512:" + "a" * 128, "only sha256 digests"),
    ("app@notadigest", "digest"),
    ("a" * 64, "64-byte hexadecimal"),
    ("reg.example.com/" + "a" * 250, "more than 255"),
    ("with space/app", "invalid reference format"),
])
def test_invalid_references_are_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidReference, match=problem.replace("(", r"\(")):
        parse_reference(text)


@pytest.mark.parametrize(("image", "policy"), [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("reg:5000/app", "Always"),
    ("busybox:1.36", "IfNotPresent"), (f"busybox@{DIGEST}", "IfNotPresent"),
    (f"busybox:latest@{DIGEST}", "Always"),  # the kubelet looks only at the tag
])
def test_the_default_pull_policy_is_always_only_for_latest(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_a_pod_image_that_is_not_a_reference_is_an_invalid_image_name() -> None:
    with pytest.raises(UnsupportedPod) as error:
        parse_module_ref("Registry.Example.com/APP:v1:v2")
    assert error.value.reason == "InvalidImageName"
    assert "couldn't parse image name" in error.value.message


def test_a_pod_plan_carries_its_image_pull_secrets_and_each_containers_pull_policy() -> None:
    plan = parse_pod({"metadata": {"name": "p", "uid": "u"}, "spec": {
        "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}, {}],
        "containers": [{"name": "a", "image": "reg.example.com/app"},
                       {"name": "b", "image": "reg.example.com/app:v1"},
                       {"name": "c", "image": "reg.example.com/app:v1", "imagePullPolicy": "Never"}]}})
    assert plan.image_pull_secrets == ("regcred", "other")
    assert [c.image_pull_policy for c in plan.containers] == ["Always", "IfNotPresent", "Never"]
