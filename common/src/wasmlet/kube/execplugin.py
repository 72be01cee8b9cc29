"""Exec credential plugins (`users[].user.exec`), run as client-go runs them.

EKS (`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`), AKS (`kubelogin`) and OIDC helpers
print an `ExecCredential` (`client.authentication.k8s.io/v1` or `v1beta1`) on stdout: a bearer
token or a client certificate and key, and maybe an `expirationTimestamp`. The caller keeps it
until then, and runs the plugin again when it expires or the API server answers 401.

The plugin's environment is ours plus its `env` plus `KUBERNETES_EXEC_INFO` (the request, with
the cluster when `provideClusterInfo` is set). wasmlet never has a terminal: stdin is closed and
`interactiveMode: Always` is refused, as client-go refuses it without one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any

from wasmlet.kube.kubeconfig import ConfigError, Entry, relative_to

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# client-go waits for a plugin without a limit; a daemon must not hang on one, so it gets this long.
EXEC_TIMEOUT_SECONDS = 120.0
STDERR_TAIL = 2000  # characters of the plugin's stderr kept in an error message

NOT_INSTALLED = ("It looks like you are trying to use a client-go credential plugin that is not installed.\n\n"
                 "To learn more about this feature, consult the documentation available at:\n"
                 "      https://kubernetes.io/docs/reference/access-authn-authz/authentication/"
                 "#client-go-credential-plugins")


class ExecError(ConfigError):
    """The plugin is missing, failed, or printed something that is not a usable ExecCredential."""


@dataclass(frozen=True)
class ExecConfig:
    """A user's `exec` section, validated."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = API_VERSIONS[0]
    install_hint: str = ""
    interactive_mode: str = "IfAvailable"
    # The `spec.cluster` handed to the plugin when it asks for it (provideClusterInfo), else None.
    cluster_info: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ExecCredential:
    """What one run of the plugin gave: a token, or a client certificate and key (PEM)."""

    token: str | None = field(default=None, repr=False)
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    expiration: dt.datetime | None = None


def parse_exec(user: Entry, cluster: dict[str, Any], ca_pem: bytes | None) -> ExecConfig:
    """The `exec` section of `user`, checked as client-go checks it; ConfigError naming the field."""
    raw = user.body.get("exec") or {}
    where = f"kubeconfig {user.source}: user {user.name!r} exec"
    api_version = raw.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise ConfigError(f"{where}: apiVersion {api_version!r} is not one of {', '.join(API_VERSIONS)}")
    command = str(raw.get("command") or "")
    if not command:
        raise ConfigError(f"{where}: command is empty")
    if os.sep in command and not os.path.isabs(command):
        command = relative_to(user, command) or command  # `./plugin` is relative to the kubeconfig
    mode = raw.get("interactiveMode") or ("" if api_version.endswith("/v1") else "IfAvailable")
    if not mode:
        raise ConfigError(f"{where}: interactiveMode must be specified for {api_version} (Never, IfAvailable or Always)")
    if mode not in ("Never", "IfAvailable", "Always"):
        raise ConfigError(f"{where}: interactiveMode must be Never, IfAvailable or Always, not {mode!r}")
    env = []
    for index, item in enumerate(raw.get("env") or []):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(f"{where}: env[{index}] needs a name")
        env.append((str(item["name"]), str(item.get("value") or "")))
    return ExecConfig(
        command=command, args=tuple(str(arg) for arg in raw.get("args") or ()), env=tuple(env),
        api_version=api_version, install_hint=str(raw.get("installHint") or ""), interactive_mode=mode,
        cluster_info=_cluster_info(cluster, ca_pem) if raw.get("provideClusterInfo") else None,
    )


async def run_exec(config: ExecConfig) -> ExecCredential:
    """Run the plugin once and return its credential; ExecError saying what went wrong."""
    if config.interactive_mode == "Always":
        raise ExecError(f"exec plugin {config.command}: interactiveMode Always needs a terminal, "
                        "and wasmlet has none; use Never or IfAvailable")
    environment = {**os.environ, **dict(config.env), "KUBERNETES_EXEC_INFO": json.dumps(_request(config))}
    try:
        process = await asyncio.create_subprocess_exec(
            config.command, *config.args, env=environment, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        hint = f"\n\n{config.install_hint}" if config.install_hint else ""
        raise ExecError(f"exec: executable {config.command} not found\n\n{NOT_INSTALLED}{hint}") from None
    except OSError as exc:
        raise ExecError(f"exec: cannot run {config.command}: {exc}") from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ExecError(f"exec: executable {config.command} did not finish within "
                        f"{EXEC_TIMEOUT_SECONDS:.0f}s") from None
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        raise ExecError(f"exec: executable {config.command} failed with exit code {process.returncode}"
                        + (f": {detail}" if detail else ""))
    return parse_credential(config, stdout)


def parse_credential(config: ExecConfig, stdout: bytes) -> ExecCredential:
    """Decode the plugin's stdout as client-go does; ExecError naming the problem."""
    where = f"exec plugin {config.command}"
    try:
        doc = json.loads(stdout)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExecError(f"{where}: decoding stdout: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ExecError(f"{where}: stdout is not an ExecCredential")
    if doc.get("apiVersion") != config.api_version:
        raise ExecError(f"{where} is configured to use API version {config.api_version}, "
                        f"plugin returned version {doc.get('apiVersion')}")
    status = doc.get("status")
    if not isinstance(status, dict):
        raise ExecError(f"{where} didn't return a status field")
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if bool(cert) != bool(key):
        raise ExecError(f"{where} returned only certificate or key, not both")
    if not token and not cert:
        raise ExecError(f"{where} didn't return a token or cert/key pair")
    return ExecCredential(token=token, client_cert_data=cert.encode() if cert else None,
                          client_key_data=key.encode() if key else None,
                          expiration=_expiration(where, status.get("expirationTimestamp")))


def _expiration(where: str, value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))  # Python 3.11 reads a trailing Z
    except ValueError:
        raise ExecError(f"{where}: expirationTimestamp {value!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _request(config: ExecConfig) -> dict[str, Any]:
    """The ExecCredential the plugin reads from KUBERNETES_EXEC_INFO."""
    spec: dict[str, Any] = {"interactive": False}
    if config.cluster_info is not None:
        spec["cluster"] = config.cluster_info
    return {"apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec}


def _cluster_info(cluster: dict[str, Any], ca_pem: bytes | None) -> dict[str, Any]:
    """`spec.cluster`: the cluster's connection fields, its CA inlined, and the exec extension's config."""
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for key in ("tls-server-name", "proxy-url", "insecure-skip-tls-verify"):
        if cluster.get(key):
            info[key] = cluster[key]
    if ca_pem:
        info["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    extension = next((item.get("extension") for item in cluster.get("extensions") or []
                      if isinstance(item, dict) and item.get("name") == "client.authentication.k8s.io/exec"), None)
    if extension is not None:
        info["config"] = extension
    return info
