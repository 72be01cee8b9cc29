"""Which Events a status change deserves: Warnings for problems, Normal ones for rollouts and outcomes."""

from __future__ import annotations

from typing import Any

from wasmlet.operator.events import Notice, notices


def status(ready: tuple[str, str, str] = ("True", "AllReplicasReady", "1/1 replicas ready"),
           degraded: tuple[str, str] = ("False", "AsExpected"), progressing: str = "ReplicasUpToDate",
           template: str = "h1", **extra: Any) -> dict[str, Any]:
    return {"templateHash": template, **extra, "conditions": [
        {"type": "Ready", "status": ready[0], "reason": ready[1], "message": ready[2]},
        {"type": "Progressing", "status": "True", "reason": progressing, "message": ""},
        {"type": "Degraded", "status": degraded[0], "reason": degraded[1], "message": "pod x: why"},
    ]}


def test_an_unchanged_status_deserves_nothing() -> None:
    assert notices(status(), status()) == []
    assert notices(None, status()) == []


def test_a_problem_reason_is_a_warning_once_per_message() -> None:
    stuck = status(ready=("False", "Unschedulable", "1 of 1 replica(s) cannot be placed"))
    assert notices(status(), stuck) == [Notice("Warning", "Unschedulable", "1 of 1 replica(s) cannot be placed")]
    assert notices(stuck, stuck) == []
    worse = status(ready=("False", "Unschedulable", "2 of 2 replica(s) cannot be placed"))
    assert [n.reason for n in notices(stuck, worse)] == ["Unschedulable"]


def test_degraded_warns_when_it_turns_true_or_changes_reason() -> None:
    crash = status(ready=("False", "CrashLoopBackOff", "0/1"), degraded=("True", "CrashLoopBackOff"))
    assert notices(status(), crash) == [Notice("Warning", "CrashLoopBackOff", "pod x: why")]
    assert notices(crash, crash) == []
    failed = status(ready=("False", "ReplicasFailed", "1/1 failed"), degraded=("True", "ReplicasFailed"))
    assert [n.reason for n in notices(status(), failed)] == ["ReplicasFailed"]  # one Warning, not two


def test_a_new_template_and_its_completed_rollout_are_announced() -> None:
    rolling = status(template="h2", progressing="RollingUpdate")
    assert notices(status(), rolling, strategy="RollingUpdate") == [
        Notice("Normal", "RollingUpdate", "rolling out Pod template h2 (was h1)")]
    done = status(template="h2", updatedReplicas=3)
    assert notices(rolling, done) == [Notice("Normal", "RolloutComplete", "every replica runs Pod template h2 (3 updated)")]
    assert [n.reason for n in notices(status(), status(template="h2"), strategy="Recreate")] == ["Recreate"]


def test_completion_is_announced_once() -> None:
    complete = status(ready=("True", "Complete", "2/2 replicas completed"))
    assert notices(status(ready=("True", "AllReplicasReady", "")), complete) == [
        Notice("Normal", "Completed", "2/2 replicas completed")]
    assert notices(complete, complete) == []
