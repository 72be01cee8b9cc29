"""The Pod state machine, driven through the controller with the FakeRuntime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wasmlet.nodeagent.lifecycle import TRANSITIONS, State, check_transition
from wasmlet.nodeagent.runtime.fake import FakeRun

from tests.unit.agent_harness import Harness


def exits(code: int, after: float = 0.0) -> FakeRun:
    return FakeRun(output=b"out\n", exit_code=code, after=after)


def terminated(status: dict, index: int = 0) -> dict:
    return status["containerStatuses"][index]["state"]["terminated"]


async def test_a_module_that_exits_zero_makes_the_pod_succeed(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    h.sync(h.pod())
    await h.until(lambda: h.finished())
    status = h.status()
    assert status["phase"] == "Succeeded"
    assert terminated(status) | {"finishedAt": "", "startedAt": ""} == {
        "exitCode": 0, "reason": "Completed", "finishedAt": "", "startedAt": ""}
    assert status["containerStatuses"][0]["imageID"].startswith("sha256:")
    assert [c["status"] for c in status["conditions"] if c["type"] == "Ready"] == ["False"]
    assert [e[2] for e in h.events] == ["Pulling", "Pulled", "Created", "Started"]


async def test_a_nonzero_exit_with_restart_never_fails_the_pod(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(3))
    h.sync(h.pod())
    await h.until(lambda: h.finished())
    assert h.status()["phase"] == "Failed"
    assert terminated(h.status())["exitCode"] == 3
    assert terminated(h.status())["reason"] == "Error"


async def test_restart_always_backs_off_and_counts_restarts(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(1))
    h.sync(h.pod(restart="Always"))
    await h.until(lambda: len(h.runtime.starts) >= 3)
    assert any(e[2] == "BackOff" for e in h.events)
    worker = h.worker()
    assert worker.records["main"].restart_count >= 2
    assert worker.records["main"].last_state["terminated"]["exitCode"] == 1
    await h.controller.stop_all()


async def test_on_failure_restarts_a_failed_container_until_it_succeeds(tmp_path: Path) -> None:
    codes = iter([1, 1, 0])
    h = Harness(tmp_path, lambda spec: exits(next(codes)))
    h.sync(h.pod(restart="OnFailure"))
    await h.until(lambda: h.finished())
    assert h.status()["phase"] == "Succeeded"
    assert h.status()["containerStatuses"][0]["restartCount"] == 2


async def test_a_running_pod_reports_running_and_ready(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(exit_code=None))
    h.sync(h.pod(restart="Always"))
    await h.until(lambda: h.status().get("phase") == "Running")
    ready = {c["type"]: c["status"] for c in h.status()["conditions"]}
    assert ready["Ready"] == ready["ContainersReady"] == "True"
    assert "running" in h.status()["containerStatuses"][0]["state"]
    await h.controller.stop_all()


async def test_deleting_a_pod_stops_it_and_asks_for_removal(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(exit_code=None))
    pod = h.pod(restart="Always")
    h.sync(pod)
    await h.until(lambda: h.status().get("phase") == "Running")
    pod["metadata"]["deletionTimestamp"] = "2026-11-21T00:00:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 1
    h.sync(pod)
    await h.until(lambda: h.finished())
    assert terminated(h.status())["exitCode"] == 143
    assert any(e[2] == "Killing" for e in h.events)
    assert h.runtime.released == ["uid-p"]


async def test_init_containers_run_in_order_before_the_main_container(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    image = f"file:{tmp_path}/m.wasm"
    pod = h.pod(initContainers=[{"name": "one", "image": image}, {"name": "two", "image": image}])
    h.sync(pod)
    await h.until(lambda: h.finished())
    assert [s.container for s in h.runtime.starts] == ["one", "two", "main"]
    assert all(s["state"]["terminated"]["exitCode"] == 0 for s in h.status()["initContainerStatuses"])


async def test_a_failing_init_container_with_restart_never_fails_the_pod(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(2 if spec.container == "init" else 0))
    pod = h.pod(initContainers=[{"name": "init", "image": f"file:{tmp_path}/m.wasm"}])
    h.sync(pod)
    await h.until(lambda: h.finished())
    assert h.status()["phase"] == "Failed"
    assert [s.container for s in h.runtime.starts] == ["init"]


async def test_an_unknown_runtime_class_fails_the_pod_with_a_precise_reason(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    h.sync(h.pod(runtimeClassName="wasmtime"))
    await h.until(lambda: h.finished())
    assert h.status()["phase"] == "Failed"
    assert h.status()["reason"] == "UnknownRuntimeClass"
    assert "wasmtime" in h.status()["message"]


async def test_a_missing_configmap_key_is_a_create_container_config_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    h.objects.replace([{"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {}}])
    container = {"name": "main", "image": f"file:{tmp_path}/m.wasm",
                 "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing"}}}]}
    h.sync(h.pod(containers=[container]))
    await h.until(lambda: any(e[2] == "Failed" for e in h.events))
    waiting = h.worker().records["main"].state["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "missing" in waiting["message"]
    assert h.runtime.starts == []
    await h.controller.stop_all()


async def test_active_deadline_seconds_fails_a_running_pod(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(exit_code=None))
    h.sync(h.pod(restart="Always", activeDeadlineSeconds=1))
    await h.until(lambda: h.finished())
    assert h.status()["phase"] == "Failed"
    assert h.status()["reason"] == "DeadlineExceeded"


async def test_an_unsupported_volume_type_fails_the_pod_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    h.sync(h.pod(volumes=[{"name": "v", "nfs": {"server": "x", "path": "/"}}]))
    status = h.status()
    assert status["phase"] == "Failed"
    assert status["reason"] == "UnsupportedVolume"
    assert "nfs" in status["message"]


async def test_a_pod_that_is_already_terminal_is_adopted_and_never_run(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    pod = h.pod()
    pod["status"] = {"phase": "Succeeded", "containerStatuses": [
        {"name": "main", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    h.sync(pod)
    await h.until(lambda: h.worker().last_status.get("phase") == "Succeeded")
    assert h.runtime.starts == []
    assert h.reporter.latest == {}  # nothing new to report


def test_illegal_transitions_are_refused() -> None:
    with pytest.raises(RuntimeError, match="Terminated → Running"):
        check_transition(State.TERMINATED, State.RUNNING)
    assert all(following in State for moves in TRANSITIONS.values() for following in moves)


def test_every_non_final_state_has_a_way_out() -> None:
    for state, moves in TRANSITIONS.items():
        assert moves or state in (State.TERMINATED, State.FAILED)




async def test_a_removed_pod_is_stopped_and_its_volumes_and_logs_are_cleaned_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(output=b"x\n", exit_code=None))
    h.sync(h.pod(restart="Always", volumes=[{"name": "scratch", "emptyDir": {}}]))
    await h.until(lambda: h.status().get("phase") == "Running")
    assert (tmp_path / "pods" / "uid-p" / "volumes" / "scratch").is_dir()
    assert any((tmp_path / "logs").iterdir())
    h.controller.remove("uid-p")
    await h.until(lambda: h.controller.workers() == [])
    assert not (tmp_path / "pods" / "uid-p").exists()
    assert not any((tmp_path / "logs").iterdir())


async def test_a_pod_from_the_api_may_not_name_a_node_file_as_its_module(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: exits(0))
    h.controller.sync(h.pod())  # source "api"
    assert h.status()["phase"] == "Failed"
    assert h.status()["reason"] == "InvalidImageName"
    assert h.runtime.starts == []


async def test_a_pod_stopped_while_its_start_waits_for_a_runtime_slot_ends_without_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(exit_code=None))
    started = asyncio.Event()

    async def never_starts(spec: object, output: object) -> object:
        started.set()
        await asyncio.Event().wait()  # a Wasmer client with all 200 places taken queues the spawn
        raise AssertionError("unreachable")

    h.runtime.start = never_starts  # type: ignore[method-assign]
    h.sync(h.pod(restart="Always"))
    await started.wait()
    await h.controller.stop_all()
    assert h.finished()
    assert "running" not in h.status()["containerStatuses"][0]["state"]


async def test_a_pod_removed_and_added_again_with_the_same_uid_while_stopping_runs_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(output=b"x\n", exit_code=None))
    pod = h.pod(restart="Always", terminationGracePeriodSeconds=1)
    h.sync(pod)
    await h.until(lambda: h.status().get("phase") == "Running")
    h.controller.remove("uid-p")
    h.sync(pod)  # back before the first worker finished stopping
    await h.until(lambda: h.status().get("containerStatuses", [{}])[0].get("restartCount") == 1
                  and "running" in h.status()["containerStatuses"][0]["state"])
    status = h.status()
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 143
    assert len(h.controller.workers()) == 1
    await h.controller.stop_all()


async def test_every_container_restarts_on_its_own_and_a_running_one_is_left_alone(tmp_path: Path) -> None:
    def script(spec: Any) -> FakeRun:
        return exits(1) if spec.container == "crashy" else FakeRun(output=b"x\n", exit_code=None)

    h = Harness(tmp_path, script)
    image = f"file:{tmp_path}/m.wasm"
    h.sync(h.pod(restart="Always", containers=[{"name": "crashy", "image": image}, {"name": "steady", "image": image}]))
    await h.until(lambda: h.status().get("containerStatuses", [{}])[0].get("restartCount", 0) >= 3)
    crashy, steady = h.status()["containerStatuses"]
    assert steady["restartCount"] == 0 and "running" in steady["state"]
    assert crashy["lastState"]["terminated"]["exitCode"] == 1
    assert [s.container for s in h.runtime.starts].count("steady") == 1
    await h.controller.stop_all()


async def test_a_failing_init_container_is_retried_counting_each_run_once(tmp_path: Path) -> None:
    runs: list[str] = []

    def script(spec: Any) -> FakeRun:
        runs.append(spec.container)
        return exits(1 if spec.container == "setup" and runs.count("setup") < 3 else 0)

    h = Harness(tmp_path, script)
    image = f"file:{tmp_path}/m.wasm"
    h.sync(h.pod(restart="OnFailure", initContainers=[{"name": "setup", "image": image}]))
    await h.until(lambda: h.status().get("phase") == "Succeeded")
    setup = h.status()["initContainerStatuses"][0]
    assert setup["restartCount"] == 2 == runs.count("setup") - 1
    assert setup["lastState"]["terminated"]["exitCode"] == 1
    # One file per run; only the current and the previous run keep theirs (logs.prune_runs).
    assert sorted(p.name for p in (tmp_path / "logs").glob("*/setup/*.log")) == ["1.log", "2.log"]


async def test_a_pod_added_again_and_then_deleted_while_stopping_is_not_run_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda spec: FakeRun(output=b"x\n", exit_code=None))
    pod = h.pod(restart="Always", terminationGracePeriodSeconds=1)
    h.sync(pod)
    await h.until(lambda: h.status().get("phase") == "Running")
    h.controller.remove("uid-p")
    h.sync(pod)
    h.sync({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                                "deletionGracePeriodSeconds": 0}})
    await h.until(lambda: h.finished())
    await h.until(lambda: all(not w.instances for w in h.controller.workers()))
    assert [s.container for s in h.runtime.starts] == ["main"]
    assert h.status()["phase"] == "Failed"  # deleted while running: ended by the stop (exit 143)
