"""The pure parts of the wasmtime backend and the Pod fields it reads: limits parsed from the
Pod, volume types on mounts, how an end is reported, where the working directory is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import wasmtime

from wasmlet.nodeagent.podspec import parse_pod
from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TERMINATED, EXIT_TRAP, Mount, RunSpec
from wasmlet.nodeagent.runtime.wasmtime_control import Control, DutyCycle, EpochClock
from wasmlet.nodeagent.runtime.wasmtime_exits import exit_status, summary, working_dir_mount
from wasmlet.nodeagent.runtime.wasmtime_preopens import open_preopens
from wasmlet.nodeagent.volumes import mounts_for

TRAP = ("error while executing at wasm backtrace:\n    0:     0x69 - <unknown>!<wasm function 1>\n\n"
        "Caused by:\n    wasm trap: wasm `unreachable` instruction executed\n")


class StillClock(EpochClock):
    """An epoch clock that never ticks: these tests run no wasm."""

    def __init__(self) -> None:
        super().__init__(engine=None)
        self.needs = 0

    def need(self) -> None:
        self.needs += 1

    def release(self) -> None:
        self.needs -= 1


def control(**limits: object) -> Control:
    return Control(StillClock(), **limits)  # type: ignore[arg-type]


def test_cpu_and_memory_limits_are_read_from_the_pod() -> None:
    resources = {"limits": {"cpu": "250m", "memory": "64Mi"}}
    plan = parse_pod({"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "image": "configmap://m/a.wasm", "resources": resources},
        {"name": "b", "image": "configmap://m/a.wasm", "resources": {"limits": {"cpu": "2"}}},
        {"name": "c", "image": "configmap://m/a.wasm"}]}})
    assert [(c.cpu_limit, c.memory_limit_bytes) for c in plan.containers] == [
        (0.25, 64 * 2**20), (2.0, None), (None, None)]


def test_mounts_carry_their_volume_type() -> None:
    plan = parse_pod({"metadata": {"uid": "u"}, "spec": {
        "volumes": [{"name": "host", "hostPath": {"path": "/srv"}}, {"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "a", "image": "configmap://m/a.wasm", "volumeMounts": [
            {"name": "host", "mountPath": "/host", "readOnly": True}, {"name": "scratch", "mountPath": "/tmp"}]}]}})
    paths = {"host": Path("/srv"), "scratch": Path("/var/lib/wasmlet/pods/u/volumes/scratch")}
    mounts = mounts_for(plan.containers[0], paths, plan.volumes)
    assert [(m.guest_path, m.read_only, m.volume_type) for m in mounts] == [
        ("/host", True, "hostPath"), ("/tmp", False, "emptyDir")]


def test_a_trap_is_reported_by_its_root_cause_without_the_backtrace() -> None:
    assert summary(TRAP, cause_only=True) == "wasm trap: wasm `unreachable` instruction executed"
    status = exit_status(control(), wasmtime.WasmtimeError(TRAP))
    assert (status.exit_code, status.reason, status.message) == (
        EXIT_TRAP, "Error", "wasm trap: wasm `unreachable` instruction executed")
    assert summary("unknown import: `env::nope` has not been defined") == \
        "unknown import: `env::nope` has not been defined"


def test_an_end_is_reported_by_what_caused_it() -> None:
    exited = control()
    exited.exit_code = 255
    assert (exit_status(exited, None).exit_code, exit_status(exited, None).reason) == (255, "Error")
    assert exit_status(control(), None).reason == "Completed"
    stopped = control()
    stopped.stopped = True
    assert exit_status(stopped, wasmtime.WasmtimeError("stopped by the agent")).exit_code == EXIT_TERMINATED
    over = control(memory_limit=2**20)
    assert over.allow_memory(2**20)
    assert not over.allow_memory(2**20 + 65536)
    assert over.ending  # the next epoch check (or a sleep) ends it
    over.exit_code = 1  # the module printed its own error and exited: still over its limit
    status = exit_status(over, None)
    assert (status.exit_code, status.reason) == (EXIT_KILLED, "OOMKilled")
    assert "1048576 bytes exceeded" in status.message and "1114112 bytes was refused" in status.message


def test_the_working_directory_is_preopened_from_the_deepest_mount_holding_it(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "data" / "in").mkdir(parents=True)
    mounts = [Mount(tmp_path / "app", "/app", read_only=True), Mount(tmp_path / "data", "/app/data", read_only=False)]
    spec = RunSpec("u", "c", tmp_path / "m.wasm", "sha256:x", ["c"], {}, mounts=mounts, working_dir="/app/data/in")
    assert working_dir_mount(spec) == mounts[1]
    preopens = open_preopens(spec)
    try:
        assert [(os.readlink(preopens.host_path(fd)), guest, writable) for fd, guest, writable in preopens.entries] == [
            (str(tmp_path / "app"), "/app", False), (str(tmp_path / "data"), "/app/data", True),
            (str(tmp_path / "data" / "in"), ".", True)]
    finally:
        preopens.close()
    outside = RunSpec("u", "c", tmp_path / "m.wasm", "sha256:x", ["c"], {}, mounts=mounts, working_dir="/srv")
    assert working_dir_mount(outside) is None


def test_a_cpu_limit_pauses_a_busy_module_like_a_cfs_quota() -> None:
    clock = {"wall": 100.0, "cpu": 5.0}
    duty = DutyCycle(0.25, wall_clock=lambda: clock["wall"], cpu_clock=lambda: clock["cpu"])
    duty.start()
    ran = paused = 0.0
    for _ in range(400):  # 4 s of ticks: the module spins whenever it is not paused
        clock["wall"] += 0.01
        clock["cpu"] += 0.01
        ran += 0.01
        pause = duty.pause()
        clock["wall"] += pause
        paused += pause
    assert ran / (ran + paused) == pytest.approx(0.25, abs=0.01)


def test_a_module_within_its_cpu_quota_is_never_paused() -> None:
    clock = {"wall": 0.0, "cpu": 0.0}
    duty = DutyCycle(0.5, wall_clock=lambda: clock["wall"], cpu_clock=lambda: clock["cpu"])
    duty.start()
    for _ in range(100):  # 40 % busy: 4 ms of CPU per 10 ms
        clock["wall"] += 0.01
        clock["cpu"] += 0.004
        assert duty.pause() == 0
