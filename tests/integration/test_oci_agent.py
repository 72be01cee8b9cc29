"""OCI modules through the whole agent: published with `wasmlet push`, pulled from the real
registry (with an imagePullSecret where it needs one), run, and reported as a kubelet would."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wasmlet.cli.main import main as wasmlet
from wasmlet.kube.resources import PODS, SECRETS

from tests.fixtures.registry import OciRegistry, push_wasm_artifact
from tests.integration.agent_helpers import MODULES, api_client, container_state, running_agent, wait_for, wasm_pod
from tests.integration.oci_helpers import cache, pull

NODE = "wasm-node-1"


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


def waiting_reason(pod: dict[str, Any]) -> str:
    return str(container_state(pod).get("waiting", {}).get("reason", ""))


async def test_wasmlet_push_publishes_a_cncf_artifact_the_agent_pulls_back(
        oci_registry: OciRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"{oci_registry.host}/{oci_registry.repository('push/hello')}:v1"
    assert await asyncio.to_thread(wasmlet, ["push", str(MODULES / "hello.wasm"), ref]) == 0
    pinned = capsys.readouterr().out.strip()
    assert pinned.startswith(ref.rsplit(":", 1)[0] + "@sha256:")
    module = await pull(cache(tmp_path), ref)
    assert module.path.read_bytes() == (MODULES / "hello.wasm").read_bytes()
    assert module.image_id == pinned
    async with aiohttp.ClientSession() as session:
        repo, digest = pinned.split("/", 1)[1].split("@")
        async with session.get(f"{oci_registry.url}/v2/{repo}/manifests/{digest}",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}) as response:
            manifest = await response.json(content_type=None)
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/wasm"]


async def test_wasmlet_push_refuses_what_is_not_a_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "script.sh").write_text("#!/bin/sh\n")
    assert await asyncio.to_thread(wasmlet, ["push", str(tmp_path / "script.sh"), "127.0.0.1:1/x:v1"]) == 2
    assert "not a wasm binary: not a wasm module or component" in capsys.readouterr().err


async def test_a_pod_with_an_oci_image_runs_and_reports_the_resolved_digest_as_image_id(
        kube_api: Any, oci_registry: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry.repository("agent/hello")
    async with aiohttp.ClientSession() as session:
        digest = await push_wasm_artifact(session, oci_registry, repo, "v1", (MODULES / "hello.wasm").read_bytes())
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await api.create(PODS, wasm_pod("hello-oci", NODE, f"{oci_registry.host}/{repo}:v1"))
        pod = await wait_for(api, PODS, "hello-oci", "default", lambda p: phase(p) == "Succeeded")
    status = pod["status"]["containerStatuses"][0]
    assert status["imageID"] == f"{oci_registry.host}/{repo}@{digest}"
    assert status["image"] == f"{oci_registry.host}/{repo}:v1"


async def test_a_private_image_is_pulled_with_the_pods_image_pull_secret(
        kube_api: Any, oci_registry_auth: OciRegistry, tmp_path: Path) -> None:
    repo = oci_registry_auth.repository("agent/private")
    async with aiohttp.ClientSession() as session:
        await push_wasm_artifact(session, oci_registry_auth, repo, "v1", (MODULES / "hello.wasm").read_bytes())
    assert oci_registry_auth.authorization is not None
    config = {"auths": {oci_registry_auth.host: {"auth": oci_registry_auth.authorization.split(" ", 1)[1]}}}
    image = f"{oci_registry_auth.host}/{repo}:v1"
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await api.create(SECRETS, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}})
        # The Pod without the secret goes first: once the image is on the node, IfNotPresent runs
        # it from the cache without asking the registry, as the kubelet does.
        await api.create(PODS, wasm_pod("no-secret", NODE, image))
        pod = await wait_for(api, PODS, "no-secret", "default", lambda p: waiting_reason(p) == "ImagePullBackOff")
        await api.create(PODS, wasm_pod("private", NODE, image, imagePullSecrets=[{"name": "regcred"}]))
        await wait_for(api, PODS, "private", "default", lambda p: phase(p) == "Succeeded")
    assert "unauthorized" in container_state(pod)["waiting"]["message"]


async def test_pull_failures_are_err_image_pull_then_image_pull_back_off_saying_what_failed(
        kube_api: Any, oci_registry: OciRegistry, tmp_path: Path) -> None:
    missing = f"{oci_registry.host}/agent/missing:v1"
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await api.create(PODS, wasm_pod("missing", NODE, missing))
        await api.create(PODS, wasm_pod("never", NODE, missing, container={"imagePullPolicy": "Never"}))
        pod = await wait_for(api, PODS, "missing", "default", lambda p: waiting_reason(p) == "ImagePullBackOff")
        assert f"{missing}: not found: manifest 'v1'" in container_state(pod)["waiting"]["message"]
        assert phase(pod) == "Pending"
        never = await wait_for(api, PODS, "never", "default", lambda p: waiting_reason(p) == "ErrImageNeverPull")
        assert container_state(never)["waiting"]["message"] == \
            f'Container image "{missing}" is not present with pull policy of Never'
