"""Which Events a change of a WasmWorkload's status deserves (`kubectl describe ww` shows them). Pure.

Pod creations and deletions are announced where they happen (the reconciler); everything a user
would otherwise have to diff statuses for is derived here from the status before and after a
reconcile, so a reconcile that changes nothing posts nothing:

* `Ready` turning to a problem (`InvalidSpec`, `Unschedulable`, `FailedCreate`, `ReplicasFailed`,
  `ServiceConflict`, `FailedServiceSync`), or its message changing while it is one → Warning with
  that reason;
* `Degraded` turning True, or to another reason → Warning with the stuck container's reason;
* a new Pod template → Normal `RollingUpdate` (or `Recreate`); its rollout done → `RolloutComplete`;
* a run-to-completion workload reaching its outcome → Normal `Completed` (failure is a Warning above).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ready reasons worth a Warning when Ready turns to them.
WARNING_REASONS = frozenset({"InvalidSpec", "Unschedulable", "FailedCreate", "ReplicasFailed", "ServiceConflict",
                             "FailedServiceSync"})


@dataclass(frozen=True)
class Notice:
    """One Event to post about the workload: `type` is Normal or Warning."""

    type: str
    reason: str
    message: str


def notices(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, strategy: str = "RollingUpdate") -> list[Notice]:
    """The Events for a status going from `before` (None: never written) to `after`."""
    found: list[Notice] = []
    ready_was, ready = condition(before, "Ready"), condition(after, "Ready")
    if ready.get("reason") in WARNING_REASONS and _key(ready) != _key(ready_was):
        found.append(Notice("Warning", str(ready["reason"]), str(ready.get("message") or "")))
    degraded_was, degraded = condition(before, "Degraded"), condition(after, "Degraded")
    if degraded.get("status") == "True" and _key(degraded)[:2] != _key(degraded_was)[:2] \
            and degraded.get("reason") not in {n.reason for n in found}:
        found.append(Notice("Warning", str(degraded["reason"]), str(degraded.get("message") or "")))
    old_hash, new_hash = (before or {}).get("templateHash"), after.get("templateHash")
    if old_hash and new_hash and old_hash != new_hash:
        found.append(Notice("Normal", strategy, f"rolling out Pod template {new_hash} (was {old_hash})"))
    progressing_was, progressing = condition(before, "Progressing"), condition(after, "Progressing")
    if progressing_was.get("reason") == "RollingUpdate" and progressing.get("reason") == "ReplicasUpToDate":
        found.append(Notice("Normal", "RolloutComplete",
                            f"every replica runs Pod template {new_hash} ({after.get('updatedReplicas', 0)} updated)"))
    if ready.get("reason") == "Complete" and ready_was.get("reason") != "Complete":
        found.append(Notice("Normal", "Completed", str(ready.get("message") or "")))
    return found


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    """The condition of type `kind` in `status` (empty when absent)."""
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == kind), {})


def _key(entry: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return entry.get("status"), entry.get("reason"), entry.get("message")
