"""The kubeconfig forms users have, on a real cluster: every component connects and works with each.

From the e2e kubeconfig this builds:
- `data`: its cluster and user with every PEM file inlined (`certificate-authority-data`,
  `client-certificate-data`/`client-key-data`), as kubeadm, kind and k3s write them;
- `exec`: the same cluster and an exec credential plugin (a script printing the e2e user's token,
  or its client certificate, in an ExecCredential that expires after a few seconds), reached
  through `KUBECONFIG` holding two files and `--context`, as EKS/GKE/AKS users run it;
- `node`: a `system:node:<name>` identity, a client certificate the cluster signs through a
  CertificateSigningRequest (signer `kubernetes.io/kube-apiserver-client-kubelet`), as a
  kubelet's own.

The operator runs with `exec`; three agents run with `data`, `exec` and `node`, none with a
client CA file: `kubectl logs` must work with the cluster CA they trust by default.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.test_journey import BIN, MODULE, WW, Journey, eventually, free_port
from tests.fixtures.kubeclient import ApiError, KubeClient

TOKEN_SECONDS = 20  # the exec plugin's credentials expire this fast, so the run sees refreshes
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"

PLUGIN = """#!{python}
import datetime, json, os, pathlib
runs = pathlib.Path({runs!r})
runs.write_text(str(int(runs.read_text() or 0) + 1 if runs.exists() else 1))
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={seconds})
status = json.loads({status!r})
status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}}))
"""


class Forms:
    """The kubeconfig files of one run, and what it created on the cluster to make them."""

    def __init__(self, source: Path, run_id: str, work: Path) -> None:
        doc = yaml.safe_load(source.read_text())
        context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        self.cluster = dict(next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"]))
        self.user = dict(next(u["user"] for u in doc["users"] if u["name"] == context["user"]))
        self.base, self.run_id, self.work = source.parent, run_id, work
        self.runs = work / "plugin-runs"
        _inline(self.cluster, "certificate-authority", self.base)
        for key in ("client-certificate", "client-key"):
            _inline(self.user, key, self.base)

    def write(self, name: str, user: dict[str, Any], context: str | None = None) -> Path:
        path = self.work / f"{name}.kubeconfig"
        context = context or name
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": name, "cluster": self.cluster}], "users": [{"name": name, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": name, "user": name}}]}))
        return path

    def data(self) -> Path:
        return self.write("data", self.user)

    def exec(self) -> Path:
        if self.user.get("token"):
            status: dict[str, str] = {"token": self.user["token"]}
        else:
            status = {"clientCertificateData": base64.b64decode(self.user["client-certificate-data"]).decode(),
                      "clientKeyData": base64.b64decode(self.user["client-key-data"]).decode()}
        plugin = self.work / "credential-plugin"
        plugin.write_text(PLUGIN.format(python=sys.executable, runs=str(self.runs), seconds=TOKEN_SECONDS,
                                        status=json.dumps(status)))
        plugin.chmod(0o700)
        return self.write("exec", {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                                            "interactiveMode": "Never"}}, context="exec-context")

    async def node(self, api: KubeClient, node: str) -> Path:
        """A node identity: key and CSR made here, approved and signed by the cluster."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        name = f"{self.run_id}-node-csr"
        await api.create("certificates.k8s.io/v1", "certificatesigningrequests", None, {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                     "signerName": KUBELET_SIGNER, "usages": ["digital signature", "client auth"]}})
        await _approve(api, name)

        async def issued() -> str | None:
            signed = await api.get("certificates.k8s.io/v1", "certificatesigningrequests", None, name)
            return (signed.get("status") or {}).get("certificate")

        certificate = await eventually(issued, "the node certificate signed", timeout=60)
        pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return self.write("node", {"client-certificate-data": certificate,
                                   "client-key-data": base64.b64encode(pem_key).decode()})


async def _approve(api: KubeClient, name: str) -> None:
    """Approve a CSR (as `kubectl certificate approve`), again on a conflict: controllers touch new CSRs."""
    for _ in range(10):
        body = await api.get("certificates.k8s.io/v1", "certificatesigningrequests", None, name)
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Approved" for c in conditions):
            return
        body.setdefault("status", {})["conditions"] = [*conditions, {
            "type": "Approved", "status": "True", "reason": "E2E", "message": "approved by the wasmlet e2e tests"}]
        try:
            await api.put("certificates.k8s.io/v1", "certificatesigningrequests", None, name, body,
                          subresource="approval")
            return
        except ApiError as error:
            if error.status != 409:
                raise
    raise AssertionError(f"could not approve CSR {name}")


def _inline(section: dict[str, Any], key: str, base: Path) -> None:
    """`key: path` → `key-data: base64` (a relative path is relative to the kubeconfig)."""
    path = section.pop(key, None)
    if path and not section.get(f"{key}-data"):
        section[f"{key}-data"] = base64.b64encode((base / os.path.expanduser(path)).read_bytes()).decode()


class Run(Journey):
    """The processes (started, stopped and checked as the journey's) and objects of one run."""

    def __init__(self, kubeconfig: Path, run_id: str, work: Path) -> None:
        super().__init__(kubeconfig, run_id, work)
        self.namespace = f"{run_id}-kubeconfigs"
        self.nodes: list[str] = []
        self.runtime_class = False

    async def agent(self, form: str, kubeconfig: Path) -> str:
        node = f"{self.run_id}-{form}"
        self.nodes.append(node)
        await self.start(f"agent-{form}", [str(BIN / "wasmlet-agent"), "--kubeconfig", str(kubeconfig)], {
            "WASMLET_NODE_NAME": node, "WASMLET_KUBELET_PORT": str(free_port()),
            "WASMLET_STATE_DIR": str(self.work / f"state-{form}"), "WASMLET_NODE_LABELS": f"wasmlet.dev/e2e={node}",
            **({"WASMLET_NODE_IP": os.environ["WASMLET_E2E_NODE_IP"]} if os.environ.get("WASMLET_E2E_NODE_IP") else {})})
        return node

    async def node_ready(self, node: str) -> bool:
        self.alive()
        with contextlib.suppress(ApiError):
            status = (await self.api.get("v1", "nodes", None, node))["status"]
            return {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready") == "True"
        return False

    async def logs(self, pod: str) -> str | None:
        status, body = await self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log",
                                              params={"tailLines": 3})
        return body if status == 200 and isinstance(body, str) and "tick" in body else None

    async def cleanup(self) -> None:
        # The namespace first, while the agents still run: they finish its Pods' deletion.
        with contextlib.suppress(ApiError):
            await self.api.delete("v1", "namespaces", None, self.namespace)
        with contextlib.suppress(TimeoutError, ApiError):
            await eventually(lambda: self.absent("v1", "namespaces", None, self.namespace),
                             f"namespace {self.namespace} deleted", timeout=90)
        for name in list(self.processes):
            await self.stop(name)
        deletions = [("certificates.k8s.io/v1", "certificatesigningrequests", None, f"{self.run_id}-node-csr")]
        deletions += [("v1", "nodes", None, node) for node in self.nodes]
        deletions += [("coordination.k8s.io/v1", "leases", "kube-node-lease", node) for node in self.nodes]
        if self.runtime_class:
            deletions.append(("node.k8s.io/v1", "runtimeclasses", None, "wasmer"))
        for api_version, plural, namespace, name in deletions:
            with contextlib.suppress(ApiError):
                await self.api.delete(api_version, plural, namespace, name)
        await self.api.close()
        self.helm.close()

@pytest.fixture()
async def run(e2e_kubeconfig: Path, run_id: str, tmp_path: Path) -> AsyncIterator[Run]:
    trip = Run(e2e_kubeconfig, run_id, tmp_path)
    try:
        yield trip
    finally:
        await trip.cleanup()


@pytest.mark.timeout(600)
async def test_the_operator_and_agents_work_with_data_exec_and_node_identity_kubeconfigs(
        run: Run, e2e_kubeconfig: Path) -> None:
    api, forms = run.api, Forms(e2e_kubeconfig, run.run_id, run.work)
    crd = "wasmworkloads.wasmlet.dev"
    with contextlib.suppress(ApiError):
        await api.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None, crd)
        crd = ""
    assert not crd, "install wasmlet's CRDs first (tests/e2e/test_journey.py installs them with the chart)"
    with contextlib.suppress(ApiError):
        await api.create("node.k8s.io/v1", "runtimeclasses", None, {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasmer"}, "handler": "wasmer"})
        run.runtime_class = True
    await api.create("v1", "namespaces", None, {"metadata": {"name": run.namespace}})
    await api.create("v1", "configmaps", run.namespace, {
        "metadata": {"name": "ticker-module"},
        "binaryData": {"ticker.wasm": base64.b64encode(MODULE.read_bytes()).decode()}})

    # KUBECONFIG holds two files; the first names another, unusable, current context.
    exec_config = forms.exec()
    elsewhere = forms.write("elsewhere", {"token": "not-a-token"})
    await run.start("operator", [str(BIN / "wasmlet-operator"), "--context", "exec-context",
                                 "--namespace", run.namespace, "--standalone"],
                    {"KUBECONFIG": f"{elsewhere}{os.pathsep}{exec_config}"})
    nodes = {form: await run.agent(form, path) for form, path in
             (("data", forms.data()), ("exec", exec_config), ("node", await forms.node(api, f"{run.run_id}-node")))}
    for node in nodes.values():
        await eventually(lambda node=node: run.node_ready(node), f"node {node} Ready")

    # The operator places a workload on each admin-credential node; the node identity runs a Pod
    # that references its module ConfigMap (so the Node authorizer lets that node read it).
    for form in ("data", "exec"):
        await api.create(WW, "wasmworkloads", run.namespace, {
            "apiVersion": WW, "kind": "WasmWorkload", "metadata": {"name": f"ticker-{form}"},
            "spec": {"module": {"configMap": {"name": "ticker-module", "key": "ticker.wasm"}},
                     "args": ["--interval-ms", "200"], "nodeSelector": {"wasmlet.dev/e2e": nodes[form]},
                     "terminationGracePeriodSeconds": 1}})
    await api.create("v1", "pods", run.namespace, _node_pod(nodes["node"]))
    pods: dict[str, str] = {}
    for form in ("data", "exec", "node"):
        pods[form] = await eventually(lambda node=nodes[form]: _running_pod(run, node), f"a running Pod on {nodes[form]}")

    # `kubectl logs` through the API server, with no client CA configured on any agent.
    for form, pod in pods.items():
        assert "tick" in await eventually(lambda pod=pod: run.logs(pod), f"logs of {pod} ({form})", timeout=60)

    # The exec credentials expire: the operator and the agent run the plugin again and keep working.
    first_runs = int(forms.runs.read_text())

    async def plugin_ran_again() -> bool:
        return int(forms.runs.read_text()) > first_runs

    await eventually(plugin_ran_again, "the exec plugin run again after its credential expired",
                     timeout=TOKEN_SECONDS * 3)
    await api.patch(WW, "wasmworkloads", run.namespace, "ticker-exec", {"spec": {"replicas": 2}})

    async def scaled() -> bool:
        run.alive()
        workload = await api.get(WW, "wasmworkloads", run.namespace, "ticker-exec")
        return (workload.get("status") or {}).get("readyReplicas") == 2

    await eventually(scaled, "ticker-exec scaled to 2 after the credentials expired")
    for node in nodes.values():
        assert await run.node_ready(node)


def _node_pod(node: str) -> dict[str, Any]:
    taint = {"key": "kubernetes.io/arch", "operator": "Equal", "value": "wasm32-wasi"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker-node"},
            "spec": {"nodeName": node, "runtimeClassName": "wasmer", "terminationGracePeriodSeconds": 1,
                     "tolerations": [{**taint, "effect": "NoSchedule"}, {**taint, "effect": "NoExecute"}],
                     "containers": [{"name": "main", "image": "configmap://ticker-module/ticker.wasm",
                                     "args": ["--interval-ms", "200"]}],
                     "volumes": [{"name": "module", "configMap": {"name": "ticker-module"}}]}}


async def _running_pod(run: Run, node: str) -> str | None:
    run.alive()
    listing = await run.api.list("v1", "pods", run.namespace, params={"fieldSelector": f"spec.nodeName={node}"})
    running = [p["metadata"]["name"] for p in listing["items"] if (p.get("status") or {}).get("phase") == "Running"]
    return running[0] if running else None
