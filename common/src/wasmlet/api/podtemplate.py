"""Build the Pod for one replica of a WasmWorkload (the Pod is the contract: docs/contract.md).

Pure: the same WasmWorkload, name and node give the same Pod. The operator creates these Pods;
the agent's standalone mode builds the very same ones from WasmWorkload manifests on disk.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from wasmlet.api import keys
from wasmlet.api.workload import Json, WasmWorkload

CONTAINER_NAME = "main"
MANAGED_BY = "wasmlet"
HASH_LENGTH = 10  # as short as Kubernetes' pod-template-hash; a collision only delays a rollout
# The name of the container port an HTTP workload serves; its Service targets the port by this name.
HTTP_PORT_NAME = "http"
# The volume through which a Pod references its module's ConfigMap (never mounted).
MODULE_VOLUME = "wasmlet-module"


def template_hash(workload: WasmWorkload, *, container_name: str = CONTAINER_NAME) -> str:
    """A short stable hash of everything that makes up the Pod template.

    It is computed from the Pod itself (without name, node, owner or the hash label), so any
    field that changes the Pod changes the hash, and fields that do not (replicas, placement,
    updateStrategy) do not.
    """
    template = _template(workload, container_name)
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def build_pod(workload: WasmWorkload, *, name: str, node_name: str | None,
              container_name: str = CONTAINER_NAME) -> Json:
    """The Pod for one replica, bound to `node_name` (None leaves binding to someone else)."""
    pod = _template(workload, container_name)
    meta = pod["metadata"] = {"name": name, **pod["metadata"]}
    meta["labels"][keys.LABEL_TEMPLATE_HASH] = template_hash(workload, container_name=container_name)
    if workload.uid:
        meta["ownerReferences"] = [owner_reference(workload)]
    if node_name is not None:
        pod["spec"] = {"nodeName": node_name, **pod["spec"]}
    return pod


def owner_reference(workload: WasmWorkload) -> Json:
    """The controller reference from a Pod to its workload: garbage collection deletes the Pods
    with the workload, and `blockOwnerDeletion` lets foreground deletion wait for them."""
    return {
        "apiVersion": keys.API_VERSION,
        "kind": keys.WORKLOAD_KIND,
        "name": workload.name,
        "uid": workload.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_labels(workload: WasmWorkload) -> dict[str, str]:
    """The labels every Pod of the workload carries (the selector plus provenance)."""
    return {keys.LABEL_WORKLOAD: workload.name, keys.LABEL_MANAGED_BY: MANAGED_BY}


def _template(workload: WasmWorkload, container_name: str) -> Json:
    """The Pod without name, node, owner and template hash: the input of `template_hash`."""
    spec = workload.spec
    module = spec.module
    annotations: dict[str, str] = {}
    if module.url is not None and module.sha256:
        annotations[keys.sha256_annotation(container_name)] = module.sha256
    if spec.http is not None:
        annotations[keys.http_annotation(container_name)] = spec.http.handler.annotation_value()
    pod_spec: Json = {
        "runtimeClassName": spec.runtime,
        "restartPolicy": spec.restart_policy,
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        # Wasm modules cannot use a ServiceAccount token, and a projected token volume would
        # be one more volume type for the agent to support. Admission still needs the SA.
        "automountServiceAccountToken": False,
        "nodeSelector": {**(spec.node_selector or {}), keys.LABEL_ARCH: keys.WASM_ARCH},
        "tolerations": keys.wasm_tolerations() + keys.lost_node_tolerations() + _copy(spec.tolerations),
        "containers": [_container(workload, container_name)],
    }
    if spec.active_deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.network == "host":
        pod_spec["hostNetwork"] = True  # the agent grants WASI sockets only to host-network Pods
    volumes = _copy(spec.volumes)
    if module.config_map is not None and all(v.get("name") != MODULE_VOLUME for v in volumes):
        # A node identity may read only the ConfigMaps its Pods reference (the Node authorizer's
        # graph knows volumes, env and envFrom, not `configmap://` images): name it in a volume.
        volumes.append({"name": MODULE_VOLUME, "configMap": {
            "name": module.config_map.name, "items": [{"key": module.config_map.key, "path": "module.wasm"}]}})
    if volumes:
        pod_spec["volumes"] = volumes
    if module.pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in module.pull_secrets]
    metadata: Json = {"namespace": workload.namespace, "labels": pod_labels(workload)}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _container(workload: WasmWorkload, container_name: str) -> Json:
    spec = workload.spec
    container: Json = {"name": container_name, "image": spec.module.reference}
    if spec.module.pull_policy:
        container["imagePullPolicy"] = spec.module.pull_policy
    if spec.http is not None:
        # A wasm Pod serves on its node's address: the port is a node port, declared as hostPort
        # so that the scheduler's NodePorts filter and Pod Security Admission see it.
        container["ports"] = [{"name": HTTP_PORT_NAME, "containerPort": spec.http.port,
                               "hostPort": spec.http.port, "protocol": "TCP"}]
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env:
        container["env"] = _copy(spec.env)
    if spec.volume_mounts:
        container["volumeMounts"] = _copy(spec.volume_mounts)
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    if spec.resources:
        container["resources"] = copy.deepcopy(spec.resources)
    return container


def _copy(items: tuple[Json, ...]) -> list[Any]:
    """Fresh copies: a built Pod is the caller's to mutate, never a view into the model."""
    return [copy.deepcopy(item) for item in items]
