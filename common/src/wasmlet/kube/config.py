"""Where the API server is and how to authenticate: kubeconfig, in-cluster, or a bare URL.

Order (what kubectl and client-go do): an explicit kubeconfig path, then `$KUBECONFIG`, then
the in-cluster service account, then `~/.kube/config`. A bare `http(s)://` URL is accepted
as the "kubeconfig" too: KubeEdge's MetaServer (`http://127.0.0.1:10550`) needs no auth.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(Exception):
    """The credentials cannot be loaded; the message names the file and the field."""


@dataclass(frozen=True)
class ClusterConfig:
    """Everything needed to open a connection to one API server."""

    server: str
    namespace: str = "default"
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    client_cert_file: str | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_file: str | None = None
    client_key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    source: str = ""

    def bearer_token(self) -> str | None:
        """The token, re-read from its file each time: projected tokens rotate (client-go does this)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read token file {self.token_file}: {exc}") from exc
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS context for https servers; True (default verification) when nothing is special."""
        if not self.server.startswith("https://"):
            return True
        ctx = ssl.create_default_context(cafile=self.ca_file,
                                         cadata=self.ca_data.decode() if self.ca_data else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert_data or self.client_key_data:
            # ssl reads a client key pair only from files: write them privately for the moment it loads.
            with tempfile.TemporaryDirectory(prefix="wasmlet-kube-") as scratch:
                cert = _private_file(scratch, "cert", self.client_cert_data, self.client_cert_file)
                key = _private_file(scratch, "key", self.client_key_data, self.client_key_file)
                if cert is None:
                    raise ConfigError(f"{self.source}: a client key without a client certificate")
                ctx.load_cert_chain(cert, key)
        elif self.client_cert_file:
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        return ctx


def load_config(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterConfig:
    """Load credentials in kubectl's order; raise ConfigError naming what is missing."""
    kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None
    if kubeconfig and kubeconfig.startswith(("http://", "https://")):
        return ClusterConfig(server=kubeconfig.rstrip("/"), source=kubeconfig)
    if kubeconfig:
        return _from_kubeconfig(Path(kubeconfig), context)
    env = os.environ.get("KUBECONFIG")
    if env:
        first = env.split(os.pathsep)[0]
        return _from_kubeconfig(Path(first), context)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (IN_CLUSTER_DIR / "token").exists():
        return _in_cluster()
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return _from_kubeconfig(default, context)
    raise ConfigError("no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a cluster")


def _in_cluster() -> ClusterConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    namespace_file = IN_CLUSTER_DIR / "namespace"
    return ClusterConfig(
        server=f"https://{host}:{port}",
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default",
        token_file=str(IN_CLUSTER_DIR / "token"),
        ca_file=str(IN_CLUSTER_DIR / "ca.crt"),
        source="in-cluster",
    )


def _from_kubeconfig(path: Path, context_name: str | None) -> ClusterConfig:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    context_name = context_name or doc.get("current-context")
    context = _named(doc, "contexts", context_name, path)["context"]
    cluster = _named(doc, "clusters", context.get("cluster"), path)["cluster"]
    user: dict[str, Any] = {}
    if context.get("user"):
        user = _named(doc, "users", context["user"], path).get("user") or {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"kubeconfig {path}: user {context.get('user')!r} uses exec/auth-provider credentials, "
                          "which wasmlet does not run; use a token or client certificate")
    if not cluster.get("server"):
        raise ConfigError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    return ClusterConfig(
        server=str(cluster["server"]).rstrip("/"),
        namespace=context.get("namespace") or "default",
        token=user.get("token"),
        token_file=_rel(path, user.get("tokenFile")),
        ca_file=_rel(path, cluster.get("certificate-authority")),
        ca_data=_data(cluster, "certificate-authority-data"),
        client_cert_file=_rel(path, user.get("client-certificate")),
        client_cert_data=_data(user, "client-certificate-data"),
        client_key_file=_rel(path, user.get("client-key")),
        client_key_data=_data(user, "client-key-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        source=str(path),
    )


def _named(doc: dict[str, Any], section: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return dict(entry)
    raise ConfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _rel(base: Path, value: str | None) -> str | None:
    """Relative paths in a kubeconfig are relative to the kubeconfig file (as in client-go)."""
    if not value:
        return None
    return str(base.parent / value) if not os.path.isabs(value) else value


def _data(section: dict[str, Any], key: str) -> bytes | None:
    """A `*-data` field: the file's content in base64."""
    value = section.get(key)
    return base64.b64decode(value) if value else None


def _private_file(folder: str, name: str, data: bytes | None, fallback: str | None) -> str | None:
    if data is None:
        return fallback
    target = Path(folder) / name
    target.touch(mode=0o600)
    target.write_bytes(data)
    return str(target)
