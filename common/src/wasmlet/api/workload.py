"""The WasmWorkload model: a custom resource body parsed into frozen dataclasses.

The CRD schema (crds/wasmworkloads.wasmlet.dev.yaml) is the source of truth and the API server
applies its defaults and validation. This parser applies the same defaults and checks again
because not every WasmWorkload passes an API server: the agent's standalone mode reads them from
files. A failure raises `InvalidWorkload` naming the field (`spec.module.sha256`), which the
operator turns into a `Ready=False, reason=InvalidSpec` condition.

Fields the operator reasons about are typed (module, runtime, replicas, restartPolicy, placement,
updateStrategy, nodeSelector, tolerations, http). Fields passed through to the Pod unchanged (env,
volumes, volumeMounts, resources) are checked for their Kubernetes shape and kept as JSON.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasmlet.api import keys
from wasmlet.api.http import FIELDS as HANDLER_FIELDS
from wasmlet.api.http import HttpHandler, InvalidHandler, parse_handler
from wasmlet.api.quantity import parse_quantity

Json = dict[str, Any]


class InvalidWorkload(ValueError):
    """The WasmWorkload cannot be run as written; `field_path` names the field (`spec.module.url`)."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


SHA256_RE = re.compile(r"^[a-f0-9]{64}$")
PERCENT_RE = re.compile(r"^[0-9]+%$")
SERVICE_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035 label: what a Service's name must be
MAX_NAME_LENGTH = 63  # a label value's limit: the name is the Pods' wasmlet.dev/workload label
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
NETWORKS = ("none", "host")
UPDATE_STRATEGIES = ("RollingUpdate", "Recreate")
TOLERATION_OPERATORS = ("Exists", "Equal")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "hostPath")
SPEC_FIELDS = (
    "replicas", "module", "runtime", "args", "env", "volumes", "volumeMounts", "workingDir", "resources",
    "activeDeadlineSeconds", "restartPolicy", "terminationGracePeriodSeconds", "network", "nodeSelector",
    "tolerations", "placement", "updateStrategy", "http",
)
HTTP_FIELDS = (*HANDLER_FIELDS, "service")

# Defaults, identical to the CRD's (a unit test compares them).
DEFAULT_REPLICAS = 1
DEFAULT_RESTART_POLICY = "Always"
DEFAULT_GRACE_SECONDS = 30  # the Pod default, so `kubectl delete` waits as long as for any Pod
DEFAULT_NETWORK = "none"  # WASI sockets are a capability to grant, not a default
DEFAULT_RESCHEDULE_AFTER = 60
DEFAULT_MAX_UNAVAILABLE: int | str = "25%"  # the Deployment defaults, which users know
DEFAULT_MAX_SURGE: int | str = "25%"
DEFAULT_HTTP_SERVICE = False  # a Service is a name in the namespace: the user opts in to it


@dataclass(frozen=True)
class ConfigMapModule:
    """A module stored in a ConfigMap's binaryData (or data) under `key`."""

    name: str
    key: str


@dataclass(frozen=True)
class Module:
    """Where the module comes from: exactly one of `image`, `url`, `config_map`."""

    image: str | None = None
    url: str | None = None
    sha256: str | None = None
    config_map: ConfigMapModule | None = None
    pull_policy: str | None = None
    pull_secrets: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        """The module as a Pod's `containers[].image` names it (docs/contract.md)."""
        if self.image is not None:
            return self.image
        if self.url is not None:
            return self.url
        assert self.config_map is not None  # parse() guarantees exactly one source
        return f"{keys.CONFIGMAP_SCHEME}{self.config_map.name}/{self.config_map.key}"

    @property
    def digest(self) -> str | None:
        """The digest known from the spec alone (a url's sha256, an image pinned by digest)."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.image and "@sha256:" in self.image:
            return self.image.rsplit("@", 1)[1]
        return None


@dataclass(frozen=True)
class Placement:
    """How replicas are spread, and when replicas on a lost node are replaced."""

    spread: bool = True
    reschedule_after_seconds: int | None = DEFAULT_RESCHEDULE_AFTER


@dataclass(frozen=True)
class UpdateStrategy:
    """How Pods of an old template are replaced (the Deployment vocabulary)."""

    type: str = "RollingUpdate"
    max_unavailable: int | str = DEFAULT_MAX_UNAVAILABLE
    max_surge: int | str = DEFAULT_MAX_SURGE


@dataclass(frozen=True)
class HttpSpec:
    """`spec.http`: how each replica serves HTTP (the Pods' handler contract, wasmlet.api.http),
    and whether the operator puts a Service named after the workload in front of them."""

    handler: HttpHandler
    service: bool = DEFAULT_HTTP_SERVICE

    @property
    def port(self) -> int:
        """The TCP port the replicas serve on their node's IP."""
        return self.handler.port


@dataclass(frozen=True)
class WorkloadSpec:
    """`spec` with every default applied."""

    module: Module
    replicas: int = DEFAULT_REPLICAS
    runtime: str = keys.DEFAULT_RUNTIME
    args: tuple[str, ...] = ()
    env: tuple[Json, ...] = ()
    volumes: tuple[Json, ...] = ()
    volume_mounts: tuple[Json, ...] = ()
    working_dir: str | None = None
    resources: Json | None = None
    active_deadline_seconds: int | None = None
    restart_policy: str = DEFAULT_RESTART_POLICY
    termination_grace_period_seconds: int = DEFAULT_GRACE_SECONDS
    network: str = DEFAULT_NETWORK
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Json, ...] = ()
    placement: Placement = Placement()
    update_strategy: UpdateStrategy = UpdateStrategy()
    http: HttpSpec | None = None

    @property
    def runs_to_completion(self) -> bool:
        """Job-like (OnFailure/Never): a Succeeded Pod is done, never replaced."""
        return self.restart_policy != "Always"


@dataclass(frozen=True)
class WasmWorkload:
    """One WasmWorkload: identity from `metadata`, intent from `spec`."""

    name: str
    namespace: str
    spec: WorkloadSpec
    uid: str | None = None
    generation: int | None = None

    @property
    def selector(self) -> str:
        """The label selector of this workload's Pods (status.selector, for the scale subresource)."""
        return f"{keys.LABEL_WORKLOAD}={self.name}"


def parse_workload(body: Mapping[str, Any], *, default_namespace: str = "default") -> WasmWorkload:
    """Parse a WasmWorkload body (as the API returns it, or a manifest); raise InvalidWorkload."""
    meta = _as_mapping(body.get("metadata"), "metadata")
    name = _optional_str(meta, "name", "metadata")
    if not name:
        raise InvalidWorkload("metadata.name", "is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidWorkload("metadata.name", f"must be at most {MAX_NAME_LENGTH} characters "
                              f"(it is the value of the Pods' {keys.LABEL_WORKLOAD} label)")
    kind = body.get("kind")
    if kind is not None and kind != keys.WORKLOAD_KIND:
        raise InvalidWorkload("kind", f"must be {keys.WORKLOAD_KIND}, not {kind!r}")
    spec = parse_spec(_as_mapping(body.get("spec"), "spec"))
    if spec.http is not None and spec.http.service and not SERVICE_NAME_RE.match(name):
        raise InvalidWorkload("spec.http.service", f"the Service is named after the workload, and {name!r} is not "
                              "a Service name (lowercase letters, digits and '-', starting with a letter)")
    return WasmWorkload(
        name=name,
        namespace=_optional_str(meta, "namespace", "metadata") or default_namespace,
        uid=_optional_str(meta, "uid", "metadata"),
        generation=_optional_int(meta, "generation", "metadata"),
        spec=spec,
    )


def parse_spec(spec: Mapping[str, Any], path: str = "spec") -> WorkloadSpec:
    """Parse `spec` and apply the CRD's defaults; raise InvalidWorkload naming the field."""
    _check_keys(spec, path, SPEC_FIELDS)
    replicas = _optional_int(spec, "replicas", path, minimum=0)
    deadline = _optional_int(spec, "activeDeadlineSeconds", path, minimum=1)
    grace = _optional_int(spec, "terminationGracePeriodSeconds", path, minimum=0)
    volumes = _volumes(spec, path)
    return WorkloadSpec(
        module=_module(_as_mapping(spec.get("module"), f"{path}.module", required=True), f"{path}.module"),
        replicas=DEFAULT_REPLICAS if replicas is None else replicas,
        runtime=_pick(spec, "runtime", path, keys.RUNTIMES) or keys.DEFAULT_RUNTIME,
        args=tuple(_strings(spec, "args", path)),
        env=tuple(_env(spec, path)),
        volumes=volumes,
        volume_mounts=_volume_mounts(spec, path, {v["name"] for v in volumes}),
        working_dir=_optional_str(spec, "workingDir", path),
        resources=_resources(spec, path),
        active_deadline_seconds=deadline,
        restart_policy=_pick(spec, "restartPolicy", path, RESTART_POLICIES) or DEFAULT_RESTART_POLICY,
        termination_grace_period_seconds=DEFAULT_GRACE_SECONDS if grace is None else grace,
        network=_pick(spec, "network", path, NETWORKS) or DEFAULT_NETWORK,
        node_selector=_node_selector(spec, path),
        tolerations=tuple(_tolerations(spec, path)),
        placement=_placement(spec, path),
        update_strategy=_update_strategy(spec, path),
        http=_http(spec, path),
    )


def _module(module: Mapping[str, Any], path: str) -> Module:
    _check_keys(module, path, ("image", "url", "sha256", "configMap", "pullPolicy", "pullSecrets"))
    image = _optional_str(module, "image", path)
    url = _optional_str(module, "url", path)
    sha256 = _optional_str(module, "sha256", path)
    config_map = None
    if module.get("configMap") is not None:
        cm = _as_mapping(module["configMap"], f"{path}.configMap")
        cm_name = _optional_str(cm, "name", f"{path}.configMap")
        cm_key = _optional_str(cm, "key", f"{path}.configMap")
        if not cm_name or not cm_key:
            field = "name" if not cm_name else "key"
            raise InvalidWorkload(f"{path}.configMap.{field}", "is required")
        config_map = ConfigMapModule(cm_name, cm_key)
    sources = [s for s, v in (("image", image), ("url", url), ("configMap", config_map)) if v]
    if len(sources) != 1:
        found = f"found {', '.join(sources)}" if sources else "found none"
        raise InvalidWorkload(path, f"exactly one of image, url and configMap must be set ({found})")
    if url is not None:
        if not url.startswith(keys.HTTP_SCHEMES):
            raise InvalidWorkload(f"{path}.url", "must be an http:// or https:// URL")
        if not sha256:
            raise InvalidWorkload(f"{path}.sha256", "is required with url (the module's digest is pinned)")
    if sha256 is not None:
        if url is None:
            raise InvalidWorkload(f"{path}.sha256", "is only used with url")
        if not SHA256_RE.match(sha256):
            raise InvalidWorkload(f"{path}.sha256", "must be 64 lowercase hex digits")
    secrets = []
    for i, entry in enumerate(_as_list(module.get("pullSecrets"), f"{path}.pullSecrets")):
        secret = _optional_str(_as_mapping(entry, f"{path}.pullSecrets[{i}]"), "name", f"{path}.pullSecrets[{i}]")
        if not secret:
            raise InvalidWorkload(f"{path}.pullSecrets[{i}].name", "is required")
        secrets.append(secret)
    return Module(image=image, url=url, sha256=sha256, config_map=config_map,
                  pull_policy=_pick(module, "pullPolicy", path, PULL_POLICIES), pull_secrets=tuple(secrets))


def _strings(spec: Mapping[str, Any], key: str, path: str) -> list[str]:
    items = _as_list(spec.get(key), f"{path}.{key}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidWorkload(f"{path}.{key}[{i}]", "must be a string")
    return list(items)


def _env(spec: Mapping[str, Any], path: str) -> list[Json]:
    result: list[Json] = []
    seen: set[str] = set()
    for i, entry in enumerate(_as_list(spec.get("env"), f"{path}.env")):
        where = f"{path}.env[{i}]"
        var = _as_mapping(entry, where)
        _check_keys(var, where, ("name", "value", "valueFrom"))
        name = _optional_str(var, "name", where)
        if not name:
            raise InvalidWorkload(f"{where}.name", "is required")
        if name in seen:
            raise InvalidWorkload(f"{where}.name", f"duplicate environment variable {name!r}")
        seen.add(name)
        _optional_str(var, "value", where)
        if var.get("valueFrom") is not None:
            if var.get("value") is not None:
                raise InvalidWorkload(where, "value and valueFrom are mutually exclusive")
            source = _as_mapping(var["valueFrom"], f"{where}.valueFrom")
            refs = [k for k in ("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef") if k in source]
            if len(refs) != 1 or len(source) != 1:
                raise InvalidWorkload(f"{where}.valueFrom", "must set exactly one of configMapKeyRef, "
                                      "secretKeyRef, fieldRef and resourceFieldRef")
        result.append(copy.deepcopy(dict(var)))
    return result


def _volumes(spec: Mapping[str, Any], path: str) -> tuple[Json, ...]:
    result: list[Json] = []
    for i, entry in enumerate(_as_list(spec.get("volumes"), f"{path}.volumes")):
        where = f"{path}.volumes[{i}]"
        volume = _as_mapping(entry, where)
        name = _optional_str(volume, "name", where)
        if not name:
            raise InvalidWorkload(f"{where}.name", "is required")
        if any(v["name"] == name for v in result):
            raise InvalidWorkload(f"{where}.name", f"duplicate volume {name!r}")
        sources = [k for k in volume if k != "name"]
        if len(sources) != 1 or sources[0] not in VOLUME_SOURCES:
            raise InvalidWorkload(where, f"must set exactly one of {', '.join(VOLUME_SOURCES)}")
        _as_mapping(volume[sources[0]], f"{where}.{sources[0]}")
        if sources[0] == "hostPath" and not _optional_str(volume["hostPath"], "path", f"{where}.hostPath"):
            raise InvalidWorkload(f"{where}.hostPath.path", "is required")
        result.append(copy.deepcopy(dict(volume)))
    return tuple(result)


def _volume_mounts(spec: Mapping[str, Any], path: str, volumes: set[str]) -> tuple[Json, ...]:
    result: list[Json] = []
    for i, entry in enumerate(_as_list(spec.get("volumeMounts"), f"{path}.volumeMounts")):
        where = f"{path}.volumeMounts[{i}]"
        mount = _as_mapping(entry, where)
        name = _optional_str(mount, "name", where)
        mount_path = _optional_str(mount, "mountPath", where)
        if not name or not mount_path:
            raise InvalidWorkload(f"{where}.{'name' if not name else 'mountPath'}", "is required")
        if name not in volumes:
            raise InvalidWorkload(f"{where}.name", f"no volume named {name!r} in spec.volumes")
        result.append(copy.deepcopy(dict(mount)))
    return tuple(result)


def _resources(spec: Mapping[str, Any], path: str) -> Json | None:
    if spec.get("resources") is None:
        return None
    resources = _as_mapping(spec["resources"], f"{path}.resources")
    _check_keys(resources, f"{path}.resources", ("limits", "requests"))
    for part in ("limits", "requests"):
        quantities = _as_mapping(resources.get(part), f"{path}.resources.{part}")
        for name, value in quantities.items():
            try:
                if not isinstance(value, (int, str)):
                    raise ValueError(value)
                parse_quantity(value)
            except ValueError:
                raise InvalidWorkload(f"{path}.resources.{part}.{name}", "must be a quantity (e.g. 64Mi, 500m)") from None
    return copy.deepcopy(dict(resources))


def _node_selector(spec: Mapping[str, Any], path: str) -> Mapping[str, str] | None:
    selector = _string_map(spec, "nodeSelector", path)
    arch = (selector or {}).get(keys.LABEL_ARCH)
    if arch is not None and arch != keys.WASM_ARCH:
        # Every wasm Pod selects wasm nodes; another arch would make the workload unplaceable.
        raise InvalidWorkload(f"{path}.nodeSelector", f"{keys.LABEL_ARCH} must be {keys.WASM_ARCH} if set")
    return selector


def _tolerations(spec: Mapping[str, Any], path: str) -> list[Json]:
    result: list[Json] = []
    for i, entry in enumerate(_as_list(spec.get("tolerations"), f"{path}.tolerations")):
        where = f"{path}.tolerations[{i}]"
        toleration = _as_mapping(entry, where)
        _check_keys(toleration, where, ("key", "operator", "value", "effect", "tolerationSeconds"))
        operator = _pick(toleration, "operator", where, TOLERATION_OPERATORS) or "Equal"
        _pick(toleration, "effect", where, TAINT_EFFECTS)
        _optional_str(toleration, "key", where)
        _optional_str(toleration, "value", where)
        _optional_int(toleration, "tolerationSeconds", where)
        if operator == "Exists" and toleration.get("value"):
            raise InvalidWorkload(f"{where}.value", "must be empty when operator is Exists")
        if not toleration.get("key") and operator != "Exists":
            raise InvalidWorkload(f"{where}.operator", "must be Exists when key is empty")
        result.append(copy.deepcopy(dict(toleration)))
    return result


def _placement(spec: Mapping[str, Any], path: str) -> Placement:
    where = f"{path}.placement"
    placement = _as_mapping(spec.get("placement"), where)
    _check_keys(placement, where, ("spread", "rescheduleAfterSeconds"))
    spread = placement.get("spread", True)
    if not isinstance(spread, bool):
        raise InvalidWorkload(f"{where}.spread", "must be true or false")
    if "rescheduleAfterSeconds" in placement and placement["rescheduleAfterSeconds"] is None:
        reschedule = None  # explicit null: never replace replicas of a NotReady node (edge links drop)
    else:
        value = _optional_int(placement, "rescheduleAfterSeconds", where, minimum=0)
        reschedule = DEFAULT_RESCHEDULE_AFTER if value is None else value
    return Placement(spread=spread, reschedule_after_seconds=reschedule)


def _update_strategy(spec: Mapping[str, Any], path: str) -> UpdateStrategy:
    where = f"{path}.updateStrategy"
    strategy = _as_mapping(spec.get("updateStrategy"), where)
    _check_keys(strategy, where, ("type", "rollingUpdate"))
    kind = _pick(strategy, "type", where, UPDATE_STRATEGIES) or "RollingUpdate"
    rolling = _as_mapping(strategy.get("rollingUpdate"), f"{where}.rollingUpdate")
    if rolling and kind != "RollingUpdate":
        raise InvalidWorkload(f"{where}.rollingUpdate", "may only be set when type is RollingUpdate")
    _check_keys(rolling, f"{where}.rollingUpdate", ("maxUnavailable", "maxSurge"))
    unavailable = _int_or_percent(rolling, "maxUnavailable", f"{where}.rollingUpdate", DEFAULT_MAX_UNAVAILABLE)
    surge = _int_or_percent(rolling, "maxSurge", f"{where}.rollingUpdate", DEFAULT_MAX_SURGE)
    if unavailable in (0, "0%") and surge in (0, "0%"):
        raise InvalidWorkload(f"{where}.rollingUpdate", "maxUnavailable and maxSurge must not both be 0")
    return UpdateStrategy(type=kind, max_unavailable=unavailable, max_surge=surge)


def _http(spec: Mapping[str, Any], path: str) -> HttpSpec | None:
    """`spec.http`, checked by the very parser the agent applies to the Pods' annotation."""
    if spec.get("http") is None:
        return None
    where = f"{path}.http"
    settings = _as_mapping(spec["http"], where)
    _check_keys(settings, where, HTTP_FIELDS)
    service = settings.get("service", DEFAULT_HTTP_SERVICE)
    if not isinstance(service, bool):
        raise InvalidWorkload(f"{where}.service", "must be true or false")
    try:
        handler = parse_handler({key: value for key, value in settings.items() if key != "service"})
    except InvalidHandler as exc:
        raise InvalidWorkload(f"{where}.{exc.field}", exc.message) from None
    return HttpSpec(handler=handler, service=service)


# -- shape checks (each raises InvalidWorkload naming the field) ---------------------------------


def _as_mapping(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    """`value` as an object; absent (None) is an empty object unless `required`."""
    if value is None:
        if required:
            raise InvalidWorkload(path, "is required")
        return {}
    if not isinstance(value, Mapping):
        raise InvalidWorkload(path, "must be an object")
    return value


def _as_list(value: Any, path: str) -> list[Any]:
    """`value` as a list; absent (None) is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidWorkload(path, "must be a list")
    return value


def _check_keys(obj: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    """Reject unknown fields: a typo (`sha265`) must not be silently ignored."""
    unknown = [str(key) for key in obj if key not in allowed]
    if len(unknown) == 1:
        raise InvalidWorkload(f"{path}.{unknown[0]}", f"unknown field (expected one of {', '.join(allowed)})")
    if unknown:  # every typo at once, not one per attempt
        raise InvalidWorkload(path, f"unknown fields {', '.join(unknown)} (expected one of {', '.join(allowed)})")


def _optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """A string field, or None when absent."""
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidWorkload(f"{path}.{key}", "must be a string")
    return value


def _optional_int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int | None = None) -> int | None:
    """An integer field (bool is not an integer here), or None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWorkload(f"{path}.{key}", "must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidWorkload(f"{path}.{key}", f"must be >= {minimum}")
    return value


def _pick(obj: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...]) -> str | None:
    """An enum field, or None when absent."""
    value = _optional_str(obj, key, path)
    if value is not None and value not in choices:
        raise InvalidWorkload(f"{path}.{key}", f"must be one of {', '.join(choices)} (got {value!r})")
    return value


def _string_map(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    """A map of strings (labels, nodeSelector), or None when absent."""
    if obj.get(key) is None:
        return None
    value = _as_mapping(obj[key], f"{path}.{key}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise InvalidWorkload(f"{path}.{key}.{k}", "must be a string")
    return dict(value)


def _int_or_percent(obj: Mapping[str, Any], key: str, path: str, default: int | str) -> int | str:
    """An IntOrString as Deployments use it: a count (>= 0) or a percentage such as `25%`."""
    value = obj.get(key, default)
    if isinstance(value, bool):
        raise InvalidWorkload(f"{path}.{key}", "must be an integer or a percentage")
    if isinstance(value, int):
        if value < 0:
            raise InvalidWorkload(f"{path}.{key}", "must be >= 0")
        return value
    if isinstance(value, str) and PERCENT_RE.match(value):
        return value
    raise InvalidWorkload(f"{path}.{key}", f"must be an integer or a percentage such as 25% (got {value!r})")
