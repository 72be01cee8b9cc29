"""The reconcile service: read one workload's world, plan, place, apply (Pods, then the Service of
an HTTP workload), report status.

Idempotent and level-based: it decides from the cached state of the workload, its Pods and the
Nodes each time (cluster.py keeps the caches current, the operator's own writes included), so it
may run any number of times, for any reason (a change, a Pod event, a Node event, a timer), and a
pass over an unchanged world writes nothing. The caller guarantees that one workload is never
reconciled by two tasks at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlet.api.podtemplate import build_pod
from wasmlet.api.workload import InvalidWorkload, WasmWorkload, parse_workload
from wasmlet.kube import AlreadyExists
from wasmlet.operator import exposure, objects, placement, planning
from wasmlet.operator.cluster import Cluster, new_pod_name
from wasmlet.operator.errors import OperatorError, RetryableError
from wasmlet.operator.events import notices
from wasmlet.operator.metrics import OperatorMetrics
from wasmlet.operator.status import Problems, invalid_status, status_patch, workload_status

log = logging.getLogger(__name__)

Json = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
NAME_ATTEMPTS = 3  # random 5-char suffixes collide rarely; three misses in a row means a bug
# A new replica cannot surge onto a node where an old one holds its port (Deployments with a hostPort
# stall alike); Kubernetes' answer is the DaemonSet's default strategy, said where the user looks.
PORT_SURGE_HINT = ("Old replicas hold the port until they are replaced: without a spare node, set "
                   "updateStrategy.rollingUpdate to maxSurge: 0, maxUnavailable: 1 (or type: Recreate).")
# Replacing failed replicas backs off like the kubelet's crash loop: 10 s doubling to 5 minutes.
FAILURE_BACKOFF_SECONDS = 10.0
FAILURE_BACKOFF_CAP_SECONDS = 300.0


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware (the reconciler's default clock)."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Outcome:
    """What the caller should do next: look again after `requeue_after` seconds; forget a gone key."""

    requeue_after: float | None = None
    gone: bool = False


@dataclass
class _Failures:
    """Failed replicas of one template replaced in a row; the next replacement waits until `not_before`."""

    template_hash: str
    count: int = 0
    not_before: datetime.datetime | None = None
    last: str = ""


class Reconciler:
    """Brings one WasmWorkload's Pods in line with its spec, then writes its status."""

    def __init__(self, cluster: Cluster, *, metrics: OperatorMetrics | None = None,
                 clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self._cluster = cluster
        self._metrics = metrics or OperatorMetrics()
        self._clock = clock
        self._failures: dict[Key, _Failures] = {}
        self._unschedulable: set[Key] = set()

    @property
    def unschedulable(self) -> frozenset[Key]:
        """Workloads whose last pass found replicas that no node fits."""
        return frozenset(self._unschedulable)

    def forget(self, key: Key) -> None:
        """The workload is gone: drop what is remembered about it."""
        self._failures.pop(key, None)
        self._unschedulable.discard(key)
        self._metrics.unschedulable.set(len(self._unschedulable))

    async def reconcile(self, key: Key) -> Outcome:
        """One pass for the workload `key`; raises OperatorError after reporting it in status."""
        namespace, name = key
        body = self._cluster.workload(namespace, name)
        if body is None:
            self.forget(key)
            return Outcome(gone=True)
        if body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()  # being deleted: garbage collection removes the Pods
        now = self._clock()
        try:
            workload = parse_workload(body, default_namespace=namespace)
        except InvalidWorkload as exc:
            await self._report(body, invalid_status(body, exc, now=now), now)
            return self._outcome(key, body, None)
        pods = [p for p in self._cluster.workload_pods(namespace, name)
                if objects.is_controlled_by(p, name, workload.uid)]
        wasm_nodes, known_nodes = await self._nodes(pods)
        failures = self._failures.get(key)
        plan = planning.plan(workload, pods, known_nodes, now,
                             replace_failed_after=failures.not_before if failures else None)
        failures = self._count_failures(key, plan, now)
        deleted = await self._delete(body, plan.delete, now)
        created, problems, error = await self._create(workload, body, plan, wasm_nodes, now)
        service_problem, service_error = await self._sync_service(workload, body, now)
        error = error or service_error
        if problems.unschedulable is None:
            self._unschedulable.discard(key)
        else:
            self._unschedulable.add(key)
        self._metrics.unschedulable.set(len(self._unschedulable))
        if failures is not None and failures.count:
            problems = dataclasses.replace(problems, failing=failures.last)
        problems = dataclasses.replace(problems, service=service_problem)
        after = [p for p in pods if objects.pod_name(p) not in deleted] + created
        status = workload_status(workload, after, plan.template_hash, problems=problems,
                                 previous=body.get("status"), now=now)
        if _condition(status, "Ready").get("status") == "True":
            self._failures.pop(key, None)  # running as wanted: the next failure is replaced at once
        strategy = "Recreate" if workload.spec.runs_to_completion else workload.spec.update_strategy.type
        await self._report(body, status, now, strategy=strategy)
        if error is not None:
            raise error
        return self._outcome(key, body, plan.requeue_after)

    def _outcome(self, key: Key, body: Mapping[str, Any], requeue_after: float | None) -> Outcome:
        """Look again after `requeue_after`, or at once if the spec changed during this pass."""
        if spec_changed_meanwhile(body, self._cluster.workload(*key)):
            return Outcome(requeue_after=0.0)
        return Outcome(requeue_after=requeue_after)

    async def _nodes(self, pods: Sequence[Mapping[str, Any]]) -> tuple[list[Json], dict[str, Json]]:
        """The wasm nodes (placement candidates), and every node the Pods are bound to."""
        wasm = self._cluster.wasm_nodes()
        known = dict(wasm)
        for name in {objects.pod_node(p) for p in pods if not objects.is_terminal(p)} - set(wasm) - {None}:
            assert name is not None
            node = await self._cluster.get_node(name)  # e.g. an agent label removed by hand
            if node is not None:
                known[name] = node
        return list(wasm.values()), known

    def _count_failures(self, key: Key, plan: planning.Plan, now: datetime.datetime) -> _Failures | None:
        """Back off the replacement of failed replicas: the first goes at once, then 10 s, 20 s, …"""
        record = self._failures.get(key)
        if record is not None and record.template_hash != plan.template_hash:
            del self._failures[key]  # a new template starts afresh
            record = None
        if not plan.failed:
            return record
        if record is None:
            record = self._failures[key] = _Failures(plan.template_hash)
        failed_names = {objects.pod_name(p) for p in plan.failed}
        replaced = sum(1 for deletion in plan.delete if deletion.name in failed_names)
        if replaced:
            record.count += replaced
            delay = min(FAILURE_BACKOFF_CAP_SECONDS, FAILURE_BACKOFF_SECONDS * 2 ** (record.count - 1))
            record.not_before = now + datetime.timedelta(seconds=delay)
        pod = plan.failed[0]
        reason, message = objects.failure(pod)
        record.last = (f"{record.count} failed replica(s) replaced since the workload was last ready; last: "
                       f"pod {objects.pod_name(pod)}: {reason}" + (f": {message}" if message else ""))
        return record

    async def _delete(self, body: Mapping[str, Any], deletions: Sequence[planning.Deletion],
                      now: datetime.datetime) -> set[str]:
        namespace = body["metadata"]["namespace"]
        for deletion in deletions:
            await self._cluster.delete_pod(namespace, deletion.name, uid=deletion.uid, force=deletion.force)
            self._metrics.deletions.labels(deletion.cause).inc()
            await self._cluster.record_event(body, "Normal", "SuccessfulDelete",
                                             f"Deleted pod: {deletion.name} ({deletion.reason})", now=now)
        return {d.name for d in deletions}

    async def _create(self, workload: WasmWorkload, body: Mapping[str, Any], plan: planning.Plan,
                      nodes: list[Json], now: datetime.datetime
                      ) -> tuple[list[Json], Problems, OperatorError | None]:
        """Place and create `plan.create` Pods; stop at the first failure and return it."""
        if plan.create == 0:
            return [], Problems(), None
        template = build_pod(workload, name="", node_name=None)["spec"]
        load, memory = self._cluster.node_usage()
        where = placement.place(plan.create, template, nodes, load=load, memory=memory,
                                ports=self._cluster.node_ports(), replicas_on=plan.replicas_on,
                                spread=workload.spec.placement.spread)
        unschedulable = None
        if where.unplaced:
            unschedulable = f"{where.unplaced} of {workload.spec.replicas} replica(s) cannot be placed: {where.message}"
            if placement.PORTS_IN_USE in where.rejections and objects.pod_ports(template) & plan.old_ports:
                unschedulable += f" {PORT_SURGE_HINT}"
        pending = list(where.nodes)
        for node in pending:  # placements made meanwhile for other workloads count these
            self._cluster.reserve(node, template)
        created: list[Json] = []
        try:
            for node in where.nodes:
                try:
                    pod = await self._create_one(workload, node)
                except OperatorError as exc:
                    return created, Problems(unschedulable, str(exc)), exc
                self._cluster.unreserve(pending.pop(0), template)  # cached now, as a Pod
                created.append(pod)
                self._metrics.placements.inc()
                await self._cluster.record_event(body, "Normal", "SuccessfulCreate",
                                                 f"Created pod: {objects.pod_name(pod)} on node {node}", now=now)
        finally:
            for node in pending:
                self._cluster.unreserve(node, template)
        return created, Problems(unschedulable), None

    async def _create_one(self, workload: WasmWorkload, node: str) -> Json:
        for _ in range(NAME_ATTEMPTS):
            pod = build_pod(workload, name=new_pod_name(workload.name), node_name=node)
            try:
                return await self._cluster.create_pod(pod)
            except AlreadyExists:
                continue
        raise RetryableError(f"create pod for {workload.namespace}/{workload.name}: {NAME_ATTEMPTS} name collisions")

    async def _sync_service(self, workload: WasmWorkload, body: Mapping[str, Any], now: datetime.datetime
                            ) -> tuple[tuple[str, str] | None, OperatorError | None]:
        """Create, update or delete the workload's Service as `spec.http.service` says; return the
        problem to report (reason, message) and the error to raise after reporting it."""
        change = exposure.service_change(workload, self._cluster.service(workload.namespace, workload.name))
        if change is None:
            return None, None
        if isinstance(change, exposure.ServiceConflict):
            return (exposure.SERVICE_CONFLICT, change.message), None
        name, http = workload.name, workload.spec.http
        port = http.port if http is not None else None
        try:
            if change.verb == "create":
                await self._cluster.create_service(change.body)
                reason, message = "SuccessfulCreate", f"Created service: {name} (port {port})"
            elif change.verb == "patch":
                await self._cluster.patch_service(workload.namespace, name, change.body)
                reason, message = "SuccessfulUpdate", f"Updated service: {name} (port {port}; {change.why})"
            else:
                await self._cluster.delete_service(change.body)
                reason, message = "SuccessfulDelete", f"Deleted service: {name} ({change.why})"
        except AlreadyExists:
            return None, None  # made meanwhile by someone else: its watch event brings the workload back
        except OperatorError as exc:
            return (exposure.FAILED_SERVICE_SYNC, str(exc)), exc
        await self._cluster.record_event(body, "Normal", reason, message, now=now)
        return None, None

    async def _report(self, body: Mapping[str, Any], status: Json, now: datetime.datetime, *,
                      strategy: str = "RollingUpdate") -> None:
        """Write the status if it changed, and post the Events the change deserves."""
        meta = body["metadata"]
        patch = status_patch(status, body.get("status"))
        if patch is None:
            return
        await self._cluster.patch_status(meta["namespace"], meta["name"], patch)
        for notice in notices(body.get("status"), status, strategy=strategy):
            await self._cluster.record_event(body, notice.type, notice.reason, notice.message, now=now)


def spec_changed_meanwhile(seen: Mapping[str, Any], latest: Mapping[str, Any] | None) -> bool:
    """Whether the cached workload (`latest`) has another spec than the pass worked from (`seen`).

    The answer to the status write goes into the cache (write-through) and carries the spec as it
    is then: when the user changed it meanwhile, the cache holds the new generation already, so the
    watch event of that change is no news to the cache and would not queue the workload again.
    """
    generation = ((latest or {}).get("metadata") or {}).get("generation")
    return generation is not None and generation != (seen.get("metadata") or {}).get("generation")


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
