"""Kubelet client CertificateSigningRequests: what the agent's TLS bootstrap relies on.

A request for `CN=system:node:<name>, O=system:nodes` to `kubernetes.io/kube-apiserver-client-kubelet`,
sent by someone allowed to create `certificatesigningrequests/nodeclient` (here an administrator),
is approved (`AutoApproved`) and signed by the controller manager; the certificate names the node.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.contract.conftest import ContractClient, eventually

CSRS = "certificates.k8s.io/v1"


def node_request(node: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


async def test_a_kubelet_client_request_is_approved_and_signed_for_the_node(api: ContractClient) -> None:
    node = api.unique("wasmlet-contract-node")
    name = api.unique("node-csr")
    await api.create(CSRS, "certificatesigningrequests", None, {
        "apiVersion": CSRS, "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(node_request(node)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]},
    })  # fmt: skip
    api.owns(CSRS, "certificatesigningrequests", name)

    async def issued() -> dict | None:
        csr = await api.get(CSRS, "certificatesigningrequests", None, name)
        return csr if (csr.get("status") or {}).get("certificate") else None

    csr = await eventually(issued)
    assert csr, "the request was not signed"
    approved = [c for c in csr["status"]["conditions"] if c["type"] == "Approved"]
    assert [(c["status"], c["reason"]) for c in approved] == [("True", "AutoApproved")]
    cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    assert cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes"


async def test_a_request_for_another_signer_stays_pending(api: ContractClient) -> None:
    name = api.unique("other-csr")
    await api.create(CSRS, "certificatesigningrequests", None, {
        "apiVersion": CSRS, "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(node_request("x")).decode(), "signerName": "example.com/custom",
                 "usages": ["client auth"]},
    })  # fmt: skip
    api.owns(CSRS, "certificatesigningrequests", name)
    csr = await api.get(CSRS, "certificatesigningrequests", None, name)
    assert not (csr.get("status") or {}).get("certificate")
