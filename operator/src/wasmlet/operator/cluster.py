"""The operator's only door to the API server: read workloads, Nodes and Pods; write Pods,
workload status and Events. Failures leave here as `errors.OperatorError`, never as client
exceptions.

Every read goes to the API server (no cache): a reconcile sees the Pods the previous one
created, so two reconciles in a row never double-create. The cost is a few requests per
reconcile; an informer cache with "expectations" is the next step when that matters.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from wasmlet.api import keys
from wasmlet.kube import AlreadyExists, ApiError, KubeClient, NotFound
from wasmlet.kube.resources import EVENTS, NODES, PODS, WASM_WORKLOADS, Resource
from wasmlet.operator import objects
from wasmlet.operator.errors import OperatorError, from_api_error

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Kubernetes' generateName alphabet (no vowels, no look-alikes), and its suffix length.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
REPORTING_COMPONENT = "wasmlet-operator"


def new_pod_name(workload: str) -> str:
    """`<workload>-<5 random chars>`, the names a ReplicaSet's generateName would give.

    The operator picks the name itself (rather than sending generateName) so that the create
    request is explicit about the object it makes; an AlreadyExists just means "pick again".
    """
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
    return f"{workload[:63 - NAME_SUFFIX_LENGTH - 1]}-{suffix}"


class Cluster:
    """API verbs in the operator's words. `namespace` is the operator's scope (None: all)."""

    def __init__(self, api: KubeClient, *, namespace: str | None = None, retry_seconds: float = 5.0) -> None:
        self._api = api
        self._namespace = namespace
        self._retry = retry_seconds

    def _error(self, exc: ApiError, action: str) -> OperatorError:
        return from_api_error(exc, action, delay=self._retry)

    async def get_workload(self, namespace: str, name: str) -> Json | None:
        """The WasmWorkload, or None once it is gone."""
        try:
            return await self._api.get(WASM_WORKLOADS, name, namespace)
        except NotFound:
            return None
        except ApiError as exc:
            raise self._error(exc, f"get wasmworkload {namespace}/{name}") from exc

    async def workload_pods(self, namespace: str, name: str) -> list[Json]:
        """The Pods labelled for the workload (ownership is checked by the caller)."""
        selector = f"{keys.LABEL_WORKLOAD}={name}"
        return await self._list(PODS, namespace, selector, f"list pods of {namespace}/{name}")

    async def scope_pods(self) -> list[Json]:
        """Every Pod the operator may see, to count what already occupies each node."""
        return await self._list(PODS, self._namespace, None, "list pods")

    async def wasm_nodes(self) -> dict[str, Json]:
        """The Nodes registered by wasmlet agents, by name."""
        nodes = await self._list(NODES, None, f"{keys.LABEL_AGENT}=true", "list nodes")
        return {objects.node_name(node): node for node in nodes}

    async def get_node(self, name: str) -> Json | None:
        """One Node, or None if it was deleted."""
        try:
            return await self._api.get(NODES, name)
        except NotFound:
            return None
        except ApiError as exc:
            raise self._error(exc, f"get node {name}") from exc

    async def create_pod(self, pod: Json) -> Json:
        """Create the Pod; AlreadyExists propagates (the caller picks another name)."""
        meta = pod["metadata"]
        try:
            return await self._api.create(PODS, pod, meta["namespace"])
        except AlreadyExists:
            raise
        except ApiError as exc:
            raise self._error(exc, f"create pod {meta['namespace']}/{meta['name']}") from exc

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None, force: bool) -> None:
        """Delete the Pod (gracefully unless `force`); the uid precondition protects a successor
        of the same name, and a Pod already gone is fine."""
        try:
            await self._api.delete(PODS, name, namespace, uid=uid, grace_period_seconds=0 if force else None)
        except NotFound:
            pass
        except ApiError as exc:
            raise self._error(exc, f"delete pod {namespace}/{name}") from exc

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """JSON merge patch on /status (custom resources reject strategic merge patch)."""
        try:
            await self._api.patch(WASM_WORKLOADS, name, {"status": dict(patch)}, namespace, subresource="status")
        except NotFound:
            pass  # deleted meanwhile: nothing left to report on
        except ApiError as exc:
            raise self._error(exc, f"patch status of {namespace}/{name}") from exc

    async def record_event(self, workload: Mapping[str, Any], kind: str, reason: str, message: str, *,
                           now: datetime.datetime) -> None:
        """Post a core/v1 Event about the workload (`kubectl describe ww`). Best effort: an Event
        that cannot be posted is logged, never a reason to fail a reconcile."""
        meta = workload.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {key: value for key, value in {
                "apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND, "namespace": namespace,
                "name": meta.get("name"), "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
            }.items() if value is not None},
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": REPORTING_COMPONENT,
            "count": 1,
            "firstTimestamp": objects.format_time(now),
            "lastTimestamp": objects.format_time(now),
        }
        try:
            await self._api.create(EVENTS, event, namespace)
        except ApiError as exc:
            log.warning("cannot post event %s for %s/%s: %s", reason, namespace, meta.get("name"), exc)

    async def _list(self, resource: Resource, namespace: str | None, selector: str | None, action: str) -> list[Json]:
        try:
            listing = await self._api.list(resource, namespace, label_selector=selector)
        except ApiError as exc:
            raise self._error(exc, action) from exc
        return list(listing.get("items") or [])
