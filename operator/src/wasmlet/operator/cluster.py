"""The operator's only door to the API server: watch Pods, wasm Nodes, Services and the peering
object into caches; write Pods, Services, workload status and Events. Failures leave here as
`errors.OperatorError`, never as client exceptions.

Reads come from the caches (cache.py): Pods, Nodes and Services through list-and-watch reflectors
started by `run_reflectors`, WasmWorkloads from kopf's watch (`observe_workload`). Every write puts its
answer into the cache at once, so a reconcile sees what the previous one did before the watch
reports it. The only reads that still go to the API are rare: a Node some Pod is bound to that is
not a wasm node (e.g. its agent label was removed by hand).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from wasmlet.api import keys
from wasmlet.kube import AlreadyExists, ApiError, KubeClient, NotFound
from wasmlet.kube.reflector import Reflector, ReflectorHandler
from wasmlet.kube.resources import (
    CLUSTER_KOPF_PEERINGS,
    EVENTS,
    KOPF_PEERINGS,
    NODES,
    PODS,
    SERVICES,
    WASM_WORKLOADS,
)  # fmt: skip
from wasmlet.operator import objects
from wasmlet.operator.cache import ObjectCache, PodCache, ServiceCache
from wasmlet.operator.errors import OperatorError, from_api_error
from wasmlet.operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Kubernetes' generateName alphabet (no vowels, no look-alikes), and its suffix length.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
REPORTING_COMPONENT = "wasmlet-operator"

Listener = Callable[[str | None, Json | None], None]  # (event type, object); (None, None) after a (re)list


def new_pod_name(workload: str) -> str:
    """`<workload>-<5 random chars>`, the names a ReplicaSet's generateName would give.

    The operator picks the name itself (rather than sending generateName) so that the create
    request is explicit about the object it makes; an AlreadyExists just means "pick again".
    """
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
    return f"{workload[:63 - NAME_SUFFIX_LENGTH - 1]}-{suffix}"


class Cluster:
    """API verbs and cached reads in the operator's words. `namespace` is its scope (None: all)."""

    def __init__(self, api: KubeClient, *, namespace: str | None = None, retry_seconds: float = 5.0,
                 watch_timeout: int = 300, metrics: OperatorMetrics | None = None) -> None:
        self._api = api
        self._namespace = namespace
        self._retry = retry_seconds
        self._watch_timeout = watch_timeout
        self._metrics = metrics or OperatorMetrics()
        self.pods = PodCache()
        self.nodes = ObjectCache()
        self.services = ServiceCache()
        self.workloads = ObjectCache()

    def _error(self, exc: ApiError, action: str) -> OperatorError:
        return from_api_error(exc, action, delay=self._retry)

    def _wrote(self, verb: str, plural: str) -> None:
        self._metrics.api_writes.labels(verb, plural).inc()

    # -- reads (cached) ------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Every watch has delivered its first complete listing."""
        return self.pods.synced and self.nodes.synced and self.services.synced

    def observe_workload(self, event_type: str | None, body: Json) -> bool:
        """A WasmWorkload event from kopf's watch; returns whether the cache took it."""
        if event_type == "DELETED":
            return self.workloads.delete(body) is not None
        return self.workloads.upsert(body)

    async def relist_workloads(self) -> None:
        """Replace the WasmWorkload cache with a fresh listing (after kopf's watch was paused)."""
        try:
            listing = await self._api.list(WASM_WORKLOADS, self._namespace)
        except ApiError as exc:
            raise self._error(exc, "list wasmworkloads") from exc
        self.workloads.replace(listing.get("items") or [])

    def workload(self, namespace: str, name: str) -> Json | None:
        """The WasmWorkload, or None once it is gone."""
        return self.workloads.get(namespace, name)

    def workload_pods(self, namespace: str, name: str) -> list[Json]:
        """The Pods labelled for the workload (ownership is checked by the caller)."""
        return self.pods.workload_pods(namespace, name)

    def wasm_nodes(self) -> dict[str, Json]:
        """The Nodes registered by wasmlet agents, by name."""
        return {objects.node_name(node): node for node in self.nodes.values()}

    def node_usage(self) -> tuple[Counter[str], Counter[str]]:
        """Per node: the Pods occupying it, and the memory they request (Pods the operator sees:
        all of them cluster-wide, its namespace's when namespaced)."""
        return self.pods.node_usage()

    def node_ports(self) -> dict[str, frozenset[int]]:
        """Per node: the ports its Pods hold (the Pods the operator sees, as for `node_usage`)."""
        return self.pods.node_ports()

    def reserve(self, node: str, pod_spec: Mapping[str, Any]) -> None:
        """Count a placed Pod on its node until it is created (see `PodCache.reserve`)."""
        self.pods.reserve(node, objects.pod_memory_request(pod_spec), objects.pod_ports(pod_spec))

    def unreserve(self, node: str, pod_spec: Mapping[str, Any]) -> None:
        """The placed Pod was created, or will not be."""
        self.pods.unreserve(node, objects.pod_memory_request(pod_spec), objects.pod_ports(pod_spec))

    def service(self, namespace: str, name: str) -> Json | None:
        """The Service of that name (slim unless a WasmWorkload controls it), or None."""
        return self.services.get(namespace, name)

    async def get_node(self, name: str) -> Json | None:
        """One Node straight from the API (not a wasm node, so not cached), or None if deleted."""
        try:
            return await self._api.get(NODES, name)
        except NotFound:
            return None
        except ApiError as exc:
            raise self._error(exc, f"get node {name}") from exc

    # -- writes (written through to the caches) -----------------------------------------------

    async def create_pod(self, pod: Json) -> Json:
        """Create the Pod; AlreadyExists propagates (the caller picks another name)."""
        meta = pod["metadata"]
        try:
            created = await self._api.create(PODS, pod, meta["namespace"])
        except AlreadyExists:
            raise
        except ApiError as exc:
            raise self._error(exc, f"create pod {meta['namespace']}/{meta['name']}") from exc
        finally:
            self._wrote("create", "pods")
        self.pods.upsert(created)
        return created

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None, force: bool) -> None:
        """Delete the Pod (gracefully unless `force`); the uid precondition protects a successor
        of the same name, and a Pod already gone is fine."""
        try:
            await self._api.delete(PODS, name, namespace, uid=uid, grace_period_seconds=0 if force else None)
        except NotFound:
            pass
        except ApiError as exc:
            raise self._error(exc, f"delete pod {namespace}/{name}") from exc
        finally:
            self._wrote("delete", "pods")
        self.pods.mark_deleting(namespace, name, uid)

    async def create_service(self, service: Json) -> Json:
        """Create the Service; AlreadyExists propagates (the caller's cache was behind)."""
        meta = service["metadata"]
        try:
            created = await self._api.create(SERVICES, service, meta["namespace"])
        except AlreadyExists:
            raise
        except ApiError as exc:
            raise self._error(exc, f"create service {meta['namespace']}/{meta['name']}") from exc
        finally:
            self._wrote("create", "services")
        self.services.upsert(created)
        return created

    async def patch_service(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Json:
        """JSON merge patch on the Service (its `ports` list is replaced whole)."""
        try:
            updated = await self._api.patch(SERVICES, name, dict(patch), namespace)
        except ApiError as exc:
            raise self._error(exc, f"patch service {namespace}/{name}") from exc
        finally:
            self._wrote("patch", "services")
        self.services.upsert(updated)
        return updated

    async def delete_service(self, service: Mapping[str, Any]) -> None:
        """Delete the Service; the uid precondition spares a successor of the same name (someone
        else's), and a Service already gone is fine."""
        meta = service["metadata"]
        try:
            await self._api.delete(SERVICES, meta["name"], meta["namespace"], uid=meta.get("uid"))
        except NotFound:
            pass
        except ApiError as exc:
            raise self._error(exc, f"delete service {meta['namespace']}/{meta['name']}") from exc
        finally:
            self._wrote("delete", "services")
        self.services.delete(service)

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """JSON merge patch on /status (custom resources reject strategic merge patch)."""
        try:
            updated = await self._api.patch(WASM_WORKLOADS, name, {"status": dict(patch)}, namespace,
                                            subresource="status")
        except NotFound:
            return  # deleted meanwhile: nothing left to report on
        except ApiError as exc:
            raise self._error(exc, f"patch status of {namespace}/{name}") from exc
        finally:
            self._wrote("patch", "wasmworkloads/status")
        self.workloads.upsert(updated)

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
        finally:
            self._wrote("create", "events")

    async def ensure_peering(self, name: str) -> bool:
        """Create the peering object kopf and the gate coordinate through, unless it exists: a
        ClusterKopfPeering for a cluster-wide operator, a KopfPeering in its namespace otherwise
        (kopf's choice). Returns whether it exists now; the caller tries again later if not."""
        kind = "ClusterKopfPeering" if self._namespace is None else "KopfPeering"
        body: Json = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
        try:
            if self._namespace is None:
                await self._api.create(CLUSTER_KOPF_PEERINGS, body)
            else:
                await self._api.create(KOPF_PEERINGS, body, self._namespace)
        except AlreadyExists:
            return True
        except ApiError as exc:
            log.warning("cannot create the peering object %s %s; this replica stays paused until it exists "
                        "(are crds/ installed? or run one replica with --standalone): %s", kind, name, exc)
            return False
        log.info("created the peering object %s %s", kind, name)
        return True

    # -- watches ------------------------------------------------------------------------------

    async def run_reflectors(self, on_pod: Listener, on_node: Listener, on_service: Listener,
                             peering: tuple[str, ReflectorHandler] | None = None) -> None:
        """List and watch Pods and Services (in scope), wasm Nodes and the peering object until
        cancelled. Services are watched whatever their owner, so that a workload's Service never
        takes a name that is taken, and learns when the name is free again."""
        pods = Reflector(self._api, PODS, namespace=self._namespace, watch_timeout=self._watch_timeout)
        nodes = Reflector(self._api, NODES, label_selector=f"{keys.LABEL_AGENT}=true",
                          watch_timeout=self._watch_timeout)
        services = Reflector(self._api, SERVICES, namespace=self._namespace, watch_timeout=self._watch_timeout)
        feeds: list[Coroutine[Any, Any, None]] = [
            pods.run(_Feed(self.pods, on_pod)),
            nodes.run(_Feed(self.nodes, on_node)),
            services.run(_Feed(self.services, on_service)),
        ]
        if peering is not None:
            name, handler = peering
            selected = f"metadata.name={name}"
            if self._namespace is None:
                gate = Reflector(self._api, CLUSTER_KOPF_PEERINGS, field_selector=selected,
                                 watch_timeout=self._watch_timeout)
            else:
                gate = Reflector(self._api, KOPF_PEERINGS, namespace=self._namespace, field_selector=selected,
                                 watch_timeout=self._watch_timeout)
            feeds.append(gate.run(handler))
        async with asyncio.TaskGroup() as group:
            for feed in feeds:
                group.create_task(feed)


class _Feed:
    """A reflector handler that keeps a cache and tells a listener what changed."""

    def __init__(self, cache: ObjectCache, listener: Callable[[str | None, Json | None], None]) -> None:
        self._cache = cache
        self._listener = listener

    async def replace(self, objects: list[Json]) -> None:
        self._cache.replace(objects)
        self._listener(None, None)

    async def apply(self, event_type: str, obj: Json) -> None:
        changed = self._cache.delete(obj) is not None if event_type == "DELETED" else self._cache.upsert(obj)
        if changed:
            self._listener(event_type, obj)
