"""Pod status as the kubelet writes it (pure: builders over plain data, no I/O).

Container states carry exactly one of `waiting`/`running`/`terminated`; the phase follows
the kubelet's `getPhase`; a condition's `lastTransitionTime` moves only when its status flips.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

CONDITION_TYPES = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")


def now() -> str:
    """RFC 3339 in seconds, as Kubernetes writes Time fields."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """RFC 3339 in microseconds, as Kubernetes writes MicroTime fields (a Lease's renewTime)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ContainerRecord:
    """What the agent knows of one container; `state` is the kubelet's one-of state dict."""

    name: str
    image: str
    init: bool = False
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    image_id: str = ""
    ready: bool = False
    startup_passed: bool = True  # False while a startup probe has not succeeded yet

    def set_waiting(self, reason: str, message: str = "") -> None:
        waiting = {"reason": reason}
        if message:
            waiting["message"] = message
        self._move({"waiting": waiting})
        self.ready = False

    def set_running(self, started_at: str) -> None:
        self._move({"running": {"startedAt": started_at}})
        self.ready = True

    def set_terminated(self, exit_code: int, reason: str, message: str = "", started_at: str | None = None) -> None:
        terminated: Obj = {"exitCode": exit_code, "reason": reason, "finishedAt": now()}
        running = self.state.get("running") or {}
        if started_at or running.get("startedAt"):
            terminated["startedAt"] = started_at or running["startedAt"]
        if message:
            terminated["message"] = message
        self._move({"terminated": terminated})
        self.ready = False

    def _move(self, new: Obj) -> None:
        # The kubelet keeps the previous *terminated* state as lastState when a container restarts.
        if "terminated" in self.state and "terminated" not in new:
            self.last_state = dict(self.state)
        self.state = new

    @property
    def terminated(self) -> Obj | None:
        return self.state.get("terminated")

    @property
    def running(self) -> bool:
        return "running" in self.state

    def to_status(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running and self.startup_passed,
        }
        return status


def pod_phase(restart_policy: str, init: list[ContainerRecord], main: list[ContainerRecord],
              terminal: bool = False) -> str:
    """The kubelet's getPhase (kubelet_pods.go), for init containers without a restartPolicy.

    A waiting container whose last state is terminated has run: it counts as stopped, not
    waiting, so a Pod in CrashLoopBackOff stays Running. `terminal`: the Pod will restart
    nothing any more (deleted, or stopped for good), so stopped containers decide the end.
    """
    pending_init = failed_init = 0
    for record in init:
        ended = record.terminated or (None if record.running else record.last_state.get("terminated"))
        if ended is None:
            pending_init += 1
        elif ended["exitCode"] != 0:
            failed_init += 1
    running = waiting = stopped = succeeded = 0
    for record in main:
        if record.running:
            running += 1
        elif record.terminated is not None:
            stopped += 1
            succeeded += record.terminated["exitCode"] == 0
        elif record.last_state.get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    started = any(r.running or r.terminated is not None for r in main)
    if (pending_init and not started) or waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if terminal:
        return "Succeeded" if stopped == succeeded else "Failed"
    if restart_policy == "Always":
        return "Running"  # every container is on its way to a restart
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def conditions(previous: list[Obj], values: dict[str, tuple[bool, str]]) -> list[Obj]:
    """Build the Pod's conditions from {type: (status, reason)}, keeping unchanged transition times."""
    before = {c.get("type"): c for c in previous}
    stamp = now()
    result = []
    for ctype in CONDITION_TYPES:
        if ctype not in values:
            continue
        status, reason = values[ctype]
        text = "True" if status else "False"
        old = before.get(ctype)
        since = old["lastTransitionTime"] if old and old.get("status") == text else stamp
        condition: Obj = {"type": ctype, "status": text, "lastProbeTime": None, "lastTransitionTime": since}
        if reason:
            condition["reason"] = reason
        result.append(condition)
    return result
