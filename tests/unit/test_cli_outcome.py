"""`wasmlet run`'s judgement of a Pod and the summary's lines, from Pod statuses alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wasmlet.cli.outcome import outcome, stuck, waiting_for
from wasmlet.cli.summary import container_line, log_tail
from wasmlet.nodeagent.logs import ContainerLog


def status(phase: str, *containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "containerStatuses": list(containers), **extra}


def waiting(reason: str, message: str = "", restarts: int = 0) -> dict[str, Any]:
    return {"name": "main", "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}}}


RUNNING = {"name": "main", "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
EXITED_3 = {"name": "main", "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}


@pytest.mark.parametrize(("pod", "service", "running_for", "wait"), [
    (status("Pending", waiting("ContainerCreating")), False, None, True),
    (status("Running", RUNNING), False, 50.0, True),  # a job: until it ends
    (status("Succeeded"), False, None, False),
    (status("Pending", waiting("ImagePullBackOff", "cannot read module file")), False, None, False),
    (status("Pending", waiting("CreateContainerConfigError")), True, None, False),
    (status("Running", waiting("CrashLoopBackOff", restarts=2)), False, None, True),  # it may still succeed
    (status("Running", RUNNING), True, None, True),
    (status("Running", RUNNING), True, 2.9, True),
    (status("Running", RUNNING), True, 3.0, False),  # a service: for --duration
])
def test_the_run_waits_only_while_there_is_something_to_wait_for(pod: dict[str, Any], service: bool,
                                                                   running_for: float | None, wait: bool) -> None:
    assert waiting_for(pod, service, running_for, duration=3.0) is wait


def test_a_stopped_service_is_a_success_whatever_its_exit_code() -> None:
    stopped = status("Failed", {**EXITED_3, "state": {"terminated": {"exitCode": 143, "reason": "Error"}}})
    assert outcome(stopped, True, stopped_running=True).ok
    assert not outcome(stopped, True).ok


def test_each_way_of_not_ending_well_has_its_one_line() -> None:
    assert outcome(status("Failed", EXITED_3), False).reason == "Failed: container main: exit code 3, Error"
    deadline = status("Failed", reason="DeadlineExceeded", message="Pod was active too long")
    assert outcome(deadline, False).reason == "Failed: DeadlineExceeded — Pod was active too long"
    assert outcome(status("Pending", waiting("ErrImagePull", "nope")), False).reason == \
        "container main: ErrImagePull — nope"
    running = status("Running", RUNNING)
    stopped = status("Failed", EXITED_3)
    assert outcome(stopped, False, gave_up_after=60, before_stop=running).reason == \
        "gave up after 60s (--timeout): still Running (main: running)"
    assert outcome(stopped, False, interrupted=True, before_stop=running).reason == \
        "interrupted (Ctrl-C) while Running (main: running)"
    assert outcome(status("Running", waiting("CrashLoopBackOff", restarts=1)), True).reason == \
        "service not running when stopped: Running (main: CrashLoopBackOff, 1 restart)"


def test_a_long_message_is_cut_to_keep_one_line() -> None:
    reason = stuck(status("Pending", waiting("ErrImagePull", "x" * 500)))
    assert reason is not None and len(reason) < 200 and reason.endswith("…")


@pytest.mark.parametrize(("cstatus", "line"), [
    (waiting("ContainerCreating"), "never started"),
    (waiting("ImagePullBackOff", "gone", restarts=1), "waiting, ImagePullBackOff, 1 restart — gone"),
    ({**RUNNING, "restartCount": 2}, "running, 2 restarts"),
    ({"name": "m", "restartCount": 1, "state": {"terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:04Z"}}},
     "exit code 0, Completed, ran 4s, 1 restart"),
])
def test_a_container_line_says_how_it_ended_or_that_it_never_started(cstatus: dict[str, Any], line: str) -> None:
    assert container_line(cstatus) == line


def test_a_log_tail_keeps_the_last_lines_of_every_run_and_counts_the_rest(tmp_path: Path) -> None:
    for run, count in ((0, 30), (1, 5)):
        log = ContainerLog(tmp_path / f"{run}.log", max_bytes=1 << 20, max_files=2)
        for i in range(count):
            log.write("stdout", f"run {run} line {i}\n".encode())
        log.close()
    tail = list(log_tail(tmp_path, 3))
    assert tail == ["  … 32 earlier lines left out (--log-lines 3)", "  run 1 line 2", "  run 1 line 3", "  run 1 line 4"]
    assert list(log_tail(tmp_path, 0)) == ["  … 35 earlier lines left out (--log-lines 0)"]


def test_the_message_of_a_container_the_run_stopped_is_left_out() -> None:
    stopped = {"name": "m", "restartCount": 0, "state": {"terminated": {
        "exitCode": 143, "reason": "Error", "message": "the node agent stopped"}}}
    assert container_line(stopped) == "exit code 143, Error — the node agent stopped"
    assert container_line(stopped, message=False) == "exit code 143, Error"
