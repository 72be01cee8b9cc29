"""Read a Pod into the plan the agent runs (pure: no I/O).

This is where the Pod contract (docs/contract.md) is interpreted: module references, argv,
memory limits, volumes. Anything the agent cannot honour raises `UnsupportedPod` with the
field's path, so the Pod fails with a precise reason instead of sitting Pending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from wasmlet.api import keys, quantity
from wasmlet.api.http import HttpHandler, InvalidHandler, parse_handler
from wasmlet.nodeagent.errors import UnsupportedPod
from wasmlet.nodeagent.oci.reference import InvalidReference, default_pull_policy, parse_reference

SUPPORTED_VOLUMES = ("configMap", "secret", "emptyDir", "hostPath", "downwardAPI", "projected",
                     "persistentVolumeClaim")
PROTOCOLS = ("TCP", "UDP", "SCTP")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@dataclass(frozen=True)
class ModuleRef:
    """Where a container's module comes from: `kind` is oci, http, configmap or file."""

    kind: str
    ref: str
    sha256: str | None = None


@dataclass(frozen=True)
class ContainerPort:
    """One `ports[]` entry: on a wasm node it is a port of the node's own address."""

    port: int
    protocol: str = "TCP"
    name: str = ""
    host_port: int | None = None  # equal to `port` when declared: a wasm Pod cannot remap a port


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    module: ModuleRef
    argv: list[str]
    env: list[dict[str, Any]]
    env_from: list[dict[str, Any]]
    volume_mounts: list[dict[str, Any]]
    working_dir: str | None
    memory_limit_bytes: int | None
    image_pull_policy: str
    init: bool = False
    cpu_limit: float | None = None  # cores
    ports: tuple[ContainerPort, ...] = ()
    http: HttpHandler | None = None  # an HTTP handler: one instance per request (docs/http.md)
    probes: dict[str, Any] = field(default_factory=dict)  # startupProbe/livenessProbe/readinessProbe as written


@dataclass(frozen=True)
class PodPlan:
    uid: str
    namespace: str
    name: str
    runtime: str
    restart_policy: str
    containers: list[ContainerPlan]
    init_containers: list[ContainerPlan]
    volumes: list[dict[str, Any]]
    grace_seconds: int
    active_deadline_seconds: int | None
    network: bool
    labels: dict[str, str] = field(default_factory=dict)
    source_dir: str | None = None
    # spec.imagePullSecrets names: Secrets in the Pod's namespace with registry credentials.
    image_pull_secrets: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def tcp_ports(self) -> list[int]:
        """The node ports this Pod needs: every TCP port of its containers."""
        return sorted({p.port for c in self.containers for p in c.ports if p.protocol == "TCP"})


def parse_pod(pod: dict[str, Any], default_runtime: str = keys.DEFAULT_RUNTIME,
              allow_file_modules: bool = False) -> PodPlan:
    """Turn a Pod object into a PodPlan, or raise UnsupportedPod naming the offending field."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    if not spec.get("containers"):
        raise UnsupportedPod("spec.containers: a Pod needs at least one container", reason="InvalidPod")
    volumes = list(spec.get("volumes") or [])
    for index, volume in enumerate(volumes):
        kind = volume_type(volume)
        if kind not in SUPPORTED_VOLUMES:
            raise UnsupportedPod(f"spec.volumes[{index}] ({volume.get('name')!r}): volume type {kind!r} is not "
                                 f"supported by wasmlet; supported: {', '.join(SUPPORTED_VOLUMES)}",
                                 reason="UnsupportedVolume")
    names = {v.get("name") for v in volumes}

    def plan(c: dict[str, Any], path: str, init: bool) -> ContainerPlan:
        return _container(c, path, annotations, names, init, allow_file_modules)

    containers = [plan(c, f"spec.containers[{i}]", False) for i, c in enumerate(spec["containers"])]
    _check_http_annotations(annotations, {c.name for c in containers})
    restart = spec.get("restartPolicy") or "Always"
    if restart not in ("Always", "OnFailure", "Never"):
        raise UnsupportedPod(f"spec.restartPolicy: {restart!r} is not Always, OnFailure or Never", reason="InvalidPod")
    deadline = spec.get("activeDeadlineSeconds")
    return PodPlan(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        runtime=str(spec.get("runtimeClassName") or default_runtime),
        restart_policy=restart,
        containers=containers,
        init_containers=[plan(c, f"spec.initContainers[{i}]", True)
                         for i, c in enumerate(spec.get("initContainers") or [])],
        volumes=volumes,
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
        active_deadline_seconds=int(deadline) if deadline is not None else None,
        network=bool(spec.get("hostNetwork")),
        labels=dict(meta.get("labels") or {}),
        image_pull_secrets=tuple(str(s.get("name")) for s in spec.get("imagePullSecrets") or []
                                 if isinstance(s, dict) and s.get("name")),
    )


def parse_module_ref(image: str, sha256: str | None = None, allow_file: bool = False) -> ModuleRef:
    """Classify a container image string: `configmap://NAME/KEY`, an http(s) URL (pinned by the
    `wasmlet.dev/sha256.<container>` annotation), `file:PATH` (static Pods only) or an OCI reference."""
    if image.startswith(keys.CONFIGMAP_SCHEME):
        name, sep, key = image[len(keys.CONFIGMAP_SCHEME):].partition("/")
        if not name or not sep or not key:
            raise UnsupportedPod(f"image {image!r}: expected configmap://<name>/<key>", reason="InvalidImageName")
        return ModuleRef("configmap", f"{name}/{key}")
    if image.startswith(keys.HTTP_SCHEMES):
        if sha256 is not None and not re.fullmatch(r"[a-f0-9]{64}", sha256):
            raise UnsupportedPod(f"image {image!r}: the sha256 annotation is not 64 hex digits", reason="InvalidImageName")
        return ModuleRef("http", image, sha256)
    if image.startswith(keys.FILE_SCHEME):
        if not allow_file:
            raise UnsupportedPod(f"image {image!r}: file: modules are only allowed in static Pods",
                                 reason="InvalidImageName")
        return ModuleRef("file", image[len(keys.FILE_SCHEME):])
    if allow_file and image.startswith(("/", "./", "../")):
        raise UnsupportedPod(f"image {image!r} is a file path, not an image reference: a static Pod names a module "
                             f"file as {keys.FILE_SCHEME}{image} (relative to its manifest)", reason="InvalidImageName")
    try:
        parse_reference(image)
    except InvalidReference as exc:
        raise UnsupportedPod(f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                             f'"{image}": {exc}', reason="InvalidImageName") from exc
    return ModuleRef("oci", image)


def parse_quantity(value: Any, path: str) -> float:
    """A Kubernetes quantity (`128Mi`, `1G`, `500m`) as a number of base units; the field's path on error."""
    try:
        return quantity.parse_quantity(value)
    except ValueError as exc:
        raise UnsupportedPod(f"{path}: {exc}", reason="InvalidPod") from exc


def _container(c: dict[str, Any], path: str, annotations: dict[str, str], volume_names: set[Any],
               init: bool, allow_file: bool) -> ContainerPlan:
    name = str(c.get("name") or "")
    if not name:
        raise UnsupportedPod(f"{path}.name: every container needs a name", reason="InvalidPod")
    image = str(c.get("image") or "")
    if not image:
        # The API server's words for it; the kubelet validates a static Pod the same way.
        raise UnsupportedPod(f"{path}.image: Required value: container {name!r} names no module", reason="InvalidImageName")
    module = parse_module_ref(image, annotations.get(keys.sha256_annotation(name)), allow_file)
    limits = (c.get("resources") or {}).get("limits") or {}
    memory = limits.get("memory")
    cpu = limits.get("cpu")
    for index, mount in enumerate(c.get("volumeMounts") or []):
        if mount.get("name") not in volume_names:
            raise UnsupportedPod(f"{path}.volumeMounts[{index}]: no volume named {mount.get('name')!r}",
                                 reason="InvalidPod")
        mount_path = str(mount.get("mountPath") or "")
        if not mount_path.startswith("/") or ".." in mount_path.split("/"):
            raise UnsupportedPod(f"{path}.volumeMounts[{index}].mountPath {mount_path!r} must be an absolute "
                                 "path without '..'", reason="InvalidPod")
    # Kubernetes semantics: `command` replaces the entrypoint, `args` its arguments. A module has
    # one entrypoint (_start), so argv[0] is the command's first word or else the container name.
    command = [str(a) for a in c.get("command") or []]
    args = [str(a) for a in c.get("args") or []]
    argv = (command or [name]) + args
    default_policy = default_pull_policy(image) if module.kind == "oci" else "IfNotPresent"
    ports = _ports(c, path)
    http = None if init else _http_handler(annotations, name, ports)
    return ContainerPlan(
        name=name,
        module=module,
        argv=argv,
        env=list(c.get("env") or []),
        env_from=list(c.get("envFrom") or []),
        volume_mounts=list(c.get("volumeMounts") or []),
        working_dir=c.get("workingDir") or None,
        memory_limit_bytes=int(parse_quantity(memory, f"{path}.resources.limits.memory")) if memory else None,
        image_pull_policy=str(c.get("imagePullPolicy") or default_policy),
        init=init,
        cpu_limit=parse_quantity(cpu, f"{path}.resources.limits.cpu") if cpu else None,
        ports=ports,
        http=http,
        probes={k: c[k] for k in PROBES if c.get(k) is not None},
    )


def _ports(c: dict[str, Any], path: str) -> tuple[ContainerPort, ...]:
    ports: list[ContainerPort] = []
    for index, entry in enumerate(c.get("ports") or []):
        where = f"{path}.ports[{index}]"
        if not isinstance(entry, dict):
            raise UnsupportedPod(f"{where}: must be an object", reason="InvalidPod")
        number = entry.get("containerPort")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise UnsupportedPod(f"{where}.containerPort: must be a port number from 1 to 65535, not {number!r}",
                                 reason="InvalidPod")
        protocol = entry.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise UnsupportedPod(f"{where}.protocol: must be one of {', '.join(PROTOCOLS)}, not {protocol!r}",
                                 reason="InvalidPod")
        host = entry.get("hostPort")
        if host is not None and host != number:
            # As kube-apiserver validates hostNetwork Pods: the Pod listens on the node's own address.
            raise UnsupportedPod(f"{where}.hostPort: must match containerPort ({number}), not {host!r}: a wasm Pod "
                                 "shares its node's network", reason="InvalidPod")
        ports.append(ContainerPort(number, protocol, str(entry.get("name") or ""), host))
    return tuple(ports)


def _http_handler(annotations: dict[str, str], container: str, ports: tuple[ContainerPort, ...]) -> HttpHandler | None:
    key = keys.http_annotation(container)
    if key not in annotations:
        return None
    where = f"metadata.annotations[{key!r}]"
    try:
        handler = parse_handler(annotations[key])
    except InvalidHandler as exc:
        field_path = where if exc.field == "annotation" else f"{where}.{exc.field}"
        raise UnsupportedPod(f"{field_path}: {exc.message}", reason="InvalidHttpHandler") from None
    if not any(p.port == handler.port and p.protocol == "TCP" for p in ports):
        declared = ", ".join(f"{p.port}/{p.protocol}" for p in ports) or "none"
        raise UnsupportedPod(f"{where}.port: {handler.port} is not a TCP containerPort of container {container!r} "
                             f"(its ports: {declared})", reason="InvalidHttpHandler")
    if not any(p.port == handler.port and p.host_port == handler.port for p in ports):
        raise UnsupportedPod(f"{where}.port: {handler.port} is served on the node's address, so container "
                             f"{container!r} must declare it as hostPort: {handler.port} (the node port the "
                             "scheduler and Pod Security Admission see)", reason="HostPortRequired")
    return handler


def _check_http_annotations(annotations: dict[str, str], containers: set[str]) -> None:
    """An HTTP annotation must name a (regular) container of the Pod: a typo must not pass silently."""
    for key in annotations:
        if key.startswith(keys.ANNOTATION_HTTP_PREFIX) and key[len(keys.ANNOTATION_HTTP_PREFIX):] not in containers:
            raise UnsupportedPod(f"metadata.annotations[{key!r}]: the Pod has no container named "
                                 f"{key[len(keys.ANNOTATION_HTTP_PREFIX):]!r} (init containers cannot serve HTTP)",
                                 reason="InvalidHttpHandler")


def volume_type(volume: dict[str, Any]) -> str:
    """A Pod volume's type: its one key besides `name` (`emptyDir` when it names none)."""
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else "emptyDir"
