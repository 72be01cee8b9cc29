"""The Service in front of an HTTP workload (`spec.http.service: true`), and what to do about the
Service of that name that exists. Pure.

The workload's Service is named after it, selects its Pods (`wasmlet.dev/workload=<name>`) and
forwards `spec.http.port` to their container port `http`. The operator owns the Services it
creates: they carry a controller ownerReference to the WasmWorkload, so garbage collection
deletes them with it, and the fields the operator sets (type, selector, ports, its labels) are
set back when someone changes them. A Service of that name without that reference is someone
else's: it is never changed nor deleted, and the workload reports `ServiceConflict` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasmlet.api import keys
from wasmlet.api.podtemplate import HTTP_PORT_NAME, owner_reference, pod_labels
from wasmlet.api.workload import WasmWorkload

Json = dict[str, Any]
# Ready reasons: the name is taken by someone else's Service; the API refused a write of ours.
SERVICE_CONFLICT = "ServiceConflict"
FAILED_SERVICE_SYNC = "FailedServiceSync"
PORT_FIELDS = ("name", "port", "targetPort", "protocol", "appProtocol")  # what the operator sets of a port


@dataclass(frozen=True)
class ServiceChange:
    """One write that brings the workload's Service in line with its spec.

    `verb` is `create` (`body`: the Service), `patch` (`body`: a JSON merge patch) or `delete`
    (`body`: the Service to delete, whose uid is the precondition); `why` ends the Event's message.
    """

    verb: str
    body: Json
    why: str


@dataclass(frozen=True)
class ServiceConflict:
    """The workload wants a Service, and its name is taken by one the workload does not control."""

    message: str


def desired_service(workload: WasmWorkload) -> Json | None:
    """The Service the workload asks for, or None when it asks for none."""
    http = workload.spec.http
    if http is None or not http.service:
        return None
    metadata: Json = {"name": workload.name, "namespace": workload.namespace, "labels": pod_labels(workload)}
    if workload.uid:
        metadata["ownerReferences"] = [owner_reference(workload)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": {keys.LABEL_WORKLOAD: workload.name},
            "ports": [{"name": HTTP_PORT_NAME, "port": http.port, "targetPort": HTTP_PORT_NAME,
                       "protocol": "TCP", "appProtocol": "http"}],
        },
    }


def is_controlled_by(service: Mapping[str, Any], workload: WasmWorkload) -> bool:
    """Whether the workload is the Service's controller (its ownerReference, by uid).

    A Service left by a deleted workload of the same name (another uid) is not this one's: it
    goes with garbage collection, and the name is free then.
    """
    for ref in (service.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == keys.WORKLOAD_KIND \
                and str(ref.get("apiVersion", "")).split("/")[0] == keys.GROUP:
            return bool(ref.get("uid") == workload.uid if workload.uid else ref.get("name") == workload.name)
    return False


def service_change(workload: WasmWorkload,
                   existing: Mapping[str, Any] | None) -> ServiceChange | ServiceConflict | None:
    """What to do about the workload's Service, given the Service of its name (None: there is
    none); None when nothing is to be done."""
    desired = desired_service(workload)
    terminating = existing is not None and bool((existing.get("metadata") or {}).get("deletionTimestamp"))
    if existing is None:
        return ServiceChange("create", desired, "spec.http.service is true") if desired is not None else None
    ours = is_controlled_by(existing, workload)
    if desired is None:
        if not ours or terminating:
            return None
        why = "spec.http.service is false" if workload.spec.http is not None else "spec.http is not set"
        return ServiceChange("delete", dict(existing), why)
    if not ours:
        return ServiceConflict(_conflict_message(workload, existing))
    if terminating:
        return None  # being deleted (a finalizer holds it): created again once it is gone
    patch = _drift(desired, existing)
    return ServiceChange("patch", patch, "it differed from spec.http") if patch else None


def _drift(desired: Json, existing: Mapping[str, Any]) -> Json | None:
    """The merge patch that sets back what the operator owns of the Service, or None."""
    want, have = desired["spec"], existing.get("spec") or {}
    spec: Json = {}
    if have.get("type") != want["type"]:
        spec["type"] = want["type"]
    selector = have.get("selector") or {}
    if selector != want["selector"]:
        spec["selector"] = {**{key: None for key in selector if key not in want["selector"]}, **want["selector"]}
    ports = [{key: port[key] for key in PORT_FIELDS if key in port} for port in have.get("ports") or []]
    if ports != want["ports"]:
        spec["ports"] = want["ports"]  # a merge patch replaces the list whole
    have_labels = (existing.get("metadata") or {}).get("labels") or {}
    labels = {key: value for key, value in desired["metadata"]["labels"].items() if have_labels.get(key) != value}
    patch: Json = {}
    if spec:
        patch["spec"] = spec
    if labels:
        patch["metadata"] = {"labels": labels}
    return patch or None


def _conflict_message(workload: WasmWorkload, existing: Mapping[str, Any]) -> str:
    meta = existing.get("metadata") or {}
    controller = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
    if controller is None:
        owner = "not controlled by this WasmWorkload"
    elif (controller.get("kind"), controller.get("name")) == (keys.WORKLOAD_KIND, workload.name):
        owner = "controlled by a deleted WasmWorkload of that name until garbage collection removes it"
    else:
        owner = f"controlled by {controller.get('kind')} {controller.get('name')}"
    return (f"service {workload.namespace}/{workload.name} exists and is {owner}; it is left alone "
            f"(delete or rename that Service, or set spec.http.service to false)")
