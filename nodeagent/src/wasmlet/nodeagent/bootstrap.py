"""TLS bootstrap: the agent gets its own `system:node:<name>` identity, as a kubelet does.

With `bootstrap_kubeconfig` set (a kubeconfig path, or `in-cluster` for the Pod's
ServiceAccount), the agent — like `kubelet --bootstrap-kubeconfig` — uses those credentials for
one thing only: a CertificateSigningRequest for `CN=system:node:<name>, O=system:nodes` to the
signer `kubernetes.io/kube-apiserver-client-kubelet`. The controller manager approves it when
the requester may create `certificatesigningrequests/nodeclient` (the ClusterRole
`system:certificates.k8s.io:certificatesigningrequests:nodeclient`, bound to bootstrap tokens'
group `system:bootstrappers` on kubeadm clusters) and signs it. The agent then writes:

- `<state_dir>/pki/kubelet-client-current.pem`: certificate and key (0600), as the kubelet's;
- the node kubeconfig (`kubeconfig`, default `<state_dir>/pki/kubelet.kubeconfig`, 0600), whose
  user points at that file, and runs as the node from then on: the Node authorizer and
  NodeRestriction confine it to its Node, its Lease, its Pods and what they reference.

A certificate is renewed at a random point between 70 % and 90 % of its lifetime (the kubelet's
jittered rotation deadline): at start when that point has passed, else while running; the
client reads the file for every new connection, so the new pair is used without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import yaml

from wasmlet.kube import ApiError, KubeClient, load_config
from wasmlet.kube.backoff import Backoff
from wasmlet.kube.config import ClusterConfig, ConfigError
from wasmlet.kube.resources import CERTIFICATE_SIGNING_REQUESTS
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.csr import certificate_dates, new_request

log = logging.getLogger(__name__)

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
USAGES = ["digital signature", "client auth"]
IN_CLUSTER = "in-cluster"
ISSUE_TIMEOUT_SECONDS = 900.0  # how long an unapproved request is waited for before the agent gives up
POLL_SECONDS = 1.0


def node_kubeconfig_path(settings: AgentSettings) -> Path:
    return Path(settings.kubeconfig) if settings.kubeconfig else settings.state_dir / "pki" / "kubelet.kubeconfig"


def rotation_deadline(not_before: float, not_after: float, rng: random.Random | None = None) -> float:
    """The kubelet's `nextRotationDeadline`: 70–90 % into the certificate's lifetime."""
    fraction = 0.7 + 0.2 * (rng or random).random()
    return not_before + (not_after - not_before) * fraction


class NodeCredentials:
    """Keeps a node kubeconfig with a current client certificate for `settings.node_name`."""

    def __init__(self, settings: AgentSettings) -> None:
        assert settings.bootstrap_kubeconfig is not None
        self._settings = settings
        self._bootstrap = settings.bootstrap_kubeconfig
        self.kubeconfig = node_kubeconfig_path(settings)
        self.pem = settings.state_dir / "pki" / "kubelet-client-current.pem"
        self.deadline = 0.0

    async def ensure(self) -> Path:
        """The node kubeconfig, bootstrapping a certificate first when there is none or it is due."""
        if self.kubeconfig.exists() and self.pem.exists():
            try:
                not_before, not_after, _ = await asyncio.to_thread(certificate_dates, self.pem.read_bytes())
                self.deadline = rotation_deadline(not_before, not_after)
            except (OSError, ValueError) as exc:
                log.warning("node certificate %s is unreadable (%s): requesting a new one", self.pem, exc)
                self.deadline = 0.0
            if time.time() < self.deadline:
                return self.kubeconfig
        backoff = Backoff(base=1.0, cap=30.0)
        while True:  # as the kubelet, wait for the API server rather than give up
            try:
                await self.renew()
                return self.kubeconfig
            except ApiError as exc:
                delay = backoff.next()
                log.warning("cannot request a node certificate: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    async def renew(self) -> None:
        """Request, wait for and store a new certificate; raise ConfigError when it is not issued."""
        bootstrap = load_config(None if self._bootstrap == IN_CLUSTER else self._bootstrap)
        key_file = self.pem.with_name("kubelet-client.key.tmp")
        request = await asyncio.to_thread(new_request, key_file, self._settings.node_name)
        async with KubeClient(bootstrap, user_agent=f"wasmlet-agent/{self._settings.node_name} (bootstrap)") as api:
            certificate = await self._issue(api, request)
        not_before, not_after, subject = await asyncio.to_thread(certificate_dates, certificate)
        self._write(certificate + key_file.read_bytes(), bootstrap)
        key_file.unlink(missing_ok=True)
        self.deadline = rotation_deadline(not_before, not_after)
        log.info("node certificate for %s issued, valid until %s; renewal after %s", subject,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after)),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline)))

    async def rotate(self) -> None:
        """Run for the agent's lifetime: renew at each deadline. The client reads the certificate
        file for each new connection, so the renewed pair is presented without a restart."""
        while True:
            await asyncio.sleep(max(self.deadline - time.time(), 0.0))
            try:
                await self.renew()
            except (ApiError, ConfigError, OSError) as exc:
                log.warning("node certificate renewal failed: %s; retrying in 60s", exc)
                self.deadline = time.time() + 60

    async def _issue(self, api: KubeClient, request: bytes) -> bytes:
        name = f"node-csr-{self._settings.node_name[:200]}-{os.urandom(3).hex()}"
        await api.create(CERTIFICATE_SIGNING_REQUESTS, {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(request).decode(), "signerName": SIGNER, "usages": USAGES},
        })
        log.info("certificate signing request %s sent for system:node:%s; waiting for approval",
                 name, self._settings.node_name)
        deadline = time.monotonic() + ISSUE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            csr = await api.get(CERTIFICATE_SIGNING_REQUESTS, name)
            status = csr.get("status") or {}
            refused = [c for c in status.get("conditions") or [] if c.get("type") in ("Denied", "Failed")]
            if refused:
                raise ConfigError(f"certificate signing request {name} was {refused[0]['type'].lower()}: "
                                  f"{refused[0].get('reason', '')} {refused[0].get('message', '')}".rstrip())
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            await asyncio.sleep(POLL_SECONDS)
        raise ConfigError(f"certificate signing request {name} was not approved and signed within "
                          f"{ISSUE_TIMEOUT_SECONDS:.0f}s: approve it (kubectl certificate approve {name}) or let the "
                          "controller manager approve it (the bootstrap identity needs create on "
                          "certificatesigningrequests/nodeclient)")

    def _write(self, pem: bytes, bootstrap: ClusterConfig) -> None:
        _write_private(self.pem, pem)
        ca = bootstrap.ca_data or (Path(bootstrap.ca_file).read_bytes() if bootstrap.ca_file else None)
        cluster: dict[str, Any] = {"server": bootstrap.server}
        if ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        if bootstrap.insecure:
            cluster["insecure-skip-tls-verify"] = True
        name = "default-auth"  # the kubelet's names in its kubeconfig
        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "default-cluster", "cluster": cluster}],
            "users": [{"name": name, "user": {"client-certificate": str(self.pem), "client-key": str(self.pem)}}],
            "contexts": [{"name": "default-context",
                          "context": {"cluster": "default-cluster", "user": name, "namespace": "default"}}],
            "current-context": "default-context",
        }
        _write_private(self.kubeconfig, yaml.safe_dump(doc, sort_keys=False).encode())


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the agent's user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(scratch, path)
