"""An agent that is its node, on a real cluster: TLS bootstrap, the Node authorizer, NodeRestriction,
and the kubelet API's SubjectAccessReview.

1. a ServiceAccount that may only bootstrap (create/get CSRs, bound to the bootstrap policy's
   `...:nodeclient` role) hands the agent process a token; the controller manager approves its
   CSR and the agent runs as `system:node:<name>`, with a node-role label NodeRestriction refuses;
2. a Pod whose ConfigMap module is referenced by a `wasmlet-module` volume runs and its log comes
   through the API server; one whose ConfigMap nothing references waits with the Node
   authorizer's refusal;
3. another namespace's ServiceAccount token gets the kubelet's 403 from the agent's API.

Needs the API server to reach this machine at WASMLET_E2E_NODE_IP (default 127.0.0.1, which a
control plane on this machine reaches).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import cluster_ca
from tests.e2e.test_journey import ROOT, eventually, free_port
from tests.fixtures.kubeclient import ApiError, KubeClient

BIN = Path(sys.executable).parent
RBAC = "rbac.authorization.k8s.io/v1"
NODECLIENT = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"


class Run:
    """What this test created, to take exactly that down again."""

    def __init__(self, kubeconfig: Path, run_id: str, work: Path) -> None:
        self.kubeconfig = kubeconfig
        self.api = KubeClient.from_kubeconfig(kubeconfig)
        self.ns = f"{run_id}-identity"
        self.other_ns = f"{run_id}-tenant"
        self.node = f"{run_id}-node"
        self.work = work
        self.cluster_objects: list[tuple[str, str, str]] = []

    async def create(self, api_version: str, plural: str, namespace: str | None, body: dict[str, Any]) -> Any:
        answer = await self.api.create(api_version, plural, namespace, body)
        if namespace is None:
            self.cluster_objects.append((api_version, plural, body["metadata"]["name"]))
        return answer

    async def token(self, namespace: str, account: str) -> str:
        answer = await self.api.create("v1", "serviceaccounts", namespace, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
            name=account, subresource="token")
        return str(answer["status"]["token"])

    def token_kubeconfig(self, token: str) -> Path:
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
        ca = cluster["cluster"].get("certificate-authority")
        if ca and not os.path.isabs(ca):
            cluster["cluster"]["certificate-authority"] = str(self.kubeconfig.parent / ca)
        path = self.work / "bootstrap.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "b", "clusters": [cluster],
            "users": [{"name": "b", "user": {"token": token}}],
            "contexts": [{"name": "b", "context": {"cluster": cluster["name"], "user": "b"}}]}))
        return path

    async def cleanup(self) -> None:
        for namespace in (self.ns, self.other_ns):
            await _ignore_missing(self.api.delete("v1", "namespaces", None, namespace))
        for api_version, plural, name in reversed(self.cluster_objects):
            await _ignore_missing(self.api.delete(api_version, plural, None, name))
        await _ignore_missing(self.api.delete("v1", "nodes", None, self.node))
        for csr in (await self.api.list("certificates.k8s.io/v1", "certificatesigningrequests"))["items"]:
            if csr["metadata"]["name"].startswith(f"node-csr-{self.node}-"):
                await _ignore_missing(self.api.delete("certificates.k8s.io/v1", "certificatesigningrequests", None,
                                                      csr["metadata"]["name"]))


async def _ignore_missing(call: Any) -> None:
    try:
        await call
    except ApiError as error:
        if error.status != 404:
            raise


@pytest.fixture()
async def run(e2e_kubeconfig: Path, run_id: str, tmp_path: Path) -> AsyncIterator[Run]:
    state = Run(e2e_kubeconfig, run_id, tmp_path)
    async with state.api:
        try:
            yield state
        finally:
            await state.cleanup()


def pod(name: str, node: str, image: str, volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "runtimeClassName": "wasmer", "restartPolicy": "Never",
                     "automountServiceAccountToken": False, "volumes": volumes or [],
                     "tolerations": [{"key": "kubernetes.io/arch", "operator": "Exists"}],
                     "containers": [{"name": "main", "image": image, "args": ["from-a-node-identity"]}]}}


@pytest.mark.timeout(300)
async def test_a_bootstrapped_agent_is_confined_to_its_node_and_authorizes_its_api(run: Run) -> None:
    api = run.api
    for namespace in (run.ns, run.other_ns):
        await api.create("v1", "namespaces", None, {"metadata": {"name": namespace}})
    for namespace in (run.ns, run.other_ns):
        await eventually(lambda ns=namespace: _exists(api, "v1", "serviceaccounts", ns, "default"),
                         f"{namespace}/default ServiceAccount")
    await api.create("v1", "serviceaccounts", run.ns, {"metadata": {"name": "bootstrapper"}})
    await run.create(RBAC, "clusterroles", None, {"metadata": {"name": f"{run.ns}-bootstrap"}, "rules": [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get"]}]})
    for role in (f"{run.ns}-bootstrap", NODECLIENT):
        await run.create(RBAC, "clusterrolebindings", None, {
            "metadata": {"name": f"{run.ns}-{role.rsplit(':', 1)[-1]}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "bootstrapper", "namespace": run.ns}]})
    await api.create("v1", "configmaps", run.ns, {"metadata": {"name": "modules"}, "binaryData": {
        "echo.wasm": base64.b64encode((ROOT / "examples" / "modules" / "echo.wasm").read_bytes()).decode()}})
    await api.create("v1", "configmaps", run.ns, {"metadata": {"name": "unreferenced"}, "binaryData": {
        "echo.wasm": base64.b64encode((ROOT / "examples" / "modules" / "echo.wasm").read_bytes()).decode()}})

    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(run.work), "PYTHONUNBUFFERED": "1",
           "WASMLET_BOOTSTRAP_KUBECONFIG": str(run.token_kubeconfig(await run.token(run.ns, "bootstrapper"))),
           "WASMLET_NODE_NAME": run.node, "WASMLET_NODE_IP": os.environ.get("WASMLET_E2E_NODE_IP", "127.0.0.1"),
           "WASMLET_KUBELET_PORT": str(port), "WASMLET_STATE_DIR": str(run.work / "state"),
           "WASMLET_CLIENT_CA_FILE": str(cluster_ca(run.kubeconfig, run.work)), "WASMLET_RUNTIMES": "wasmer",
           "WASMLET_NODE_LABELS": "node-role.kubernetes.io/edge=,zone=e2e"}
    log = (run.work / "agent.log").open("wb")
    agent = await asyncio.create_subprocess_exec(str(BIN / "wasmlet-agent"), env=env, stdout=log,
                                                 stderr=asyncio.subprocess.STDOUT, cwd=run.work)
    try:
        await _journey(run, port)
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 60)
        log.close()
    text = (run.work / "agent.log").read_text()
    assert "NodeRestriction forbids a node to set label(s) node-role.kubernetes.io/edge" in text
    assert "Traceback" not in text, text


async def _journey(run: Run, port: int) -> None:
    api = run.api

    async def ready() -> dict[str, Any] | None:
        try:
            node = await api.get("v1", "nodes", None, run.node)
        except ApiError:
            return None
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])
        return node if ok else None

    node = await eventually(ready, f"node {run.node} Ready (log: {run.work / 'agent.log'})")
    assert node["metadata"]["labels"]["zone"] == "e2e" and "node-role.kubernetes.io/edge" not in node["metadata"]["labels"]
    csrs = [c for c in (await api.list("certificates.k8s.io/v1", "certificatesigningrequests"))["items"]
            if c["metadata"]["name"].startswith(f"node-csr-{run.node}-")]
    assert [c["spec"]["username"] for c in csrs] == [f"system:serviceaccount:{run.ns}:bootstrapper"]
    lease = await api.get("coordination.k8s.io/v1", "leases", "kube-node-lease", run.node)
    await eventually(lambda: _renewed(api, run.node, lease["spec"]["renewTime"]), "the Lease renewed")

    volume = [{"name": "wasmlet-module", "configMap": {"name": "modules"}}]
    await api.create("v1", "pods", run.ns, pod("referenced", run.node, "configmap://modules/echo.wasm", volume))
    await api.create("v1", "pods", run.ns, pod("unreferenced", run.node, "configmap://unreferenced/echo.wasm"))
    await eventually(lambda: _phase(api, run.ns, "referenced", "Succeeded"), "the referenced module's Pod Succeeded")
    status, log = await api.request("GET", f"/api/v1/namespaces/{run.ns}/pods/referenced/log")
    assert status == 200 and "argv[1]=from-a-node-identity" in str(log)

    async def refused() -> str | None:
        status = (await api.get("v1", "pods", run.ns, "unreferenced")).get("status") or {}
        waiting = ((status.get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}
        return waiting.get("message") if waiting.get("reason") == "CreateContainerConfigError" else None

    message = await eventually(refused, "the unreferenced module refused")
    assert f'User "system:node:{run.node}"' in message and "no relationship found" in message

    token = await run.token(run.other_ns, "default")
    async with aiohttp.ClientSession() as session:
        for path, subresources in ((f"/containerLogs/{run.ns}/referenced/main", "[proxy]"), ("/pods", "[pods proxy]")):
            async with session.get(f"https://127.0.0.1:{port}{path}", ssl=False,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 403
                assert await resp.text() == (f"Forbidden (user=system:serviceaccount:{run.other_ns}:default, "
                                             f"verb=get, resource=nodes, subresource(s)={subresources})\n")


async def _exists(api: KubeClient, api_version: str, plural: str, namespace: str | None, name: str) -> bool:
    try:
        await api.get(api_version, plural, namespace, name)
    except ApiError:
        return False
    return True


async def _renewed(api: KubeClient, node: str, before: str) -> bool:
    lease = await api.get("coordination.k8s.io/v1", "leases", "kube-node-lease", node)
    return bool(lease["spec"]["renewTime"] != before)


async def _phase(api: KubeClient, namespace: str, name: str, phase: str) -> bool:
    return bool(((await api.get("v1", "pods", namespace, name)).get("status") or {}).get("phase") == phase)
