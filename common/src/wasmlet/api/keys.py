"""Names shared by the operator and the agent: API group, labels, annotations, taints."""

from __future__ import annotations

GROUP = "wasmlet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
WORKLOAD_KIND = "WasmWorkload"
WORKLOAD_PLURAL = "wasmworkloads"

# Node labels (docs/contract.md). `kubernetes.io/arch` and `kubernetes.io/os` use the values
# Krustlet established for wasm nodes, so existing nodeSelectors keep working.
WASM_ARCH = "wasm32-wasi"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_OS = "kubernetes.io/os"
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_TYPE = "type"
TYPE_WASMLET = "wasmlet"
LABEL_AGENT = f"{GROUP}/agent"
LABEL_RUNTIME_PREFIX = f"{GROUP}/runtime."

# Labels the operator puts on the Pods it owns.
LABEL_WORKLOAD = f"{GROUP}/workload"
LABEL_TEMPLATE_HASH = f"{GROUP}/template-hash"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

# Pod annotation carrying the sha256 of an http(s) module, per container.
ANNOTATION_SHA256_PREFIX = f"{GROUP}/sha256."
# Pod annotation making a container an HTTP handler (wasmlet.api.http), per container.
ANNOTATION_HTTP_PREFIX = f"{GROUP}/http."

# The taint that keeps ordinary Pods and DaemonSets off wasm nodes; wasm Pods tolerate it.
TAINT_KEY = LABEL_ARCH
TAINT_VALUE = WASM_ARCH
TAINT_EFFECTS = ("NoSchedule", "NoExecute")

# The node lifecycle controller's taints for a node that stopped reporting. Admission gives every
# Pod a 300 s toleration for them (DefaultTolerationSeconds), after which the taint manager evicts
# it; operator-built Pods tolerate them for ever instead, so the workload's
# `placement.rescheduleAfterSeconds` alone decides when replicas of a lost node go (null: never,
# for edge nodes that keep running while their link is down).
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

RUNTIMES = ("wasmer", "wasmtime")
DEFAULT_RUNTIME = "wasmer"

# Module reference schemes a container's `image` may use besides an OCI reference.
CONFIGMAP_SCHEME = "configmap://"
HTTP_SCHEMES = ("http://", "https://")
# Static Pods only (standalone mode): a path on the node, relative to the manifest's folder.
FILE_SCHEME = "file:"


def runtime_label(runtime: str) -> str:
    """The node label that says a node offers `runtime`."""
    return f"{LABEL_RUNTIME_PREFIX}{runtime}"


def http_annotation(container: str) -> str:
    """The Pod annotation that makes `container` an HTTP handler served on one of its ports."""
    return f"{ANNOTATION_HTTP_PREFIX}{container}"


def sha256_annotation(container: str) -> str:
    """The Pod annotation that pins the sha256 of `container`'s http(s) module."""
    return f"{ANNOTATION_SHA256_PREFIX}{container}"


def wasm_tolerations() -> list[dict[str, str]]:
    """Tolerations for the wasm node taints, as every wasm Pod carries them."""
    return [
        {"key": TAINT_KEY, "operator": "Equal", "value": TAINT_VALUE, "effect": effect}
        for effect in TAINT_EFFECTS
    ]


def lost_node_tolerations() -> list[dict[str, str]]:
    """Tolerations without tolerationSeconds for the not-ready/unreachable NoExecute taints."""
    return [{"key": key, "operator": "Exists", "effect": "NoExecute"} for key in (TAINT_NOT_READY, TAINT_UNREACHABLE)]
