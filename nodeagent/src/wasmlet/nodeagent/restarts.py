"""Which containers start again, and when: the kubelet's restart rules, one container at a time.

As kuberuntime's `computePodActions` does, every container of a Pod is judged on its own: one
that ended is restarted when the Pod's restartPolicy says so (`ShouldContainerBeRestarted`), on
its own back-off (`doBackOff`: the first restart at once, then 10 s doubling to 300 s), with its
own restartCount. A container that keeps running is never touched because another one ended.
Pure: no I/O, the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wasmlet.nodeagent.backoff import RestartBackoff
from wasmlet.nodeagent.runtime import EXIT_KILLED
from wasmlet.nodeagent.status import ContainerRecord, now

Obj = dict[str, Any]


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """The kubelet's ShouldContainerBeRestarted for a container that ended with `exit_code`."""
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def crash_loop_message(delay: float, container: str, pod: str, namespace: str, uid: str) -> str:
    """The waiting message of a container in CrashLoopBackOff, worded as doBackOff's error."""
    return f"back-off {_duration(delay)} restarting failed container={container} pod={pod}_{namespace}({uid})"


def _duration(seconds: float) -> str:
    """A Go time.Duration's String() for the back-offs the kubelet names: 10s, 40s, 5m0s."""
    whole = int(seconds)
    if whole != seconds or seconds < 1:
        return f"{seconds:g}s"
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class RestartSchedule:
    """Per container: its back-off and, while it waits, the moment it may start again."""

    base: float = 10.0
    cap: float = 300.0
    backoffs: dict[str, RestartBackoff] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def schedule(self, name: str, ran_for: float, now: float) -> float:
        """`name` ended after running `ran_for` seconds: when may it start again? Returns the wait."""
        backoff = self.backoffs.setdefault(name, RestartBackoff(self.base, self.cap))
        delay = backoff.next_delay(ran_for)
        self.due[name] = now + delay
        return delay

    def take_due(self, now: float) -> list[str]:
        """The containers whose wait is over, in the order they were scheduled; no longer waiting."""
        ready = [name for name, at in self.due.items() if at <= now]
        for name in ready:
            del self.due[name]
        return ready

    def next_in(self, now: float) -> float | None:
        """Seconds until the next container may start, or None when none waits."""
        return max(0.0, min(self.due.values()) - now) if self.due else None

    def waiting(self) -> bool:
        return bool(self.due)


# The agent's instances die with it, but its Pods are not over (a kubelet restart ends no Pod):
# a container the agent's own stop (or crash) ended runs again when the agent is back.
AGENT_STOPPED = "the node agent stopped; the container runs again when the agent is back"


def restore_records(records: dict[str, ContainerRecord], status: Obj) -> set[str]:
    """Load what a previous agent process recorded; return the containers to run again.

    Restart counts and last states carry over. A container that ended on its own keeps its end
    (the restartPolicy decides, as for any ended container). One that the agent stopped, or that
    was still running when the agent was killed, is ended as that stop and started again whatever
    the restartPolicy — the agent, not the module, stopped it; its restart is counted then.
    """
    resumed: set[str] = set()
    for saved in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        record = records.get(saved.get("name", ""))
        if record is None:
            continue
        record.restart_count = int(saved.get("restartCount") or 0)
        record.last_state = saved.get("lastState") or {}
        state = saved.get("state") or {}
        if "running" in state:  # killed with the agent: its end was never recorded
            state = {"terminated": {"exitCode": EXIT_KILLED, "reason": "Error", "message": AGENT_STOPPED,
                                    "startedAt": state["running"].get("startedAt"), "finishedAt": now()}}
        if "terminated" in state:
            record.state = state
            if state["terminated"].get("message") == AGENT_STOPPED:
                resumed.add(record.name)
    return resumed
