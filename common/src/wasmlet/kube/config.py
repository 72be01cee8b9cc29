"""Where the API server is and how to authenticate: kubeconfig, in-cluster, or a bare URL.

Order (what kubectl and client-go do): an explicit kubeconfig path, then `$KUBECONFIG` (one
file or several, merged: see kubeconfig.py), then the in-cluster service account, then
`~/.kube/config`. A bare `http(s)://` URL is accepted as the "kubeconfig" too: KubeEdge's
MetaServer (`http://127.0.0.1:10550`) needs no auth.

A kubeconfig is read as kubectl reads it: `certificate-authority(-data)`,
`client-certificate(-data)`/`client-key(-data)`, `token`, `tokenFile`,
`insecure-skip-tls-verify`, `tls-server-name`, `proxy-url` (http), contexts (`--context`),
exec credential plugins (execplugin.py) and legacy `auth-provider`s (authprovider.py).
Credentials that change over time are fetched by `Credentials` (credentials.py).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from wasmlet.kube.kubeconfig import (
    ConfigError,
    Entry,
    MergedKubeconfig,
    kubeconfig_paths,
    read_kubeconfigs,
    relative_to,
)

if TYPE_CHECKING:  # the exec plugin's code is loaded only for a kubeconfig that has one
    from wasmlet.kube.execplugin import ExecConfig

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class AuthProviderConfig:
    """A legacy `auth-provider` user: what the `kubernetes` package's loader needs to run it."""

    name: str
    # A one-context kubeconfig (cluster, user, context) for the loader, and where its paths start.
    document: dict[str, Any] = field(repr=False)
    context: str = ""
    base_path: str = ""


@dataclass(frozen=True)
class ClusterConfig:
    """Everything needed to open a connection to one API server."""

    server: str
    namespace: str = "default"
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    client_cert_file: str | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_file: str | None = None
    client_key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    exec: ExecConfig | None = None
    auth_provider: AuthProviderConfig | None = None
    source: str = ""

    def bearer_token(self) -> str | None:
        """The static token, re-read from its file each time: projected tokens rotate (client-go does this)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read token file {self.token_file}: {exc}") from exc
        return self.token

    def ca_pem(self) -> bytes | None:
        """The cluster CA as PEM (from the data field or the file), or None when the system's CAs apply."""
        if self.ca_data is not None:
            return self.ca_data
        return _read_file(self.ca_file, "certificate-authority") if self.ca_file else None

    def client_pair(self) -> tuple[bytes, bytes] | None:
        """The static client certificate and key as PEM, or None."""
        cert = self.client_cert_data or (_read_file(self.client_cert_file, "client-certificate")
                                         if self.client_cert_file else None)
        key = self.client_key_data or (_read_file(self.client_key_file, "client-key") if self.client_key_file else None)
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise ConfigError(f"{self.source}: a client certificate needs both the certificate and its key")
        return cert, key


def load_config(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterConfig:
    """Load credentials in kubectl's order; raise ConfigError naming what is missing."""
    kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None
    if kubeconfig and kubeconfig.startswith(("http://", "https://")):
        return ClusterConfig(server=kubeconfig.rstrip("/"), source=kubeconfig)
    if kubeconfig:
        return from_kubeconfig(read_kubeconfigs([Path(kubeconfig)], must_exist=True), context)
    env = os.environ.get("KUBECONFIG")
    if env:
        merged = read_kubeconfigs(kubeconfig_paths(env), must_exist=False)
        if merged.sources:
            return from_kubeconfig(merged, context)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (IN_CLUSTER_DIR / "token").exists():
        return _in_cluster()
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return from_kubeconfig(read_kubeconfigs([default], must_exist=True), context)
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


def from_kubeconfig(merged: MergedKubeconfig, context_name: str | None) -> ClusterConfig:
    """The connection a context of merged kubeconfig files describes (its current context by default)."""
    name = context_name or merged.current_context
    if not name:
        raise ConfigError(f"kubeconfig {merged.describe()}: no current-context; pass --context")
    context = merged.entry("contexts", name)
    cluster = merged.entry("clusters", context.body.get("cluster"))
    user = merged.entry("users", context.body["user"]) if context.body.get("user") else None
    body = cluster.body
    where = f"kubeconfig {cluster.source}: cluster {cluster.name!r}"
    if not body.get("server"):
        raise ConfigError(f"{where} has no server")
    tls = _tls_fields(cluster, where)
    credentials = _user_fields(user, body, tls, name) if user else {}
    return ClusterConfig(
        server=str(body["server"]).rstrip("/"),
        namespace=context.body.get("namespace") or "default",
        proxy_url=_proxy(body.get("proxy-url"), where),
        source=merged.describe(),
        **tls, **credentials,
    )


def _tls_fields(cluster: Entry, where: str) -> dict[str, Any]:
    body = cluster.body
    return {
        "ca_file": relative_to(cluster, body.get("certificate-authority")),
        "ca_data": _data(body, "certificate-authority-data", where),
        "insecure": bool(body.get("insecure-skip-tls-verify")),
        "tls_server_name": body.get("tls-server-name") or None,
    }


def _user_fields(user: Entry, cluster: dict[str, Any], tls: dict[str, Any], context: str) -> dict[str, Any]:
    body = user.body
    where = f"kubeconfig {user.source}: user {user.name!r}"
    if body.get("username") or body.get("password"):
        raise ConfigError(f"{where}: basic authentication (username/password) was removed from Kubernetes; "
                          "use a token, a client certificate or an exec plugin")
    fields: dict[str, Any] = {
        "token": body.get("token") or None,
        "token_file": relative_to(user, body.get("tokenFile")),
        "client_cert_file": relative_to(user, body.get("client-certificate")),
        "client_cert_data": _data(body, "client-certificate-data", where),
        "client_key_file": relative_to(user, body.get("client-key")),
        "client_key_data": _data(body, "client-key-data", where),
    }
    if body.get("exec") is not None:
        from wasmlet.kube.execplugin import parse_exec

        wants_ca = (body["exec"] or {}).get("provideClusterInfo") if isinstance(body["exec"], dict) else False
        ca_pem = tls["ca_data"] or (_read_file(tls["ca_file"], "certificate-authority")
                                    if wants_ca and tls["ca_file"] else None)
        fields["exec"] = parse_exec(user, cluster, ca_pem)
    elif body.get("auth-provider") is not None:
        fields["auth_provider"] = _auth_provider(user, cluster, context)
    return fields


def _auth_provider(user: Entry, cluster: dict[str, Any], context: str) -> AuthProviderConfig:
    provider = user.body["auth-provider"]
    if not isinstance(provider, dict) or not provider.get("name"):
        raise ConfigError(f"kubeconfig {user.source}: user {user.name!r} auth-provider has no name")
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user.name, "user": user.body}],
        "contexts": [{"name": context, "context": {"cluster": "cluster", "user": user.name}}],
    }
    return AuthProviderConfig(name=str(provider["name"]), document=document, context=context,
                              base_path=str(user.source.parent))


def _proxy(value: Any, where: str) -> str | None:
    """`proxy-url`: http(s) proxies are supported (CONNECT for https servers); socks5 is not."""
    if not value:
        return None
    scheme = urlsplit(str(value)).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(f"{where}: proxy-url {value!r}: only http:// and https:// proxies are supported")
    return str(value)


def _data(section: dict[str, Any], key: str, where: str) -> bytes | None:
    """A `*-data` field: the file's content in base64 (line breaks allowed, as Go's decoder allows them)."""
    value = section.get(key)
    if not value:
        return None
    try:
        return base64.b64decode("".join(str(value).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{where}: {key} is not valid base64: {exc}") from None


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


__all__ = ["AuthProviderConfig", "ClusterConfig", "ConfigError", "from_kubeconfig", "load_config"]
