"""What to change so a workload's Pods match its spec: which Pods to delete, how many to create.

Pure. Where new replicas go is placement's question; this module answers how many and which
ones go. The rules, in the order they apply:

* Pods of a lost node are not replicas any more: a deleted Node's Pods are force-deleted
  (nothing will ever stop them), a node NotReady for `placement.rescheduleAfterSeconds` gets its
  Pods deleted gracefully (its agent stops them if it returns). Both are replaced.
* Finished Pods: for run-to-completion workloads (restartPolicy OnFailure/Never) a finished Pod
  of the current template is done and counts towards `replicas`, unless its node or the cluster
  ended it (evicted, preempted, rejected at admission: `objects.is_disrupted`); every other
  finished Pod is deleted and (for `Always`, and disrupted ones) replaced. A Failed Pod of the
  current template is replaced only from `replace_failed_after` on: the caller backs off, so a
  module that every node rejects does not turn into a create/delete loop.
* Pods of an old template are replaced: `Recreate` deletes them all and creates new ones once
  they are gone; `RollingUpdate` surges and retires them within maxSurge/maxUnavailable (the
  Deployment arithmetic). Run-to-completion workloads always use Recreate.
* Extra replicas go in this order: not ready first, then from the node holding the most
  replicas of the workload, then the newest.
"""

from __future__ import annotations

import datetime
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmlet.api.podtemplate import template_hash
from wasmlet.api.workload import WasmWorkload
from wasmlet.operator import objects

Json = dict[str, Any]


@dataclass(frozen=True)
class Deletion:
    """One Pod to delete; `force` (grace 0) only when no agent will ever stop it."""

    name: str
    uid: str | None
    reason: str
    force: bool = False
    cause: str = "scale"  # for metrics: scale, update, failed, finished, lost-node


@dataclass(frozen=True)
class Plan:
    """The changes for one reconcile, and when to look again if time alone changes things."""

    create: int
    delete: tuple[Deletion, ...]
    template_hash: str
    replicas_on: Mapping[str, int]
    requeue_after: float | None = None
    failed: tuple[Mapping[str, Any], ...] = ()  # Failed Pods of the current template replaced now, or waiting to be
    old_ports: frozenset[int] = frozenset()  # the node ports active replicas of an old template hold


def plan(workload: WasmWorkload, pods: Sequence[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]],
         now: datetime.datetime, *, replace_failed_after: datetime.datetime | None = None) -> Plan:
    """Plan one reconcile of `workload`.

    `pods` are the workload's own Pods, `nodes` every known Node by name (a Pod's node missing
    from it has been deleted). Failed Pods of the current template stay (not replaced, so the
    user sees them) until `replace_failed_after`.
    """
    spec = workload.spec
    current = template_hash(workload)
    recreate = spec.update_strategy.type == "Recreate" or spec.runs_to_completion
    lost, requeue = _lost_nodes(workload, pods, nodes, now)
    holding = replace_failed_after is not None and now < replace_failed_after
    found = _sort(workload, pods, current, lost, holding=holding)
    deletions = found.deletions
    create = 0
    if found.old and recreate:
        deletions += [Deletion(objects.pod_name(p), _uid(p), "template changed", cause="update") for p in found.old]
    elif found.old:
        create, retire = _rolling_update(workload, found.new, found.old)
        deletions += retire
    elif not (recreate and found.old_terminating):  # Recreate: new Pods only once the old ones are gone
        wanted = spec.replicas - found.done
        create = max(0, wanted - len(found.new))
        extra = len(found.new) - max(0, wanted)
        if extra > 0:
            deletions += [Deletion(objects.pod_name(p), _uid(p), "scaled down") for p in _victims(found.new, extra)]
    replicas_on = Counter(objects.pod_node(p) or "" for p in found.new + found.old)
    if found.failed and holding:
        assert replace_failed_after is not None
        wait = (replace_failed_after - now).total_seconds()
        requeue = wait if requeue is None else min(requeue, wait)
    old_ports = frozenset[int]().union(*(objects.pod_ports(p.get("spec") or {}) for p in found.old))
    return Plan(create, tuple(deletions), current, dict(replicas_on), requeue, tuple(found.failed), old_ports)


@dataclass
class _Sorted:
    """The workload's Pods by what they are to this reconcile."""

    new: list[Mapping[str, Any]] = field(default_factory=list)  # active, current template
    old: list[Mapping[str, Any]] = field(default_factory=list)  # active, another template
    done: int = 0  # finished replicas that keep their place (job-like successes, held failures)
    failed: list[Mapping[str, Any]] = field(default_factory=list)  # Failed, current template, to be replaced
    old_terminating: bool = False  # an old-template Pod is still stopping
    deletions: list[Deletion] = field(default_factory=list)


def _sort(workload: WasmWorkload, pods: Sequence[Mapping[str, Any]], current: str, lost: Mapping[str, bool], *,
          holding: bool) -> _Sorted:
    """Sort the Pods; delete those of lost nodes and finished ones that are not replicas any more."""
    found = _Sorted()
    for pod in pods:
        name, uid, node = objects.pod_name(pod), _uid(pod), objects.pod_node(pod)
        node_deleted = lost.get(node or "") is True
        current_template = objects.pod_hash(pod) == current
        if objects.is_terminating(pod):
            if node_deleted:  # what the pod garbage collector does for Pods of deleted Nodes
                found.deletions.append(Deletion(name, uid, f"node {node} was deleted", force=True, cause="lost-node"))
            elif not current_template and node not in lost:
                found.old_terminating = True
        elif objects.is_terminal(pod):
            if workload.spec.runs_to_completion and current_template and not objects.is_disrupted(pod):
                found.done += 1
            elif current_template and objects.pod_phase(pod) == "Failed":
                found.failed.append(pod)
                if holding:
                    found.done += 1  # stays, and keeps its place, until the back-off ends
                else:
                    found.deletions.append(Deletion(name, uid, f"pod failed: {objects.failure(pod)[0]}",
                                                    cause="failed"))
            else:
                found.deletions.append(Deletion(name, uid, f"pod is {objects.pod_phase(pod)}", cause="finished"))
        elif node in lost:
            found.deletions.append(Deletion(name, uid, f"node {node} is lost", force=node_deleted, cause="lost-node"))
        elif current_template:
            found.new.append(pod)
        else:
            found.old.append(pod)
    return found


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """An IntOrString against `total`: maxSurge rounds up, maxUnavailable rounds down (as Deployments)."""
    if isinstance(value, int):
        return value
    scaled = int(value.rstrip("%")) * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def _rolling_update(workload: WasmWorkload, new: list[Mapping[str, Any]],
                    old: list[Mapping[str, Any]]) -> tuple[int, list[Deletion]]:
    """The Deployment controller's arithmetic, applied to Pods instead of ReplicaSets."""
    desired = workload.spec.replicas
    strategy = workload.spec.update_strategy
    surge = resolve_int_or_percent(strategy.max_surge, desired, round_up=True)
    unavailable = resolve_int_or_percent(strategy.max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # as Deployments do: otherwise the update could never make progress
    total = len(new) + len(old)
    create = max(0, min(desired - len(new), desired + surge - total))
    min_available = desired - unavailable
    new_unready = sum(1 for p in new if not objects.is_ready(p))
    may_retire = total - min_available - new_unready
    ready_spare = sum(1 for p in new + old if objects.is_ready(p)) - min_available
    retire: list[Deletion] = []
    for pod in _victims(old, len(old)):
        if len(retire) >= may_retire:
            break
        if objects.is_ready(pod):
            if ready_spare <= 0:
                break  # victims are ordered unready first: every later one is ready too
            ready_spare -= 1
        retire.append(Deletion(objects.pod_name(pod), _uid(pod), "rolling update", cause="update"))
    if len(new) > desired:
        retire += [Deletion(objects.pod_name(p), _uid(p), "scaled down") for p in _victims(new, len(new) - desired)]
    return create, retire


def _lost_nodes(workload: WasmWorkload, pods: Sequence[Mapping[str, Any]],
                nodes: Mapping[str, Mapping[str, Any]], now: datetime.datetime) -> tuple[dict[str, bool], float | None]:
    """Nodes whose replicas must be replaced ({name: force}), and the seconds until the next one is due."""
    after = workload.spec.placement.reschedule_after_seconds
    lost: dict[str, bool] = {}
    due: list[float] = []
    for name in {objects.pod_node(p) or "" for p in pods if not objects.is_terminal(p)} - {""}:
        node = nodes.get(name)
        if node is None:
            lost[name] = True
            continue
        since = objects.node_not_ready_since(node)
        if since is None and not objects.node_ready(node):
            since = now  # NotReady without a transition time: start counting now
        if since is None or after is None:
            continue
        remaining = after - (now - since).total_seconds()
        if remaining <= 0:
            lost[name] = False
        else:
            due.append(remaining)
    return lost, (min(due) if due else None)


def _victims(pods: Sequence[Mapping[str, Any]], count: int) -> list[Mapping[str, Any]]:
    """The `count` Pods to remove first: not ready, then on the most crowded node, then newest."""
    crowd = Counter(objects.pod_node(p) for p in pods)
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
    ranked = sorted(pods, key=lambda p: (
        objects.is_ready(p),
        phase_rank.get(objects.pod_phase(p), 0),
        -crowd[objects.pod_node(p)],
        -objects.created_at(p),
        objects.pod_name(p),
    ))
    return ranked[:count]


def _uid(pod: Mapping[str, Any]) -> str | None:
    uid = pod.get("metadata", {}).get("uid")
    return str(uid) if uid else None
