"""The reconcile service: read one workload's world, plan, place, apply, report status.

Idempotent and level-based: it reads everything it decides on from the API each time, so it
may run any number of times, for any reason (a change, a Pod event, a Node event, a timer).
The caller guarantees that one workload is never reconciled by two tasks at once.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlet.api.podtemplate import build_pod
from wasmlet.api.workload import InvalidWorkload, WasmWorkload, parse_workload
from wasmlet.kube import AlreadyExists
from wasmlet.operator import objects, placement, planning
from wasmlet.operator.cluster import Cluster, new_pod_name
from wasmlet.operator.errors import OperatorError, RetryableError
from wasmlet.operator.status import Problems, invalid_status, status_patch, workload_status

log = logging.getLogger(__name__)

Json = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
NAME_ATTEMPTS = 3  # random 5-char suffixes collide rarely; three misses in a row means a bug
# Ready reasons worth a Warning Event when Ready turns to them (`kubectl describe` shows why).
WARNING_REASONS = ("InvalidSpec", "Unschedulable", "FailedCreate", "ReplicasFailed")


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware (the reconciler's default clock)."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Outcome:
    """What the caller should do next: look again after `requeue_after` seconds; forget a gone key."""

    requeue_after: float | None = None
    gone: bool = False


class Reconciler:
    """Brings one WasmWorkload's Pods in line with its spec, then writes its status."""

    def __init__(self, cluster: Cluster, *, clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self._cluster = cluster
        self._clock = clock

    async def reconcile(self, key: Key) -> Outcome:
        """One pass for the workload `key`; raises OperatorError after reporting it in status."""
        namespace, name = key
        body = await self._cluster.get_workload(namespace, name)
        if body is None:
            return Outcome(gone=True)
        if body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()  # being deleted: garbage collection removes the Pods
        now = self._clock()
        try:
            workload = parse_workload(body, default_namespace=namespace)
        except InvalidWorkload as exc:
            await self._report(body, invalid_status(body, exc, now=now), now)
            return Outcome()
        pods = [p for p in await self._cluster.workload_pods(namespace, name)
                if objects.is_controlled_by(p, name, workload.uid)]
        wasm_nodes, known_nodes = await self._nodes(pods)
        plan = planning.plan(workload, pods, known_nodes, now)
        deleted = await self._delete(body, plan.delete, now)
        created, problems, error = await self._create(workload, body, plan, wasm_nodes, now)
        after = [p for p in pods if objects.pod_name(p) not in deleted] + created
        status = workload_status(workload, after, plan.template_hash, problems=problems,
                                 previous=body.get("status"), now=now)
        await self._report(body, status, now)
        if error is not None:
            raise error
        return Outcome(requeue_after=plan.requeue_after)

    async def _nodes(self, pods: Sequence[Mapping[str, Any]]) -> tuple[list[Json], dict[str, Json]]:
        """The wasm nodes (placement candidates), and every node the Pods are bound to."""
        wasm = await self._cluster.wasm_nodes()
        known = dict(wasm)
        for name in {objects.pod_node(p) for p in pods} - set(wasm) - {None}:
            assert name is not None
            node = await self._cluster.get_node(name)  # e.g. an agent label removed by hand
            if node is not None:
                known[name] = node
        return list(wasm.values()), known

    async def _delete(self, body: Mapping[str, Any], deletions: Sequence[planning.Deletion],
                      now: datetime.datetime) -> set[str]:
        namespace = body["metadata"]["namespace"]
        for deletion in deletions:
            await self._cluster.delete_pod(namespace, deletion.name, uid=deletion.uid, force=deletion.force)
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
        where = placement.place(plan.create, template, nodes, load=node_load(await self._cluster.scope_pods()),
                                replicas_on=plan.replicas_on, spread=workload.spec.placement.spread)
        unschedulable = where.message if where.unplaced else None
        created: list[Json] = []
        for node in where.nodes:
            try:
                pod = await self._create_one(workload, node)
            except OperatorError as exc:
                return created, Problems(unschedulable, str(exc)), exc
            created.append(pod)
            await self._cluster.record_event(body, "Normal", "SuccessfulCreate",
                                             f"Created pod: {objects.pod_name(pod)} on node {node}", now=now)
        return created, Problems(unschedulable), None

    async def _create_one(self, workload: WasmWorkload, node: str) -> Json:
        for _ in range(NAME_ATTEMPTS):
            pod = build_pod(workload, name=new_pod_name(workload.name), node_name=node)
            try:
                return await self._cluster.create_pod(pod)
            except AlreadyExists:
                continue
        raise RetryableError(f"create pod for {workload.namespace}/{workload.name}: {NAME_ATTEMPTS} name collisions")

    async def _report(self, body: Mapping[str, Any], status: Json, now: datetime.datetime) -> None:
        """Write the status if it changed; post a Warning Event when Ready turns to a problem."""
        meta = body["metadata"]
        patch = status_patch(status, body.get("status"))
        if patch is None:
            return
        await self._cluster.patch_status(meta["namespace"], meta["name"], patch)
        before, after = _ready(body.get("status")), _ready(status)
        if after and after.get("reason") in WARNING_REASONS and (
                not before or (before.get("reason"), before.get("message")) != (after["reason"], after.get("message"))):
            await self._cluster.record_event(body, "Warning", str(after["reason"]), str(after.get("message")), now=now)


def node_load(pods: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """Pods occupying each node: bound and not finished (terminating ones still run)."""
    return Counter(objects.pod_node(p) or "" for p in pods if objects.pod_node(p) and not objects.is_terminal(p))


def _ready(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
