"""`wasmlet run`'s judgement of each Pod, from its Kubernetes status alone (no I/O here).

Two questions, asked of the same status the agent reports to an API server:

- `waiting_for`: is there anything left to wait for? A run-to-completion Pod is awaited until
  it ends; a service (`restartPolicy: Always`) until it has run `--duration` seconds. A container
  waiting for a reason that needs the user (a module that cannot be pulled, a missing ConfigMap,
  an invalid image) leaves nothing to wait for: the run ends at once instead of retrying until
  `--timeout`, as the kubelet would.
- `outcome`: did the Pod end as it should? A run-to-completion Pod should succeed; a service
  should be running when the run stops it (that stop is its success, whatever exit code the
  module gives SIGTERM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

TERMINAL_PHASES = ("Succeeded", "Failed")
# Waiting reasons that resolve by themselves: everything else needs the user.
TRANSIENT_WAITING = frozenset({"ContainerCreating", "PodInitializing", "CrashLoopBackOff"})
MESSAGE_CHARS = 160  # one reason line per Pod: long messages are cut here


@dataclass(frozen=True)
class Outcome:
    """Whether a Pod ended as it should, and one line saying how it ended."""

    ok: bool
    reason: str


def container_statuses(status: Obj) -> list[Obj]:
    """Init containers first, then the app containers, as the summary lists them."""
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def state_of(cstatus: Obj) -> tuple[str, Obj]:
    """A container's state as (`waiting`/`running`/`terminated`, its details)."""
    state: Obj = cstatus.get("state") or {}
    for kind, detail in state.items():
        return str(kind), detail if isinstance(detail, dict) else {}
    return "waiting", {}


def is_service(spec: Obj) -> bool:
    """A Pod meant to run until stopped: the kubelet restarts its containers whatever they exit with."""
    return (spec.get("restartPolicy") or "Always") == "Always"


def is_running(status: Obj) -> bool:
    """Phase Running with every app container running (none waiting to restart)."""
    statuses = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(statuses) and \
        all("running" in (c.get("state") or {}) for c in statuses)


def stuck(status: Obj) -> str | None:
    """Why the Pod cannot go on without the user (a container waiting for such a reason), or None."""
    for cstatus in container_statuses(status):
        waiting = (cstatus.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") and waiting["reason"] not in TRANSIENT_WAITING:
            return f"container {cstatus.get('name')}: {waiting['reason']}{_message(waiting)}"
    return None


def waiting_for(status: Obj, service: bool, running_for: float | None, duration: float) -> bool:
    """Whether the run should keep waiting for this Pod.

    `running_for`: seconds since the Pod was first seen Running (None: not yet).
    """
    if status.get("phase") in TERMINAL_PHASES or stuck(status) is not None:
        return False
    if service:
        return running_for is None or running_for < duration
    return True


def outcome(status: Obj, service: bool, *, stopped_running: bool = False, gave_up_after: float | None = None,
            interrupted: bool = False, before_stop: Obj | None = None) -> Outcome:
    """How the Pod ended, judged at the end of the run.

    `stopped_running`: a service that was running when the run stopped it. `gave_up_after`: the
    `--timeout` the run gave up after while still waiting for this Pod. `interrupted`: the run was
    stopped by Ctrl-C. `before_stop`: the Pod's status just before the run stopped every Pod (what
    it was doing then says more than the exit code the stop gave it).
    """
    if service and stopped_running:
        return Outcome(True, "service, stopped by the run while running")
    then = before_stop if before_stop is not None else status
    unfinished = then.get("phase") not in TERMINAL_PHASES and stuck(then) is None
    if gave_up_after is not None and unfinished:
        return Outcome(False, f"gave up after {gave_up_after:g}s (--timeout): still {describe(then)}")
    if interrupted and unfinished:
        return Outcome(False, f"interrupted (Ctrl-C) while {describe(then)}")
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded" and not service:
        return Outcome(True, "Succeeded")
    if phase == "Failed":
        return Outcome(False, f"Failed: {_failure(status)}")
    blocked = stuck(status)
    if blocked is not None:
        return Outcome(False, blocked)
    if service:
        return Outcome(False, f"service not running when stopped: {describe(status)}")
    return Outcome(False, describe(status))


def describe(status: Obj) -> str:
    """The phase and what its first unfinished container is doing, e.g. `Pending (main: ContainerCreating)`."""
    phase = status.get("phase") or "Pending"
    for cstatus in container_statuses(status):
        kind, detail = state_of(cstatus)
        if kind == "terminated":
            continue
        what = detail.get("reason") or kind
        restarts = cstatus.get("restartCount") or 0
        again = ", " + plural(restarts, "restart") if restarts else ""
        return f"{phase} ({cstatus.get('name')}: {what}{again})"
    return phase


def _failure(status: Obj) -> str:
    if status.get("reason"):
        return f"{status['reason']}{_message(status)}"
    for cstatus in container_statuses(status):
        term = (cstatus.get("state") or {}).get("terminated") or cstatus.get("lastState", {}).get("terminated")
        if term and term.get("exitCode"):
            return f"container {cstatus.get('name')}: exit code {term['exitCode']}, {term.get('reason')}{_message(term)}"
    blocked = stuck(status)
    return blocked or "no container succeeded"


def _message(detail: Obj) -> str:
    message = " ".join(str(detail.get("message") or "").split())
    if not message:
        return ""
    return f" — {message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 1] + '…'}"


def plural(count: int, noun: str) -> str:
    """`1 restart`, `2 restarts`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
