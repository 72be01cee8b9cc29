"""An agent running as `system:node:<name>`: what NodeRestriction refuses it is left off once,
never retried in a loop (the test API has no NodeRestriction; its refusals are injected here
as kube-apiserver answers them, with 403)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from wasmlet.kube.config import ConfigError
from wasmlet.kube.resources import LEASES, NODES, PODS, Resource
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings

from tests.integration.agent_helpers import (
    api_client,
    container_state,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)  # fmt: skip

NODE = "wasm-node-1"
EDGE = "node-role.kubernetes.io/edge"


def ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_a_node_created_under_node_restriction_leaves_off_the_labels_it_may_not_set(
        kube_api: Any, tmp_path: Path) -> None:
    kube_api.server["post /api/v1/nodes"][:1] << 403  # the first create carries node-role.kubernetes.io/edge
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api, tmp_path, node_labels={EDGE: "", "zone": "a", "node.kubernetes.io/pool": "wasm"}):
        node = await wait_for(api, NODES, NODE, None, ready)
        labels = node["metadata"]["labels"]
        assert EDGE not in labels
        assert labels["zone"] == "a" and labels["node.kubernetes.io/pool"] == "wasm"
        assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
            ("kubernetes.io/arch", "NoSchedule"), ("kubernetes.io/arch", "NoExecute")}
    assert len(kube_api.server["post /api/v1/nodes"]) == 2


async def test_an_existing_node_is_patched_once_and_a_refused_patch_is_not_retried(
        kube_api: Any, tmp_path: Path) -> None:
    """A Node registered before (here without our taints, with an old label): the agent asks once
    for what differs, once more without the taints and restricted labels, then runs on."""
    kube_api.put({"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": NODE, "labels": {"zone": "old", "kubernetes.io/hostname": NODE}}})
    patches = kube_api.server[f"patch /api/v1/nodes/{NODE}"]
    patches << 403  # every patch of the Node itself is refused, as NodeRestriction refuses taint changes
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api, tmp_path, node_labels={EDGE: "", "zone": "a"}) as agent:
        await wait_for(api, NODES, NODE, None, ready)
        first = await wait_for(api, LEASES, NODE, "kube-node-lease", lambda lease: True)
        await wait_for(api, LEASES, NODE, "kube-node-lease",
                       lambda lease: lease["spec"]["renewTime"] != first["spec"]["renewTime"])
        assert agent.node is not None and agent.node.registered.is_set()
    sent = [request.data for request in patches]
    assert len(sent) == 2
    assert sent[0]["spec"]["taints"] and EDGE in sent[0]["metadata"]["labels"]
    assert sent[1] == {"metadata": {"labels": {"zone": "a", "type": "wasmlet", "wasmlet.dev/agent": "true",
                                               "wasmlet.dev/runtime.wasmer": "true",
                                               "wasmlet.dev/runtime.wasmtime": "true",
                                               "kubernetes.io/arch": "wasm32-wasi", "kubernetes.io/os": "wasm32-wasi"}}}


async def test_a_module_configmap_the_node_may_not_read_is_a_clear_config_error(kube_api: Any, tmp_path: Path) -> None:
    """A hand-written Pod whose `configmap://` module no volume or env references: the Node
    authorizer refuses the read (injected 403), and the container says why and what to add."""
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await put_module_configmap(api, "default", "mods", {"hello.wasm": module_bytes("hello")})
        kube_api.server["get /api/v1/namespaces/default/configmaps/mods"] << 403
        await api.create(PODS, wasm_pod("unreferenced", NODE, "configmap://mods/hello.wasm"))
        pod = await wait_for(api, PODS, "unreferenced", "default",
                             lambda p: "waiting" in container_state(p) and
                             container_state(p)["waiting"].get("reason") == "CreateContainerConfigError")
        message = container_state(pod)["waiting"]["message"]
        assert 'configmap "mods" is forbidden to this node' in message
        assert '{"name": "wasmlet-module", "configMap": {"name": "mods"}}' in message


CSRS = Resource("certificates.k8s.io", "v1", "certificatesigningrequests", namespaced=False,
                kind="CertificateSigningRequest")


def subject_of(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


async def test_tls_bootstrap_requests_a_node_certificate_once_and_writes_a_private_node_kubeconfig(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api:
        async with running_agent(kube_api, tmp_path, bootstrap_kubeconfig=str(kube_api.kubeconfig),
                                 kubeconfig=None) as agent:
            await wait_for(api, NODES, NODE, None, ready)
            assert agent.credentials is not None
        (csr,) = (await api.list(CSRS))["items"]
        spec = csr["spec"]
        assert (spec["signerName"], spec["usages"]) == ("kubernetes.io/kube-apiserver-client-kubelet",
                                                        ["digital signature", "client auth"])
        request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        assert request.subject.rfc4514_string() == "CN=system:node:wasm-node-1,O=system:nodes"
        kubeconfig, pem = tmp_path / "pki" / "kubelet.kubeconfig", tmp_path / "pki" / "kubelet-client-current.pem"
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == stat.S_IMODE(pem.stat().st_mode) == 0o600
        user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
        assert user == {"client-certificate": str(pem), "client-key": str(pem)}
        assert subject_of(pem.read_bytes()) == "CN=system:node:wasm-node-1,O=system:nodes"
        assert b"PRIVATE KEY" in pem.read_bytes() and not list((tmp_path / "pki").glob("*.tmp"))
        async with running_agent(kube_api, tmp_path, bootstrap_kubeconfig=str(kube_api.kubeconfig), kubeconfig=None):
            await wait_for(api, NODES, NODE, None, ready)
        assert len((await api.list(CSRS))["items"]) == 1  # a valid certificate is reused after a restart


@pytest.mark.kmock(csr_duration=3.0)
async def test_a_node_certificate_is_renewed_before_it_expires(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(
            kube_api, tmp_path, bootstrap_kubeconfig=str(kube_api.kubeconfig), kubeconfig=None):
        pem = tmp_path / "pki" / "kubelet-client-current.pem"
        first = pem.read_bytes()
        deadline = asyncio.get_running_loop().time() + 30
        while pem.read_bytes() == first:
            assert asyncio.get_running_loop().time() < deadline, "no renewal within 30s of a 3s certificate"
            await asyncio.sleep(0.1)
        await wait_for(api, NODES, NODE, None, ready)
        assert len((await api.list(CSRS))["items"]) >= 2
        assert subject_of(pem.read_bytes()) == subject_of(first)


@pytest.mark.kmock(signing_ca=None)
async def test_a_denied_request_stops_the_agent_with_the_reason(kube_api: Any, tmp_path: Path) -> None:
    """Nobody signs here: the test denies the request as an administrator would."""
    async with api_client(kube_api.kubeconfig) as api:
        settings = AgentSettings(node_name=NODE, kubelet_port=0, state_dir=tmp_path, kubeconfig=None,
                                 bootstrap_kubeconfig=str(kube_api.kubeconfig), node_ip="127.0.0.1").validate()
        run = asyncio.create_task(Agent(settings).run(asyncio.Event()))
        deadline = asyncio.get_running_loop().time() + 30
        while not (await api.list(CSRS))["items"]:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        (csr,) = (await api.list(CSRS))["items"]
        csr["status"] = {"conditions": [{"type": "Denied", "status": "True", "reason": "NotOurs",
                                         "message": "unknown node"}]}
        await api.request("PUT", CSRS.path(name=csr["metadata"]["name"], subresource="approval"), json_body=csr)
        with pytest.raises(ConfigError, match=r"was denied: NotOurs unknown node"):
            await asyncio.wait_for(run, 30)


def _client_pem(cluster_pki: Any, common_name: str, path: Path) -> Path:
    """A client certificate and key in one PEM file, as kubelet-client-current.pem holds them."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = x509.load_pem_x509_certificate(cluster_pki.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(cluster_pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


async def test_a_rotated_client_certificate_is_presented_on_new_connections(cluster_pki: Any, tmp_path: Path) -> None:
    """What renewal relies on: the running client reads the certificate file for each new
    connection, so a renewed pair is presented without a restart."""
    import ssl

    import aiohttp.web

    from wasmlet.kube import KubeClient
    from wasmlet.kube.config import ClusterConfig

    async def whoami(request: aiohttp.web.Request) -> aiohttp.web.Response:
        subject = dict(rdn[0] for rdn in request.transport.get_extra_info("peercert")["subject"])  # type: ignore[union-attr]
        return aiohttp.web.json_response({"cn": subject["commonName"]}, headers={"Connection": "close"})

    server_pem = _client_pem(cluster_pki, "localhost", tmp_path / "server.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_pem, server_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(cluster_pki.ca_file))
    app = aiohttp.web.Application()
    app.router.add_get("/whoami", whoami)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    first = _client_pem(cluster_pki, "system:node:old", tmp_path / "first.pem")
    config = ClusterConfig(server=f"https://127.0.0.1:{port}", insecure=True, client_cert_file=str(first),
                           client_key_file=str(first))
    try:
        async with KubeClient(config) as api:
            assert (await api.request("GET", "/whoami"))["cn"] == "system:node:old"
            renewed = _client_pem(cluster_pki, "system:node:new", tmp_path / "renewed.pem")
            os.replace(renewed, first)  # as the agent's renewal replaces kubelet-client-current.pem
            assert (await api.request("GET", "/whoami"))["cn"] == "system:node:new"
    finally:
        await runner.cleanup()
