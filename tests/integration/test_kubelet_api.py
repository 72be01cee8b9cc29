"""The kubelet API: `kubectl logs` through the API server's proxy, and /pods, /healthz, /metrics."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wasmlet.kube.resources import PODS, Resource

from tests.fixtures.pki import TestPki, make_pki
from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_gone,
    wasm_pod,
)

NODE = "wasm-node-1"
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False,
                                 kind="ClusterRoleBinding")


async def pod_log(kube_api: Any, pod: str, **params: str) -> tuple[int, str]:
    """GET pods/NAME/log through the API server, as `kubectl logs` does."""
    async with api_client(kube_api.kubeconfig) as api:
        return await api.get_text(f"/api/v1/namespaces/default/pods/{pod}/log", params=params)


async def phase_is(api: Any, name: str, phase: str) -> dict[str, Any]:
    return await wait_for(api, PODS, name, "default", lambda p: (p.get("status") or {}).get("phase") == phase)


async def test_kubectl_logs_reaches_the_agent_with_tail_and_timestamps(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_module_configmap(api, "default", "modules", {"echo.wasm": module_bytes("echo")})
        await api.create(PODS, wasm_pod("echo", NODE, "configmap://modules/echo.wasm",
                                        container={"args": ["a", "b", "c"], "env": [{"name": "K", "value": "v"}]}))
        await phase_is(api, "echo", "Succeeded")
        status, text = await pod_log(kube_api, "echo")
        assert status == 200
        assert "argv[1]=a" in text.splitlines()
        assert "K=v" in text.splitlines()
        status, text = await pod_log(kube_api, "echo", tailLines="1")
        assert len(text.splitlines()) == 1
        status, text = await pod_log(kube_api, "echo", timestamps="true", tailLines="2")
        stamp, _, line = text.splitlines()[0].partition(" ")
        assert stamp.endswith("Z") and "T" in stamp and line
        status, text = await pod_log(kube_api, "echo", limitBytes="5")
        assert len(text.encode()) == 5


async def test_following_logs_streams_lines_until_the_container_ends(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_module_configmap(api, "default", "modules", {"ticker.wasm": module_bytes("ticker")})
        await api.create(PODS, wasm_pod("ticker", NODE, "configmap://modules/ticker.wasm", restart="Always",
                                        terminationGracePeriodSeconds=0,
                                        container={"args": ["--interval-ms", "50"]}))
        await phase_is(api, "ticker", "Running")
        seen: list[str] = []
        async with aiohttp.ClientSession() as session:
            url = f"{kube_api.url}/api/v1/namespaces/default/pods/ticker/log"
            async with session.get(url, params={"follow": "true"}, ssl=kube_api.ssl_context()) as resp:
                assert resp.status == 200
                async with asyncio.timeout(10):
                    while len(seen) < 5:
                        line = await resp.content.readline()
                        seen.append(line.decode().strip())
                await api.delete(PODS, "ticker", "default")
                async with asyncio.timeout(10):
                    rest = await resp.content.read()  # the stream ends when the container does
        assert seen[:5] == [f"tick {i}" for i in range(1, 6)]
        assert all(line.startswith("tick ") for line in rest.decode().splitlines())
        await wait_gone(api, "ticker")


async def test_previous_serves_the_log_of_the_run_before_a_restart(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_module_configmap(api, "default", "modules", {"exit.wasm": module_bytes("exit")})
        await api.create(PODS, wasm_pod("crashy", NODE, "configmap://modules/exit.wasm", restart="Always",
                                        container={"args": ["4"]}))
        await wait_for(api, PODS, "crashy", "default",
                       lambda p: (p.get("status") or {}).get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1)
        status, text = await pod_log(kube_api, "crashy", previous="true")
        assert status == 200
        assert text.strip() == "exit: exiting with code 4"


async def test_logs_of_a_container_that_never_started_are_refused_with_the_reason(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await api.create(PODS, wasm_pod("nomodule", NODE, "configmap://absent/x.wasm"))
        await wait_for(api, PODS, "nomodule", "default",
                       lambda p: "waiting" in ((p.get("status") or {}).get("containerStatuses") or [{}])[0]
                       .get("state", {}))
        status, text = await pod_log(kube_api, "nomodule")
        assert status == 400
        assert "is waiting to start" in text


TOKEN = "monitoring-token"
TENANT_TOKEN = "tenant-token"
SAR = "post /apis/authorization.k8s.io/v1/subjectaccessreviews"
MONITORING = "system:serviceaccount:monitoring:prometheus"


def service_account(namespace: str, name: str) -> dict[str, Any]:
    """A TokenReview's user for a ServiceAccount token, as kube-apiserver answers it."""
    return {"username": f"system:serviceaccount:{namespace}:{name}", "uid": f"{namespace}-{name}-uid",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}


async def bind_kubelet_api_admin(api: Any, namespace: str, name: str) -> None:
    """What a monitoring install does: bind its ServiceAccount to system:kubelet-api-admin."""
    await api.create(CLUSTER_ROLE_BINDINGS, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{name}-kubelet-api"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    })


@pytest.mark.kmock(tokens={TOKEN: service_account("monitoring", "prometheus")})
async def test_pods_healthz_and_metrics_are_served_over_https_to_authorized_callers(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await bind_kubelet_api_admin(api, "monitoring", "prometheus")
        await put_module_configmap(api, "default", "modules", {"hello.wasm": module_bytes("hello")})
        await api.create(PODS, wasm_pod("hello", NODE, "configmap://modules/hello.wasm"))
        await phase_is(api, "hello", "Succeeded")
        base = f"https://127.0.0.1:{agent.kubelet_port}"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz", ssl=False) as resp:
                assert (resp.status, await resp.text()) == (200, "ok")  # open, as the kubelet's
            async with session.get(f"{base}/pods", ssl=False, headers=bearer) as resp:
                pods = await resp.json()
            async with session.get(f"{base}/metrics", ssl=False, headers=bearer) as resp:
                metrics = await resp.text()
        assert pods["kind"] == "PodList"
        assert [(p["metadata"]["name"], p["status"]["phase"]) for p in pods["items"]] == [("hello", "Succeeded")]
        assert 'wasmlet_container_starts_total{runtime="wasmer"} 1.0' in metrics
        assert 'wasmlet_module_pulls_total{result="ok"} 1.0' in metrics
        assert "wasmlet_container_start_seconds_bucket" in metrics


@pytest.mark.kmock(tokens={TENANT_TOKEN: service_account("tenant", "default")})
async def test_another_namespaces_service_account_is_forbidden_logs_and_pods_as_the_kubelet_forbids_them(
        kube_api: Any, tmp_path: Path) -> None:
    """A token the API server vouches for is not enough: the caller needs nodes/proxy (or nodes/pods),
    which a namespace's ServiceAccount does not have. `kubectl logs` through the API server (its
    kubelet-client certificate, group system:masters) still gets through."""
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path) as agent:
        await put_module_configmap(api, "default", "modules", {"echo.wasm": module_bytes("echo")})
        await api.create(PODS, wasm_pod("secret-echo", NODE, "configmap://modules/echo.wasm",
                                        container={"args": ["private"]}))
        await phase_is(api, "secret-echo", "Succeeded")
        base = f"https://127.0.0.1:{agent.kubelet_port}"
        bearer = {"Authorization": f"Bearer {TENANT_TOKEN}"}
        answers = {}
        async with aiohttp.ClientSession() as session:
            for path in ("/containerLogs/default/secret-echo/main", "/pods", "/metrics"):
                async with session.get(f"{base}{path}", ssl=False, headers=bearer) as resp:
                    answers[path] = (resp.status, await resp.text())
        user = "system:serviceaccount:tenant:default"
        assert answers["/containerLogs/default/secret-echo/main"] == (
            403, f"Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[proxy])\n")
        assert answers["/pods"] == (403, f"Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[pods proxy])\n")
        assert answers["/metrics"] == (403, f"Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[metrics])\n")
        assert "secret-echo" not in "".join(text for _, text in answers.values())
        status, text = await pod_log(kube_api, "secret-echo")
        assert status == 200 and "argv[1]=private" in text.splitlines()
        assert {r.data["spec"]["resourceAttributes"]["name"] for r in kube_api.server[SAR]} == {NODE}


@pytest.mark.kmock(tokens={TOKEN: service_account("tenant", "default")})
async def test_a_denied_caller_is_remembered_for_a_while_and_an_allowed_one_longer(
        kube_api: Any, tmp_path: Path) -> None:
    """The kubelet's webhook cache: one review per caller and subresource within its TTL."""
    async with running_agent(kube_api, tmp_path) as agent:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"https://127.0.0.1:{agent.kubelet_port}/containerLogs/default/x/main",
                                       ssl=False, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    assert resp.status == 403
        assert len(kube_api.server[SAR]) == 1


@pytest.mark.kmock(tokens={TOKEN: {"username": "prometheus"}})
async def test_the_kubelet_api_refuses_callers_without_a_valid_token_or_certificate(
        kube_api: Any, tmp_path: Path) -> None:
    async with running_agent(kube_api, tmp_path) as agent:
        base = f"https://127.0.0.1:{agent.kubelet_port}"
        async with aiohttp.ClientSession() as session:
            for path, headers in (("/pods", {}), ("/metrics", {"Authorization": "Bearer forged"}),
                                  ("/containerLogs/default/x/main", {"Authorization": "Basic eDp5"})):
                async with session.get(f"{base}{path}", ssl=False, headers=headers) as resp:
                    assert resp.status == 401, path


async def test_with_authentication_switched_off_anyone_may_read(kube_api: Any, tmp_path: Path) -> None:
    async with running_agent(kube_api.kubeconfig, tmp_path, kubelet_api_auth="none") as agent, \
            aiohttp.ClientSession() as session, \
            session.get(f"https://127.0.0.1:{agent.kubelet_port}/pods", ssl=False) as resp:
        assert resp.status == 200


@pytest.mark.kmock(tokens={TENANT_TOKEN: service_account("tenant", "default")})
async def test_with_authorization_always_allow_any_authenticated_caller_may_read(kube_api: Any, tmp_path: Path) -> None:
    """The kubelet's authorization.mode AlwaysAllow: authentication still applies, no review is asked."""
    async with running_agent(kube_api, tmp_path, kubelet_api_authorization="always-allow") as agent:
        async with aiohttp.ClientSession() as session:
            base = f"https://127.0.0.1:{agent.kubelet_port}/pods"
            async with session.get(base, ssl=False, headers={"Authorization": f"Bearer {TENANT_TOKEN}"}) as resp:
                assert resp.status == 200
            async with session.get(base, ssl=False) as resp:
                assert resp.status == 401
        assert len(kube_api.server[SAR]) == 0


async def _status_with_certificate(url: str, cert: Path, key: Path) -> int | str:
    """The answer to a request presenting this client certificate, or "refused" (TLS rejected it)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the agent's is self-signed
    context.load_cert_chain(cert, key)
    try:
        async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as resp:
            return resp.status
    except aiohttp.ClientError:
        return "refused"


async def test_by_default_the_cluster_ca_verifies_client_certificates_and_a_client_ca_file_replaces_it(
        kube_api: Any, cluster_pki: TestPki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other-pki")
    async with running_agent(kube_api, tmp_path / "default") as agent:
        pods = f"https://127.0.0.1:{agent.kubelet_port}/pods"
        assert await _status_with_certificate(pods, cluster_pki.client_cert, cluster_pki.client_key) == 200
        assert await _status_with_certificate(pods, other.client_cert, other.client_key) in (401, "refused")
    async with running_agent(kube_api, tmp_path / "override", client_ca_file=other.ca_file) as agent:
        pods = f"https://127.0.0.1:{agent.kubelet_port}/pods"
        assert await _status_with_certificate(pods, other.client_cert, other.client_key) == 200
        assert await _status_with_certificate(pods, cluster_pki.client_cert, cluster_pki.client_key) in (401, "refused")
