"""The WasmWorkload status, aggregated from its Pods. Pure.

Counts follow the ReplicaSet/Deployment/Job vocabulary (replicas, readyReplicas,
updatedReplicas, availableReplicas, succeeded, failed). Conditions use the metav1.Condition
shape; a condition's lastTransitionTime moves only when its status flips, so a reconcile that
changes nothing writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlet.api import keys
from wasmlet.api.workload import InvalidWorkload, WasmWorkload
from wasmlet.operator import objects

Json = dict[str, Any]

# Status keys the operator owns; a JSON merge patch sets them all (None removes one).
OWNED_KEYS = (
    "observedGeneration", "replicas", "readyReplicas", "updatedReplicas", "availableReplicas",
    "succeeded", "failed", "selector", "readyText", "module", "moduleDigest", "templateHash", "conditions",
)


@dataclass(frozen=True)
class Problems:
    """What kept the last reconcile from doing its job (all optional)."""

    unschedulable: str | None = None  # why replicas could not be placed (counts and node reasons)
    create_error: str | None = None  # the API's answer when creating a Pod failed
    failing: str | None = None  # replicas keep failing and are replaced with back-off: the last failure
    service: tuple[str, str] | None = None  # (reason, message): the Service spec.http asks for is not there as asked


@dataclass(frozen=True)
class Condition:
    """One condition before it gets its timestamps."""

    type: str
    status: bool
    reason: str
    message: str


def workload_status(workload: WasmWorkload, pods: Sequence[Mapping[str, Any]], template_hash: str, *,
                    problems: Problems = Problems(), previous: Mapping[str, Any] | None = None,
                    now: datetime.datetime) -> Json:
    """The full status for `workload` whose own Pods (after this reconcile's changes) are `pods`."""
    spec = workload.spec
    active = [p for p in pods if objects.is_active(p)]
    current = [p for p in pods if objects.pod_hash(p) == template_hash and not objects.is_terminating(p)]
    failed = [p for p in current if objects.pod_phase(p) == "Failed"]
    ready = sum(1 for p in active if objects.is_ready(p))
    counts = {
        "replicas": len(active),
        "readyReplicas": ready,
        "updatedReplicas": sum(1 for p in active if objects.pod_hash(p) == template_hash),
        "availableReplicas": ready,  # no minReadySeconds: ready is available
        "succeeded": sum(1 for p in current if objects.pod_phase(p) == "Succeeded"),
        "failed": len(failed),
    }
    degraded = _degraded(active, failed, problems)
    conditions = [
        _ready(workload, counts, problems, degraded),
        _progressing(workload, counts, problems),
        degraded,
        *_outcome(workload, counts),
    ]
    digest = workload.spec.module.digest or next(filter(None, map(objects.image_digest, current)), None)
    return {
        "observedGeneration": workload.generation,
        **counts,
        "selector": workload.selector,
        "readyText": f"{ready}/{spec.replicas}",
        "module": spec.module.reference,
        "moduleDigest": digest,
        "templateHash": template_hash,
        "conditions": merge_conditions(conditions, previous, workload.generation, now),
    }


def invalid_status(body: Mapping[str, Any], error: InvalidWorkload, *, now: datetime.datetime) -> Json:
    """The status of a workload whose spec cannot be run: Ready=False, InvalidSpec, naming the field.

    Only the conditions and observedGeneration change; the counts keep describing the Pods
    that still run (an invalid edit does not stop a running workload).
    """
    meta = body.get("metadata", {})
    generation = meta.get("generation")
    previous = body.get("status") or {}
    message = f"invalid spec: {error}"
    conditions = [
        Condition("Ready", False, "InvalidSpec", message),
        Condition("Progressing", False, "InvalidSpec", message),
    ]
    kept = [c for c in previous.get("conditions") or [] if c.get("type") not in ("Ready", "Progressing")]
    return {
        "observedGeneration": generation,
        "selector": f"{keys.LABEL_WORKLOAD}={meta.get('name')}",
        "conditions": merge_conditions(conditions, previous, generation, now) + kept,
    }


def merge_conditions(conditions: Sequence[Condition], previous: Mapping[str, Any] | None,
                     generation: int | None, now: datetime.datetime) -> list[Json]:
    """Conditions in the metav1.Condition shape, keeping lastTransitionTime when status is unchanged."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    merged: list[Json] = []
    for condition in conditions:
        status = "True" if condition.status else "False"
        old = before.get(condition.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        entry: Json = {
            "type": condition.type,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": since or objects.format_time(now),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    return merged


def status_patch(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> Json | None:
    """The JSON merge patch from `current` to `desired` over the keys in `desired`, or None if equal."""
    current = current or {}
    patch = {key: value for key, value in desired.items() if current.get(key) != value}
    return patch or None


def _ready(workload: WasmWorkload, counts: Mapping[str, int], problems: Problems,
           degraded: Condition) -> Condition:
    spec = workload.spec
    desired = spec.replicas
    ready, succeeded, failed = counts["readyReplicas"], counts["succeeded"], counts["failed"]
    if problems.service:  # not served as asked, however its replicas are (readyText counts them)
        reason, message = problems.service
        return Condition("Ready", False, reason, message)
    if spec.runs_to_completion and desired > 0 and succeeded >= desired:
        return Condition("Ready", True, "Complete", f"{succeeded}/{desired} replicas completed")
    if spec.runs_to_completion and failed and counts["replicas"] == 0 and succeeded + failed >= desired:
        return Condition("Ready", False, "ReplicasFailed", f"{failed}/{desired} replicas failed")
    if desired == 0:
        return Condition("Ready", True, "ScaledToZero", "scaled to 0 replicas")
    done = succeeded if spec.runs_to_completion else 0
    if ready + done >= desired and not failed:
        return Condition("Ready", True, "AllReplicasReady", f"{ready}/{desired} replicas ready")
    if problems.create_error:
        return Condition("Ready", False, "FailedCreate", problems.create_error)
    if problems.unschedulable:
        return Condition("Ready", False, "Unschedulable", problems.unschedulable)
    summary = f"{ready}/{desired} replicas ready"
    if degraded.status:  # the Reason column then says why (`CreateContainerConfigError`), not just "not ready"
        return Condition("Ready", False, degraded.reason, f"{summary}; {degraded.message}")
    return Condition("Ready", False, "ReplicasNotReady", summary)


def _progressing(workload: WasmWorkload, counts: Mapping[str, int], problems: Problems) -> Condition:
    desired = workload.spec.replicas
    updated, active = counts["updatedReplicas"], counts["replicas"]
    if problems.create_error:
        return Condition("Progressing", False, "FailedCreate", problems.create_error)
    if problems.unschedulable:
        return Condition("Progressing", False, "Unschedulable", problems.unschedulable)
    if updated < active:
        return Condition("Progressing", True, "RollingUpdate", f"{updated}/{active} replicas updated")
    remaining = desired - (counts["succeeded"] + counts["failed"] if workload.spec.runs_to_completion else 0)
    if active != max(0, remaining):
        return Condition("Progressing", True, "Scaling", f"{active} replicas, {max(0, remaining)} wanted")
    return Condition("Progressing", True, "ReplicasUpToDate", "every replica runs the current template")


def _degraded(active: Sequence[Mapping[str, Any]], failed: Sequence[Mapping[str, Any]],
              problems: Problems) -> Condition:
    """A replica that will not get better by itself, named: a stuck container, a failed Pod."""
    for pod in active:
        problem = objects.waiting_problem(pod)
        if problem:
            reason, message = problem
            return Condition("Degraded", True, reason, f"pod {objects.pod_name(pod)}: {message or reason}")
    if failed:
        reason, message = objects.failure(failed[0])
        detail = f"{reason}: {message}" if message else reason
        return Condition("Degraded", True, "ReplicasFailed",
                         f"{len(failed)} replica(s) failed; pod {objects.pod_name(failed[0])}: {detail}")
    if problems.failing:
        return Condition("Degraded", True, "ReplicasFailed", problems.failing)
    return Condition("Degraded", False, "AsExpected", "no replica reports a problem")


def _outcome(workload: WasmWorkload, counts: Mapping[str, int]) -> list[Condition]:
    """The Job-style `Complete`/`Failed` conditions of a run-to-completion workload, once decided,
    so `kubectl wait --for=condition=Complete ww/NAME` works as it does for Jobs."""
    spec = workload.spec
    succeeded, failed = counts["succeeded"], counts["failed"]
    if not spec.runs_to_completion or spec.replicas == 0:
        return []
    if succeeded >= spec.replicas:
        return [Condition("Complete", True, "ReplicasSucceeded", f"{succeeded}/{spec.replicas} replicas succeeded")]
    if failed and counts["replicas"] == 0 and succeeded + failed >= spec.replicas:
        return [Condition("Failed", True, "ReplicasFailed", f"{failed}/{spec.replicas} replicas failed")]
    return []
