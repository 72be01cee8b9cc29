"""The wasmtime backend on its own, running the real example modules (examples/modules/README.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.runtime import (
    EXIT_KILLED,
    EXIT_TERMINATED,
    EXIT_TRAP,
    Mount,
    RunSpec,
    load_backend,
    wasmtime_instance,
)
from wasmlet.nodeagent.runtime.wasmtime import WasmtimeRuntime
from wasmlet.nodeagent.runtime.wasmtime_instance import KILL_MARGIN
from wasmlet.nodeagent.runtime.wasmtime_memory import live_memories

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"
MIB = 1024 * 1024


class Output:
    """An OutputSink that keeps what arrived, when, on which stream."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str, bytes]] = []

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((time.monotonic(), stream, data))

    def text(self, stream: str = "stdout") -> str:
        return b"".join(d for _, s, d in self.chunks if s == stream).decode()


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def spec(name: str, *args: str, container: str | None = None, **fields: Any) -> RunSpec:
    path = MODULES / f"{name}.wasm"
    return RunSpec(pod_uid="uid-1", container=container or name, module_path=path, module_digest=digest_of(path),
                   argv=[name, *args], env=fields.pop("env", {}), **fields)


def module_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wasmtime")]


async def no_module_threads(timeout: float = 10.0) -> list[str]:
    """Wait for the backend's threads (instances and epoch clock) to end; return any left."""
    deadline = time.monotonic() + timeout
    while module_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return module_threads()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's tests: each example is compiled once, then loaded from the cache."""
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture
async def runtime(cache_dir: Path) -> AsyncIterator[WasmtimeRuntime]:
    backend = load_backend("wasmtime", cache_dir)
    assert isinstance(backend, WasmtimeRuntime)
    yield backend
    await backend.close()
    assert await no_module_threads() == []
    assert live_memories() == 0  # every linear memory was unmapped with its store


async def run(runtime: WasmtimeRuntime, run_spec: RunSpec, timeout: float = 20) -> tuple[Any, Output]:
    output = Output()
    instance = await runtime.start(run_spec, output)
    async with asyncio.timeout(timeout):
        return await instance.wait(), output


async def test_argv_and_environment_reach_the_module(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("echo", "a b", "", env={"ZED": "1", "ALPHA": "x=y", "EMPTY": ""}))
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert output.text().splitlines() == ["argv[0]=echo", "argv[1]=a b", "argv[2]=", "ALPHA=x=y", "EMPTY=", "ZED=1"]


async def test_stdout_and_stderr_arrive_on_their_own_streams(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("hello"))
    assert status.exit_code == 0
    assert output.text("stdout") == "Hello from wasmlet!\n"
    assert output.text("stderr") == "hello: this line goes to stderr\n"


async def test_output_streams_live_while_the_module_runs(runtime: WasmtimeRuntime) -> None:
    output = Output()
    instance = await runtime.start(spec("ticker", "--interval-ms", "100"), output)
    # The ticker never ends by itself: lines seen before the stop were delivered as written.
    async with asyncio.timeout(30):
        while output.text().count("\n") < 3:
            await asyncio.sleep(0.01)
    status = await instance.stop(0)
    assert status.exit_code == EXIT_TERMINATED and status.message == "stopped by the agent"
    assert output.text().startswith("tick 1\ntick 2\ntick 3\n")


async def test_a_flood_of_output_is_delivered_completely_before_wait_returns(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("ticker", "--interval-ms", "0", "--count", "50000"))
    assert status.exit_code == 0
    lines = output.text().splitlines()
    assert len(lines) == 50000 and lines[-1] == "tick 50000"


@pytest.mark.parametrize("code", [0, 3, 255])
async def test_the_exit_code_is_the_modules(runtime: WasmtimeRuntime, code: int) -> None:
    status, _ = await run(runtime, spec("exit", str(code)))
    assert status.exit_code == code
    assert status.reason == ("Completed" if code == 0 else "Error")


async def test_a_trap_ends_the_container_with_134_and_the_trap_message(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("trap"))
    assert (status.exit_code, status.reason) == (EXIT_TRAP, "Error")
    assert status.message == "wasm trap: wasm `unreachable` instruction executed"
    assert output.text() == "trap: about to execute unreachable\n"


async def test_growing_memory_past_the_limit_is_oomkilled(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("grow", "64", memory_limit_bytes=16 * MIB))
    assert (status.exit_code, status.reason) == (EXIT_KILLED, "OOMKilled")
    assert "limit of 16777216 bytes exceeded" in status.message
    assert "memory.grow failed after growing 15 MiB" in output.text("stderr")


async def test_memory_below_the_limit_is_free_to_use(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec("grow", "8", memory_limit_bytes=16 * MIB))
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert "grow: done, grew 8 MiB" in output.text()


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU time a live thread of this process has used (its own, not the process's)."""
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9


async def test_a_busy_loop_is_stopped_after_its_grace_period_and_its_thread_is_freed(runtime: WasmtimeRuntime) -> None:
    baseline = module_threads()
    output = Output()
    instance = await runtime.start(spec("loop", container="spinner"), output)
    # It is really spinning, not waiting: its thread burns CPU (as fast as a loaded machine lets
    # it). Threads are reused: count from now.
    async with asyncio.timeout(30):
        while not (threads := [t for t in threading.enumerate() if t.name == "wasmtime spinner"]):
            await asyncio.sleep(0.01)
        [thread] = threads
        before = thread_cpu_seconds(thread)
        while thread_cpu_seconds(thread) - before <= 0.02:
            await asyncio.sleep(0.01)
    started = time.monotonic()
    status = await instance.stop(0.5)
    took = time.monotonic() - started
    assert (status.exit_code, status.reason, status.message) == (EXIT_TERMINATED, "Error", "stopped by the agent")
    # The grace period, then an epoch tick (10 ms) interrupts it: well before the kill margin, which
    # would have reported it killed (the status above) instead of stopped.
    assert 0.5 <= took < 0.5 + KILL_MARGIN
    assert await no_module_threads() == baseline  # and the thread that spun is gone: nothing spins on
    assert output.text() == "loop: spinning forever\n"


async def test_a_sleeping_module_stops_at_once(runtime: WasmtimeRuntime) -> None:
    instance = await runtime.start(spec("ticker", "--interval-ms", "50"), Output())
    started = time.monotonic()
    status = await instance.stop(0)
    assert status.exit_code == EXIT_TERMINATED
    assert time.monotonic() - started < KILL_MARGIN


async def test_a_module_stuck_in_a_host_call_is_reported_killed_and_its_thread_ends_later(
        runtime: WasmtimeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wasmtime_instance, "KILL_MARGIN", 0.2)
    os.mkfifo(tmp_path / "fifo")
    output = Output()
    run_spec = spec("files", "read", "/host/fifo", mounts=[Mount(tmp_path, "/host", read_only=True)])
    instance = await runtime.start(run_spec, output)
    await asyncio.sleep(0.2)  # blocked opening a FIFO nobody writes: no epoch check can reach it
    started = time.monotonic()
    status = await instance.stop(0)
    assert time.monotonic() - started < 10  # the margin, not the host call (it never returns by itself)
    assert (status.exit_code, status.reason) == (EXIT_KILLED, "Error")
    assert "did not return from a host call" in status.message
    assert instance.alive
    os.close(os.open(tmp_path / "fifo", os.O_WRONLY | os.O_NONBLOCK))  # a writer: the open returns
    assert await no_module_threads(timeout=3) == []
    assert output.text() == ""  # nothing is delivered after the instance was reported ended


async def test_a_sleeping_module_is_woken_by_a_stop(runtime: WasmtimeRuntime) -> None:
    output = Output()
    instance = await runtime.start(spec("ticker", "--interval-ms", "60000"), output)
    async with asyncio.timeout(5):
        while not output.text():
            await asyncio.sleep(0.01)
    started = time.monotonic()
    status = await instance.stop(0)
    assert time.monotonic() - started < KILL_MARGIN  # not the minute it asked to sleep
    assert (status.exit_code, status.message) == (EXIT_TERMINATED, "stopped by the agent")
    assert await no_module_threads() == []


POLL_STDIN_AND_CLOCK = """(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 5))           ;; subscription 0: userdata 5,
    (i32.store (i32.const 16) (i32.const 1))          ;;   monotonic clock,
    (i64.store (i32.const 24) (i64.const 10000000000)) ;;  10 s from now
    (i64.store (i32.const 48) (i64.const 7))          ;; subscription 1: userdata 7,
    (i32.store8 (i32.const 56) (i32.const 1))         ;;   fd_read on stdin (fd 0)
    ;; exit status: errno * 100 + events * 10 + the first event's type
    (call $exit (i32.add (i32.mul (call $poll (i32.const 0) (i32.const 200) (i32.const 2) (i32.const 400))
                                  (i32.const 100))
                         (i32.add (i32.mul (i32.load (i32.const 400)) (i32.const 10))
                                  (i32.load8_u (i32.const 210)))))))"""


async def test_a_poll_on_a_descriptor_keeps_wasmtimes_own_semantics(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    import wasmtime

    path = tmp_path / "poll.wasm"
    path.write_bytes(wasmtime.wat2wasm(POLL_STDIN_AND_CLOCK))
    started = time.monotonic()
    status, _ = await run(runtime, RunSpec("uid-1", "poll", path, digest_of(path), ["poll"], {}))
    # stdin (empty) is ready at once: one event, fd_read (type 1), no error, long before the clock.
    assert status.exit_code == 11
    assert time.monotonic() - started < 5  # not the 10 s of the clock subscription


async def test_sleeps_last_as_long_as_asked(runtime: WasmtimeRuntime) -> None:
    started = time.monotonic()
    status, output = await run(runtime, spec("ticker", "--interval-ms", "100", "--count", "4"))
    assert status.exit_code == 0 and output.text() == "tick 1\ntick 2\ntick 3\ntick 4\n"
    assert 0.3 <= time.monotonic() - started < 4.0  # at least the three sleeps, far from ten times them


async def test_a_module_that_ends_within_its_grace_period_keeps_its_own_status(runtime: WasmtimeRuntime) -> None:
    instance = await runtime.start(spec("ticker", "--interval-ms", "20", "--count", "3"), Output())
    status = await instance.stop(5)
    assert (status.exit_code, status.reason) == (0, "Completed")


async def test_a_cpu_limit_is_a_duty_cycle(runtime: WasmtimeRuntime) -> None:
    output = Output()
    started = time.monotonic()
    instance = await runtime.start(spec("cpu", "60000000", container="crunch", cpu_limit=0.25), output)
    # The module thread's own CPU time (other threads of this process may be busy: a Wasmer busy
    # loop from another test spins until the process exits), sampled until the module ends. The
    # thread may have run other instances before (threads are reused): count from now.
    [thread] = [t for t in threading.enumerate() if t.name == "wasmtime crunch"]
    before = cpu = thread_cpu_seconds(thread)
    while instance.alive:
        cpu = thread_cpu_seconds(thread)
        await asyncio.sleep(0.01)
    cpu -= before
    status = await instance.wait()
    wall = time.monotonic() - started
    assert status.exit_code == 0 and "iterations=60000000" in output.text()
    # At 250m the module may use 25 ms of CPU per 100 ms: its wall time is about 4x its CPU time.
    assert cpu > 0.05 and wall >= 2.5 * cpu, (wall, cpu)


def volume(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    root.mkdir()
    for rel, text in files.items():
        (root / rel).write_text(text)
    return root


async def test_a_read_only_host_path_can_be_read_but_not_written(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    host = volume(tmp_path, "host", {"a.txt": "from the host\n"})
    mounts = [Mount(host, "/host", read_only=True, volume_type="hostPath")]
    status, output = await run(runtime, spec("files", "read", "/host/a.txt", mounts=mounts))
    assert status.exit_code == 0 and output.text() == "from the host\n"
    status, output = await run(runtime, spec("files", "write", "/host/a.txt", "changed", mounts=mounts))
    assert status.exit_code == 1
    assert output.text("stderr") == "files: cannot write /host/a.txt: Operation not permitted\n"
    status, _ = await run(runtime, spec("files", "write", "/host/new.txt", "x", mounts=mounts))
    assert status.exit_code == 1
    assert sorted(os.listdir(host)) == ["a.txt"] and (host / "a.txt").read_text() == "from the host\n"


async def test_a_writable_volume_is_the_host_directory(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    data = volume(tmp_path, "data", {})
    mounts = [Mount(data, "/data", read_only=False, volume_type="emptyDir")]
    status, _ = await run(runtime, spec("files", "write", "/data/out.txt", "hello", mounts=mounts))
    assert status.exit_code == 0
    assert (data / "out.txt").read_text() == "hello\n"


@pytest.mark.parametrize("path", ["/data/../secret/key", "/data/link", "/secret/key"])
async def test_a_path_that_leaves_its_volume_fails_inside_the_module(
        runtime: WasmtimeRuntime, tmp_path: Path, path: str) -> None:
    secret = volume(tmp_path, "secret", {"key": "s3cret\n"})
    data = volume(tmp_path, "data", {})
    (data / "link").symlink_to(secret / "key")
    status, output = await run(runtime, spec("files", "read", path, mounts=[Mount(data, "/data", read_only=True)]))
    assert status.exit_code == 1
    assert output.text("stderr").startswith(f"files: cannot read {path}: ")
    assert "s3cret" not in output.text()


async def test_the_working_directory_resolves_relative_paths(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    app = volume(tmp_path, "app", {})
    (app / "conf").mkdir()
    (app / "conf" / "settings.txt").write_text("x=1\n")
    run_spec = spec("files", "read", "settings.txt", mounts=[Mount(app, "/app", read_only=True)],
                    working_dir="/app/conf")
    status, output = await run(runtime, run_spec)
    assert status.exit_code == 0 and output.text() == "x=1\n"


async def test_a_working_directory_outside_every_volume_is_refused(runtime: WasmtimeRuntime) -> None:
    with pytest.raises(UnsupportedPod) as refused:
        runtime.check(spec("hello", working_dir="/srv"))
    assert refused.value.reason == "UnsupportedField" and "workingDir '/srv'" in refused.value.message


async def test_a_missing_host_directory_is_a_start_error(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    mounts = [Mount(tmp_path / "absent", "/data", read_only=True, volume_type="hostPath")]
    with pytest.raises(ModuleError) as failed:
        await runtime.start(spec("hello", mounts=mounts), Output())
    assert failed.value.reason == "StartError" and "/data" in failed.value.message


async def test_an_unknown_import_is_a_start_error_not_a_crash(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    import wasmtime

    path = tmp_path / "imports.wasm"
    path.write_bytes(wasmtime.wat2wasm('(module (import "env" "nope" (func)) (func (export "_start")))'))
    await runtime.prepare(path, digest_of(path))  # it compiles: the import is only missing at link time
    run_spec = RunSpec("uid-1", "c", path, digest_of(path), ["c"], {})
    with pytest.raises(ModuleError) as failed:
        await runtime.start(run_spec, Output())
    assert failed.value.reason == "StartError" and "env::nope" in failed.value.message


@pytest.mark.parametrize("content, expected", [
    (os.urandom(4096), "wasm magic"),
    ((MODULES / "hello.wasm").read_bytes()[:200], "not a valid wasm module"),
    (b"\0asm\x01\0\0\0", "no _start"),
    (b"", "wasm magic"),
])
async def test_bytes_that_are_not_a_wasi_command_are_an_invalid_module(
        runtime: WasmtimeRuntime, tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.wasm"
    path.write_bytes(content)
    with pytest.raises(ModuleError) as failed:
        await runtime.prepare(path, digest_of(path))
    assert failed.value.reason == "InvalidModule" and expected in failed.value.message
    status, _ = await run(runtime, spec("hello"))  # and the backend carries on
    assert status.exit_code == 0


async def test_a_fresh_backend_loads_the_compiled_module_from_the_cache(tmp_path: Path) -> None:
    module = MODULES / "files.wasm"
    digest = digest_of(module)
    first = WasmtimeRuntime(cache_dir=tmp_path)
    started = time.perf_counter()
    await first.prepare(module, digest)
    compiled = time.perf_counter() - started
    await first.close()
    cached = first.cache_path(digest)
    assert cached.is_file() and cached.parent.name.startswith("wasmtime-")

    second = WasmtimeRuntime(cache_dir=tmp_path)
    started = time.perf_counter()
    # The module file is not even read: the compiled artifact is all the backend needs.
    await second.prepare(tmp_path / "gone.wasm", digest)
    loaded = time.perf_counter() - started
    listing = spec("files", "list", f"/data/{cached.parent.name}", mounts=[Mount(tmp_path, "/data", True)])
    status, output = await run(second, listing)
    await second.close()
    assert status.exit_code == 0 and cached.name in output.text()
    assert loaded < compiled, (loaded, compiled)


async def test_closing_the_backend_stops_every_instance(cache_dir: Path) -> None:
    backend = WasmtimeRuntime(cache_dir=cache_dir)
    instances = [await backend.start(spec(name, *args, container=f"c{i}"), Output())
                 for i, (name, args) in enumerate([("loop", []), ("ticker", ["--interval-ms", "50"]), ("loop", [])])]
    await backend.close()
    for instance in instances:
        assert (await instance.wait()).exit_code == EXIT_TERMINATED
    assert await no_module_threads() == []


async def test_a_request_instance_reads_its_body_and_its_output_arrives_whole_up_to_the_limit(
        runtime: WasmtimeRuntime) -> None:
    env = {"REQUEST_METHOD": "POST", "QUERY_STRING": "", "CONTENT_LENGTH": "5"}
    output = Output()
    instance = await runtime.start(spec("http-echo", env=env, stdin=b"a\x00b\nc", capture_limit=4096), output)
    assert (await instance.wait()).exit_code == 0
    assert len(output.chunks) == 1  # one piece, when the module ended
    head, _, body = output.text().partition("\n\n")
    assert head == "Content-Type: application/json" and json.loads(body)["body"] == "a\u0000b\nc"

    big = Output()
    instance = await runtime.start(spec("http-echo", env={**env, "QUERY_STRING": "big=100000"}, capture_limit=1000),
                                   big)
    await instance.wait()
    assert len(b"".join(d for _, s, d in big.chunks if s == "stdout")) == 1001  # the limit, and one byte to show it


async def test_request_instances_reuse_pooled_slots_without_seeing_an_earlier_requests_memory(
        runtime: WasmtimeRuntime) -> None:
    """`leftover` answers `dirty` if its memory still holds the marker an earlier instance wrote."""
    for _ in range(3):  # one after the other: each takes the slot the one before gave back
        status, output = await run(runtime, spec("leftover", capture_limit=4096))
        assert status.exit_code == 0 and output.text().endswith("\n\nclean\n")
    together = await asyncio.gather(*(run(runtime, spec("leftover", capture_limit=4096)) for _ in range(8)))
    assert [output.text().rpartition("\n\n")[2] for _, output in together] == ["clean\n"] * 8
    assert runtime.pooled_instances == 0  # every slot was given back as its store closed


async def test_request_instances_beyond_the_pool_run_on_the_on_demand_engine(cache_dir: Path) -> None:
    backend = WasmtimeRuntime(cache_dir=cache_dir, pool_slots=2)
    try:
        requests = [await backend.start(spec("ticker", "--interval-ms", "20", container=f"r{i}", capture_limit=4096),
                                        Output()) for i in range(4)]
        assert backend.pooled_instances == 2  # two in the pool, two beside it: none refused
        container = await backend.start(spec("ticker", "--interval-ms", "20"), Output())
        assert backend.pooled_instances == 2  # a container's instance never takes a slot
        for instance in [*requests, container]:
            assert (await instance.stop(0)).exit_code == EXIT_TERMINATED
        assert backend.pooled_instances == 0
        status, output = await run(backend, spec("leftover", capture_limit=4096))
        assert status.exit_code == 0 and output.text().endswith("clean\n")
    finally:
        await backend.close()
    assert await no_module_threads() == []


TWO_TABLES = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (table 1 funcref)
  (data (i32.const 16) "Content-Type: text/plain\\0a\\0atwo tables\\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 37))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


async def test_a_module_beyond_the_pools_bounds_serves_its_requests_from_the_on_demand_engine(
        runtime: WasmtimeRuntime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The pool allows one table per instance (wasmtime's default): a module with two is run on
    the on-demand engine instead, its first request included, and its slot is not lost."""
    caplog.set_level(logging.INFO, logger="wasmlet.nodeagent.runtime.wasmtime")
    path = tmp_path / "two-tables.wasm"
    path.write_bytes(wasmtime.wat2wasm(TWO_TABLES))
    request = RunSpec(pod_uid="uid-1", container="handler", module_path=path, module_digest=digest_of(path),
                      argv=["handler"], env={}, capture_limit=4096)
    await runtime.prepare(path, request.module_digest)
    for _ in range(2):
        status, output = await run(runtime, request)
        assert status.exit_code == 0 and output.text().endswith("\n\ntwo tables\n")
        assert runtime.pooled_instances == 0
    assert caplog.text.count("does not run in wasmtime's instance pool") == 1  # tried in the pool once
