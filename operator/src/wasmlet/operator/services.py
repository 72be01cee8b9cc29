"""The operator's running parts: the API client, the caches and their watches, the reconcile queue,
the peering gate and the metrics server. Built by kopf's startup handler, stopped by its cleanup
handler; kopf's own watch of WasmWorkloads feeds `workload_event`.

What makes a workload reconcile (the queue coalesces all of it):
* its WasmWorkload appeared, changed its spec (generation) or is being deleted;
* one of its Pods changed (the agent reported, someone deleted or evicted it);
* a Pod anywhere went away or finished while the workload had replicas no node fitted;
* a wasm Node changed in a way placement reads (Ready, cordon, labels, taints, allocatable) —
  agents renew their Node status every few seconds, and heartbeats alone must not cause work;
* a Service named after it changed or went away (its own, or one that took its Service's name);
* this replica became the active one (peering), or a watch had to relist: everything;
* its own request to look again later (a retry, a lost node's deadline), and the periodic resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from wasmlet.api import keys
from wasmlet.kube import ClusterConfig, KubeClient
from wasmlet.kube.backoff import Backoff
from wasmlet.kube.credentials import Credentials
from wasmlet.operator import objects
from wasmlet.operator.cluster import Cluster
from wasmlet.operator.errors import OperatorError
from wasmlet.operator.metrics import CONTENT_TYPE, OperatorMetrics
from wasmlet.operator.peering import PeeringGate, Verdict
from wasmlet.operator.queue import RETRY_CAP_SECONDS, ReconcileQueue
from wasmlet.operator.reconciler import Key, Reconciler, utcnow
from wasmlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Json = dict[str, Any]
HOLD_SYNC = "the Pod, Node and Service caches have not been listed yet"
HOLD_PEERING = "another replica may be the active one (peering)"
PEER_RECHECK_SECONDS = 5.0  # the longest the gate waits before applying the rule again


class Services:
    """Everything that runs while the operator runs. Use `start()`, then `stop()`."""

    def __init__(self, settings: OperatorSettings, api: KubeClient, *, identity: str, priority: int,
                 on_fatal: Callable[[BaseException], None]) -> None:
        self.settings = settings
        self.metrics = OperatorMetrics()
        self.cluster = Cluster(api, namespace=settings.namespace, retry_seconds=settings.retry_seconds,
                               watch_timeout=settings.watch_timeout_seconds, metrics=self.metrics)
        self.reconciler = Reconciler(self.cluster, metrics=self.metrics)
        self.queue = ReconcileQueue(self.reconciler.reconcile, resync_seconds=settings.resync_seconds,
                                    retry_seconds=settings.retry_seconds, metrics=self.metrics)
        self.gate: PeeringGate | None = None
        if not settings.standalone:
            self.gate = PeeringGate(identity=identity, priority=priority, on_change=self._peering_changed,
                                    clock=utcnow)
        self._on_fatal = on_fatal
        self._node_fingerprints: dict[str, tuple[Any, ...]] = {}
        self._resources = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None

    @classmethod
    async def start(cls, settings: OperatorSettings, config: ClusterConfig, *, identity: str, priority: int,
                    on_fatal: Callable[[BaseException], None], credentials: Credentials | None = None) -> Services:
        """Open the API client, serve metrics, and start the watches and the queue (held until the
        caches are listed and, with peering, until this replica is the active one). `credentials`
        are shared with kopf's login, so both present the same (one exec plugin run)."""
        api = KubeClient(config, user_agent="wasmlet-operator", credentials=credentials)
        services = cls(settings, api, identity=identity, priority=priority, on_fatal=on_fatal)
        await services._resources.enter_async_context(api)
        services.queue.hold(HOLD_SYNC)
        if services.gate is not None:
            services.queue.hold(HOLD_PEERING)
        else:
            services.metrics.active.set(1)
        if settings.metrics_endpoint:
            await services._serve_metrics(settings.metrics_endpoint)
        services._task = asyncio.create_task(services._run(), name="wasmlet operator services")
        services._task.add_done_callback(services._ended)
        return services

    async def stop(self) -> None:
        """Cancel the watches and the queue (reconciles in flight included), close the client."""
        if self._task is not None:
            self._task.remove_done_callback(self._ended)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._resources.aclose()

    def health(self) -> Json:
        """What the liveness endpoint reports; raises when the services died (the probe fails)."""
        if self._task is not None and self._task.done():
            raise RuntimeError("the operator's watches and reconcile queue have stopped")
        return {"active": not self.queue.held, "held": sorted(self.queue.held), "workloads": len(self.queue.known),
                "queued": len(self.queue)}

    # -- events -------------------------------------------------------------------------------

    def workload_event(self, event_type: str | None, body: Json) -> None:
        """A WasmWorkload event from kopf's watch (type None: the initial listing)."""
        meta = body.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        before = _workload_fingerprint(self.cluster.workload(*key))
        self.cluster.observe_workload(event_type, body)
        if event_type == "DELETED" or _workload_fingerprint(self.cluster.workload(*key)) != before:
            self.queue.add(key)  # a status write of our own changes nothing here: no reconcile for it

    def _pod_changed(self, event_type: str | None, pod: Json | None) -> None:
        if pod is None:  # (re)listed: anything may have changed meanwhile
            self._synced()
            self._reconcile_everything()
            return
        meta = pod.get("metadata") or {}
        workload = (meta.get("labels") or {}).get(keys.LABEL_WORKLOAD)
        if workload:
            self.queue.add((str(meta.get("namespace")), workload))
        if event_type == "DELETED" or objects.is_terminal(pod):
            for key in self.reconciler.unschedulable:  # room on a node may have been freed
                self.queue.add(key)

    def _service_changed(self, event_type: str | None, service: Json | None) -> None:
        if service is None:
            self._synced()
            self._reconcile_everything()
            return
        meta = service.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        if self.cluster.workload(*key) is not None:  # a workload's Service has the workload's name
            self.queue.add(key)

    def _node_changed(self, event_type: str | None, node: Json | None) -> None:
        if node is None:
            self._node_fingerprints = {objects.node_name(n): node_fingerprint(n) for n in self.cluster.nodes.values()}
            self._synced()
            self._reconcile_everything()
            return
        name = objects.node_name(node)
        fingerprint = None if event_type == "DELETED" else node_fingerprint(node)
        if self._node_fingerprints.get(name) == fingerprint:
            return
        if fingerprint is None:
            self._node_fingerprints.pop(name, None)
        else:
            self._node_fingerprints[name] = fingerprint
        self._reconcile_everything()

    def _synced(self) -> None:
        if self.cluster.synced:
            self.queue.release(HOLD_SYNC)

    def _peering_changed(self, active: bool, verdict: Verdict) -> None:
        self.metrics.active.set(1 if active else 0)
        if active:
            log.info("this replica is the active one (peering %s)", self.settings.peering_name)
            assert self._group is not None  # the gate is fed by a task of the group
            self._group.create_task(self._activate(), name="wasmlet activation")
        else:
            log.info("pausing: %s %s", verdict.reason, ", ".join(verdict.blockers))
            self.queue.hold(HOLD_PEERING)

    # -- tasks --------------------------------------------------------------------------------

    async def _activate(self) -> None:
        """Become the active replica: kopf's watch of WasmWorkloads was paused, and a relist does not
        report what was deleted meanwhile, so read them all once, then reconcile everything."""
        backoff = Backoff(base=self.settings.retry_seconds, cap=RETRY_CAP_SECONDS)
        while True:
            try:
                await self.cluster.relist_workloads()
                break
            except OperatorError as exc:
                delay = backoff.next()
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        if self.gate is not None and self.gate.verdict.active:
            self.queue.release(HOLD_PEERING)
            self._reconcile_everything()

    def _reconcile_everything(self) -> None:
        for body in self.cluster.workloads.values():
            meta = body.get("metadata") or {}
            self.queue.add((str(meta.get("namespace")), str(meta.get("name"))))
        self.queue.add_all()

    async def _run(self) -> None:
        peering = (self.settings.peering_name, self.gate) if self.gate is not None else None
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.queue.run(), name="wasmlet reconcile queue")
            group.create_task(self.cluster.run_reflectors(self._pod_changed, self._node_changed,
                                                          self._service_changed, peering),
                              name="wasmlet watches")
            if self.gate is not None:
                group.create_task(self._recheck_peers(self.gate), name="wasmlet peering gate")

    async def _recheck_peers(self, gate: PeeringGate) -> None:
        """Make sure the peering object exists (a namespaced operator may start before its
        namespace), and apply the rule again when time alone changes it (a peer expires)."""
        backoff = Backoff(base=self.settings.retry_seconds, cap=RETRY_CAP_SECONDS)
        exists = False
        while True:
            if not exists:
                exists = await self.cluster.ensure_peering(self.settings.peering_name)
                delay: float | None = 0.0 if exists else backoff.next()
            else:
                delay = gate.verdict.recheck_after
            await asyncio.sleep(min(PEER_RECHECK_SECONDS if exists else RETRY_CAP_SECONDS,
                                    max(0.05, delay if delay is not None else PEER_RECHECK_SECONDS)))
            gate.evaluate()
            exists = exists and gate.present

    def _ended(self, task: asyncio.Task[None]) -> None:
        error = task.exception() if not task.cancelled() else None
        if error is not None:
            log.error("the operator's services failed; stopping", exc_info=error)
            self._on_fatal(error)

    async def _serve_metrics(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get(parts.path or "/metrics", metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._resources.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 80).start()
        log.info("serving metrics at %s", endpoint)


def node_fingerprint(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What placement and lost-node handling read from a Node; heartbeats are not in it."""
    return (
        objects.node_ready(node),
        objects.node_not_ready_since(node),
        objects.is_unschedulable(node),
        tuple(sorted(objects.node_labels(node).items())),
        tuple(sorted((t.get("key"), t.get("value"), t.get("effect")) for t in objects.node_taints(node))),
        objects.node_pod_capacity(node),
        objects.node_allocatable_memory(node),
    )


def _workload_fingerprint(body: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What a reconcile of the workload depends on from its own object: not its status."""
    if body is None:
        return None
    meta = body.get("metadata") or {}
    return meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp")


