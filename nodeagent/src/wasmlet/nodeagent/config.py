"""AgentSettings: the agent's one settings object.

Precedence, lowest first: the defaults below < a YAML file (`--config`) < `WASMLET_*`
environment variables < command-line flags. Validated once at start; an invalid value fails
with the setting's name.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from wasmlet.nodeagent.errors import SettingsError


@dataclass(frozen=True)
class AgentSettings:
    """What one agent is and how it behaves. Field comments say why each default is what it is."""

    # The Node's name; the kubelet defaults to the hostname, and so do we.
    node_name: str = field(default_factory=socket.gethostname)
    # The address in NodeStatus; the API server reaches the kubelet API there (`kubectl logs`).
    node_ip: str = ""
    # 10250 is the kubelet's port. On a host that also runs a kubelet, configure another one.
    kubelet_port: int = 10250
    # Where the kubelet API listens; the API server reaches it at node_ip.
    kubelet_address: str = "0.0.0.0"
    # Serving certificate for the kubelet API; unset: a self-signed pair kept in state_dir/pki.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Off only for `wasmlet run`, which needs no API on a port.
    serve_kubelet_api: bool = True
    # Who may read logs, /pods, /metrics: "webhook" (a client certificate from the client CA, or a
    # bearer token the API server confirms) or "none" — an explicit opt-out for standalone use.
    kubelet_api_auth: str = "webhook"
    # What an authenticated caller may do, as the kubelet's authorization.mode: "webhook" (a
    # SubjectAccessReview per caller and subresource, as the kubelet asks) or "always-allow".
    kubelet_api_authorization: str = "webhook"
    # The CA of the API server's kubelet-client certificate. Unset: the cluster CA of the agent's
    # own credentials (its kubeconfig's certificate authority, or in a Pod the service account's
    # ca.crt), which is what signs that certificate on a kubeadm cluster.
    client_ca_file: Path | None = None
    # Desired state, module cache and container logs live here; it must survive restarts.
    state_dir: Path = Path("/var/lib/wasmlet")
    # A folder of Pod/WasmWorkload manifests to run as static Pods; with no API: standalone mode.
    manifests: Path | None = None
    # Path to a kubeconfig, or an http(s) URL (KubeEdge MetaServer). Unset: KUBECONFIG/in-cluster.
    kubeconfig: str | None = None
    # The lowest port a Pod may serve on (a wasm Pod's ports are its node's). 1024 keeps the
    # privileged ports, where a node's own daemons listen, from tenants; 1 allows every port.
    min_host_port: int = 1024
    # TLS bootstrap, as the kubelet's --bootstrap-kubeconfig: a kubeconfig path, or "in-cluster" (the
    # Pod's ServiceAccount), used only to request this node's client certificate; the node
    # kubeconfig is then written to `kubeconfig` (default state_dir/pki/kubelet.kubeconfig).
    bootstrap_kubeconfig: str | None = None
    # The kubeconfig context to use (kubectl's --context). Unset: the kubeconfig's current-context.
    context: str | None = None
    # Extra Node labels, e.g. node-role.kubernetes.io/edge="".
    node_labels: dict[str, str] = field(default_factory=dict)
    # When the agent stops, its Pods get their grace period but at most this long (the kubelet's
    # shutdownGracePeriod), so that the agent exits within ~10 s of SIGTERM whatever its Pods do.
    shutdown_grace_seconds: float = 8.0
    # The kubelet's default maxPods.
    max_pods: int = 110
    # Memory all Pods of this node may use together, in bytes: the Node's allocatable memory, and
    # the cap wasmer Pods share (a Pod without limits.memory is capped here; past it, the largest
    # ends OOMKilled). 0: all of the node's memory, as a kubelet without reservations reports it.
    allocatable_memory: int = 0
    # Runtimes this node offers, by RuntimeClass handler; each is loaded when first used.
    runtimes: tuple[str, ...] = ("wasmer", "wasmtime")
    # Lease renewal as the kubelet does it: every 10 s, valid for 40 s (nodeLeaseDurationSeconds).
    lease_duration_seconds: int = 40
    lease_renew_seconds: float = 10.0
    # NodeStatus is posted on change and at least this often (the kubelet's nodeStatusReportFrequency).
    node_status_seconds: float = 300.0
    # How often the API's Node is compared with the agent's view (one GET): a Node marked Unknown
    # by the node lifecycle controller while the link was down is corrected within this time.
    node_check_seconds: float = 60.0
    # The API endpoint is KubeEdge's MetaServer, a cache that answers from its store while the cloud
    # is away: list Pods without a field selector (filtered here), stop a Pod only on a DELETED
    # event, a deletionTimestamp, or a GET answered while writes go through (docs/kubeedge.md).
    metaserver: bool = False
    # Container log files are capped like the kubelet's containerLogMaxSize / containerLogMaxFiles.
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 3
    # How often emptyDir usage is measured against sizeLimit (the kubelet's evictionMonitoringPeriod).
    eviction_monitoring_seconds: float = 10.0
    # A module larger than this is refused before it is downloaded completely.
    module_max_bytes: int = 256 * 1024 * 1024
    # http(s) modules must be pinned by sha256 unless this is switched on.
    allow_unpinned_urls: bool = False
    # The module cache's size cap; least recently used modules no Pod holds are evicted past it.
    # 2 GiB keeps a few hundred typical modules on a small edge disk.
    module_cache_max_bytes: int = 2 * 1024 ** 3
    # The first wait of the crash-loop and image-pull back-offs, doubling to 300 s: the kubelet's
    # 10 s. Shorter only where waiting is the cost and not the point (tests, demonstrations).
    restart_backoff_seconds: float = 10.0
    # Registries (host[:port]) that may be reached over plain HTTP or with unverified TLS. Loopback
    # registries always may, as with Docker's and containerd's defaults (docs/decisions.md).
    insecure_registries: tuple[str, ...] = ()
    # "pinned": the event loop's thread stays on one CPU (moving when that one is busy) and HTTP
    # request instances run beside it, which doubles HTTP throughput (docs/http.md); "any": the
    # scheduler places every thread, as for any process.
    event_loop_cpu: str = "pinned"

    @property
    def standalone(self) -> bool:
        """No API server: run only the static Pods of `manifests`."""
        return (self.kubeconfig is None and self.bootstrap_kubeconfig is None and self.manifests is not None
                and not _cluster_env())

    def validate(self) -> AgentSettings:
        if not self.node_name or len(self.node_name) > 253:
            raise SettingsError(f"node_name: {self.node_name!r} is not a valid Node name")
        if not 0 <= self.kubelet_port <= 65535:
            raise SettingsError(f"kubelet_port: {self.kubelet_port} is not a port number")
        if self.kubelet_api_auth not in ("webhook", "none"):
            raise SettingsError(f"kubelet_api_auth: {self.kubelet_api_auth!r} is not webhook or none")
        if self.event_loop_cpu not in ("pinned", "any"):
            raise SettingsError(f"event_loop_cpu: {self.event_loop_cpu!r} is not pinned or any")
        if self.kubelet_api_authorization not in ("webhook", "always-allow"):
            raise SettingsError(f"kubelet_api_authorization: {self.kubelet_api_authorization!r} is not webhook or "
                                "always-allow")
        if self.client_ca_file is not None and not self.client_ca_file.is_file():
            raise SettingsError(f"client_ca_file: {self.client_ca_file} is not a file")
        if not 1 <= self.min_host_port <= 65535:
            raise SettingsError(f"min_host_port: {self.min_host_port} is not a port number")
        if self.bootstrap_kubeconfig is not None and (self.kubeconfig or "").startswith(("http://", "https://")):
            raise SettingsError("kubeconfig: with bootstrap_kubeconfig it is the node kubeconfig file to write, "
                                f"not a URL ({self.kubeconfig})")
        if self.shutdown_grace_seconds < 0:
            raise SettingsError(f"shutdown_grace_seconds: must not be negative, not {self.shutdown_grace_seconds}")
        if self.allocatable_memory < 0:
            raise SettingsError(f"allocatable_memory: must be a number of bytes, not {self.allocatable_memory}")
        if self.max_pods < 1:
            raise SettingsError(f"max_pods: must be at least 1, not {self.max_pods}")
        if self.module_cache_max_bytes < self.module_max_bytes:
            raise SettingsError("module_cache_max_bytes: must be at least module_max_bytes")
        unknown = [r for r in self.runtimes if r not in ("wasmer", "wasmtime")]
        if unknown:
            raise SettingsError(f"runtimes: unknown runtime(s) {unknown}; known: wasmer, wasmtime")
        if not 0 < self.restart_backoff_seconds <= 300:
            raise SettingsError(f"restart_backoff_seconds: {self.restart_backoff_seconds} is not in (0, 300]")
        if self.node_check_seconds <= 0:
            raise SettingsError(f"node_check_seconds: {self.node_check_seconds} is not positive")
        if self.lease_renew_seconds >= self.lease_duration_seconds:
            raise SettingsError("lease_renew_seconds: must be shorter than lease_duration_seconds")
        if self.manifests is not None and not self.manifests.exists():
            raise SettingsError(f"manifests: {self.manifests} does not exist")
        _check_state_dir(self.state_dir)
        return self if self.node_ip else replace(self, node_ip=_primary_ip())


def _check_state_dir(path: Path) -> None:
    """The state folder, or the nearest existing folder above it, must be a directory: found now, not
    as an error of the first task that writes there. (Whether it can be written shows when the agent
    creates its subfolders, before it starts anything.)"""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(f"state_dir: {existing} is not a directory" + (f" (for {path})" if existing != path else ""))


def load_settings(file: Path | None, env: dict[str, str], flags: dict[str, Any]) -> AgentSettings:
    """Merge defaults < file < environment < flags, coerce types, and validate."""
    values: dict[str, Any] = {}
    if file is not None:
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"config file {file}: {exc}") from exc
        if not isinstance(doc, dict):
            raise SettingsError(f"config file {file}: expected a mapping of settings")
        values.update({k.replace("-", "_"): v for k, v in doc.items()})
    known = {f.name: f for f in fields(AgentSettings)}
    for name in known:
        key = f"WASMLET_{name.upper()}"
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in flags.items() if v is not None})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    coerced = {name: _coerce(name, known[name].type, value) for name, value in values.items()}
    return AgentSettings(**coerced).validate()


def _coerce(name: str, kind: Any, value: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        if kind == "Path":
            return Path(value)
        if kind == "Path | None":
            return Path(value) if value else None
        if kind.startswith("dict"):
            return _labels(value)
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(i.strip() for i in items if i.strip())
        return value
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: {value!r} is not a valid {kind}") from exc


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    items = value.split(",") if isinstance(value, str) else list(value)
    labels = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        labels[key] = val
    return labels


def _cluster_env() -> bool:
    return bool(os.environ.get("KUBECONFIG") or os.environ.get("KUBERNETES_SERVICE_HOST"))


def _primary_ip() -> str:
    """The source address of the default route, as the kubelet picks its InternalIP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, only the route is looked up
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
