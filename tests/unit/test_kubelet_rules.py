"""The kubelet's rules the agent follows, as tables: getPhase, ShouldContainerBeRestarted, the
crash-loop and image-pull back-offs (flowcontrol.Backoff as doBackOff and the image manager use
it), the CrashLoopBackOff message, and what a restarted agent takes over from its store."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.nodeagent.backoff import RestartBackoff
from wasmlet.nodeagent.restarts import (
    AGENT_STOPPED,
    RestartSchedule,
    crash_loop_message,
    restore_records,
    should_restart,
)
from wasmlet.nodeagent.status import ContainerRecord, pod_phase

# A container as (state, exit code, last state's exit code or None):
#   ("waiting", 0, None) never ran; ("waiting", 0, 1) waits for a restart after exiting 1.
Shape = tuple[str, int, int | None]


def record(shape: Shape, init: bool = False) -> ContainerRecord:
    state, code, last = shape
    r = ContainerRecord("c", "img", init)
    if last is not None:
        r.set_terminated(last, "Completed" if last == 0 else "Error")
    if state == "running":
        r.set_running("2026-01-01T00:00:00Z")
    elif state == "terminated":
        r.set_terminated(code, "Completed" if code == 0 else "Error")
    else:
        r.set_waiting("CrashLoopBackOff" if last is not None else "ContainerCreating")
    return r


NEW: Shape = ("waiting", 0, None)
RUNNING: Shape = ("running", 0, None)
OK: Shape = ("terminated", 0, None)
ERR: Shape = ("terminated", 1, None)
BACKOFF_AFTER_ERR: Shape = ("waiting", 0, 1)
BACKOFF_AFTER_OK: Shape = ("waiting", 0, 0)
RESTARTED: Shape = ("running", 0, 1)


@pytest.mark.parametrize(("policy", "init", "main", "terminal", "phase"), [
    # nothing started yet
    ("Always", [], [NEW], False, "Pending"),
    ("Always", [], [RUNNING, NEW], False, "Pending"),
    # init containers: pending until each succeeded; a failed one fails only a Never Pod
    ("Always", [NEW], [NEW], False, "Pending"),
    ("Always", [RUNNING], [NEW], False, "Pending"),
    ("Always", [OK], [NEW], False, "Pending"),
    ("Never", [ERR], [NEW], False, "Failed"),
    ("OnFailure", [ERR], [NEW], False, "Pending"),
    ("OnFailure", [BACKOFF_AFTER_ERR], [NEW], False, "Pending"),
    ("Never", [BACKOFF_AFTER_ERR], [NEW], False, "Failed"),
    ("Always", [OK], [RUNNING], False, "Running"),
    # running, and the first CrashLoopBackOff: a waiting container that ran counts as stopped
    ("Always", [], [RUNNING], False, "Running"),
    ("Always", [], [BACKOFF_AFTER_ERR], False, "Running"),
    ("Always", [], [BACKOFF_AFTER_ERR, RUNNING], False, "Running"),
    ("Always", [], [BACKOFF_AFTER_OK, BACKOFF_AFTER_ERR], False, "Running"),
    ("OnFailure", [], [BACKOFF_AFTER_ERR], False, "Running"),
    ("Always", [], [RESTARTED, OK], False, "Running"),
    # every container ended
    ("Always", [], [OK, ERR], False, "Running"),
    ("OnFailure", [], [OK, OK], False, "Succeeded"),
    ("OnFailure", [], [OK, ERR], False, "Running"),
    ("Never", [], [OK, OK], False, "Succeeded"),
    ("Never", [], [OK, ERR], False, "Failed"),
    ("Never", [], [RUNNING, OK], False, "Running"),
    # a Pod stopped for good (deleted): the ends decide, whatever the restartPolicy
    ("Always", [], [OK, OK], True, "Succeeded"),
    ("Always", [], [OK, ERR], True, "Failed"),
    ("Always", [], [BACKOFF_AFTER_OK], True, "Failed"),
])
def test_the_phase_is_the_kubelets_getphase(policy: str, init: list[Shape], main: list[Shape], terminal: bool,
                                           phase: str) -> None:
    assert pod_phase(policy, [record(s, init=True) for s in init], [record(s) for s in main], terminal) == phase


@pytest.mark.parametrize(("policy", "exit_code", "restart"), [
    ("Always", 0, True), ("Always", 1, True), ("Always", 143, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True), ("OnFailure", 137, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_a_container_is_restarted_as_should_container_be_restarted_says(policy: str, exit_code: int,
                                                                        restart: bool) -> None:
    assert should_restart(policy, exit_code) is restart


@pytest.mark.parametrize(("ran_for", "waits"), [
    # doBackOff: the first restart at once, then the back-off, doubled once each wait is over
    ([1] * 8, [0, 10, 20, 40, 80, 160, 300, 300]),
    # a run longer than twice the cap since the last restart forgets the entry: at once again
    ([1, 1, 1, 601, 1], [0, 10, 20, 0, 10]),
    ([1, 1, 600, 1], [0, 10, 20, 40]),
])
def test_the_crash_loop_back_off_is_the_kubelets(ran_for: list[float], waits: list[float]) -> None:
    backoff = RestartBackoff()
    assert [backoff.next_delay(r) for r in ran_for] == waits


def test_a_failed_pull_always_waits_doubling_to_the_cap() -> None:
    backoff = RestartBackoff(first_immediate=False)
    assert [backoff.next_delay(0) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(("delay", "words"), [(10, "10s"), (40, "40s"), (80, "1m20s"), (300, "5m0s"), (0.4, "0.4s")])
def test_the_crash_loop_message_names_the_back_off_as_go_prints_a_duration(delay: float, words: str) -> None:
    assert crash_loop_message(delay, "app", "web", "ns", "u-1") == \
        f"back-off {words} restarting failed container=app pod=web_ns(u-1)"


def test_each_container_has_its_own_schedule() -> None:
    schedule = RestartSchedule(base=10, cap=300)
    assert schedule.schedule("fast", ran_for=1, now=0) == 0      # first restart: at once
    assert schedule.schedule("slow", ran_for=1, now=0) == 0
    assert schedule.take_due(0) == ["fast", "slow"]
    assert schedule.schedule("fast", ran_for=1, now=1) == 10     # fast crashes again: it waits
    assert schedule.next_in(1) == 10 and schedule.take_due(5) == []
    assert schedule.schedule("slow", ran_for=700, now=8) == 0    # slow ran long: at once, untouched by fast
    assert schedule.take_due(8) == ["slow"] and schedule.take_due(11) == ["fast"]
    assert not schedule.waiting()


def saved(name: str, state: dict[str, Any], restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "state": state, "lastState": {}, "restartCount": restarts}


@pytest.mark.parametrize(("state", "resumed", "kept"), [
    # killed with the agent (SIGKILL): still "running" in the store; it runs again
    ({"running": {"startedAt": "t"}}, True, 137),
    # stopped by the agent's SIGTERM: it runs again
    ({"terminated": {"exitCode": 143, "reason": "Error", "message": AGENT_STOPPED}}, True, 143),
    # ended on its own: the restartPolicy decides, as for any ended container
    ({"terminated": {"exitCode": 0, "reason": "Completed"}}, False, 0),
    ({"terminated": {"exitCode": 1, "reason": "Error"}}, False, 1),
    # never started: starts as new
    ({"waiting": {"reason": "ErrImagePull"}}, False, None),
])
def test_a_restarted_agent_takes_over_each_container(state: dict[str, Any], resumed: bool, kept: int | None) -> None:
    records = {"c": ContainerRecord("c", "img")}
    assert restore_records(records, {"containerStatuses": [saved("c", state, restarts=2)]}) == ({"c"} if resumed else set())
    assert records["c"].restart_count == 2  # counted when it starts again, not before
    assert (records["c"].terminated or {}).get("exitCode") == kept
