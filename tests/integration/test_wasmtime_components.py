"""WASI 0.2 components on the wasmtime backend, from two real toolchains: C modules through the
preview1 adapter (`jco new --wasi-command`) and a Python program through componentize-py — with
the core modules' contract: argv, env, volumes, output, exit codes, memory limits, stops, the
compiled cache; and what the host cannot give named before a Pod starts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TERMINATED, Mount, RunSpec
from wasmlet.nodeagent.runtime.wasmer import WasmerRuntime
from wasmlet.nodeagent.runtime.wasmtime import WasmtimeRuntime
from wasmlet.nodeagent.runtime.wasmtime_memory import live_memories

from tests.integration.component_helpers import component_path
from tests.integration.test_wasmtime_runtime import Output, digest_of, run

MIB = 1024 * 1024
# A component importing an interface no host here has, and outgoing HTTP, around a `run` that returns ok.
EXOTIC = """(component
  (import "wasi:keyvalue/store@0.2.0-draft" (instance))
  (import "wasi:http/outgoing-handler@0.2.0" (instance))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))"""
HTTP_ONLY = EXOTIC.replace('(import "wasi:keyvalue/store@0.2.0-draft" (instance))', "")


def spec(path: Path, *argv: str, **fields: Any) -> RunSpec:
    return RunSpec(pod_uid="uid-1", container=fields.pop("container", path.stem), module_path=path,
                   module_digest=digest_of(path), argv=list(argv), env=fields.pop("env", {}), **fields)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's tests: the Python component is compiled once (seconds), then loaded."""
    return tmp_path_factory.mktemp("components")


@pytest.fixture
async def runtime(cache_dir: Path) -> AsyncIterator[WasmtimeRuntime]:
    backend = WasmtimeRuntime(cache_dir)
    yield backend
    await backend.close()
    assert live_memories() == 0  # every linear memory the agent allocated was unmapped with its store


async def test_argv_and_environment_reach_an_adapted_c_component(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec(component_path("echo"), "echo", "a b", "", env={"ZED": "1", "A": "x=y"}))
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert output.text().splitlines() == ["argv[0]=echo", "argv[1]=a b", "argv[2]=", "A=x=y", "ZED=1"]


async def test_a_python_component_gets_argv_env_and_volumes(
        runtime: WasmtimeRuntime, python_component: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    mounts = [Mount(data, "/data", read_only=False, volume_type="emptyDir")]
    status, output = await run(runtime, spec(python_component, "hello-py", "read", "/data/in.txt",
                                             env={"GREETING": "hi"}, mounts=mounts))
    assert (status.exit_code, status.reason) == (0, "Completed")
    lines = output.text().splitlines()
    assert lines[0].startswith("hello-py: Hello from Python 3.") and lines[0].endswith("(wasi)")
    assert lines[1:] == ["argv: ['hello-py', 'read', '/data/in.txt']", "env: GREETING=hi", "from the host"]
    status, output = await run(runtime, spec(python_component, "hello-py", "write", "/data/out.txt", "x y",
                                             mounts=mounts))
    assert status.exit_code == 0 and (data / "out.txt").read_text() == "x y\n"


async def test_a_read_only_volume_refuses_a_components_writes(
        runtime: WasmtimeRuntime, python_component: Path, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("keep\n")
    mounts = [Mount(tmp_path, "/host", read_only=True, volume_type="hostPath")]
    status, output = await run(runtime, spec(component_path("files"), "files", "write", "/host/a.txt", "x",
                                             mounts=mounts))
    assert (status.exit_code, status.reason) == (1, "Error")
    assert output.text("stderr").startswith("files: cannot write /host/a.txt: ")
    status, output = await run(runtime, spec(python_component, "hello-py", "write", "/host/a.txt", "x",
                                             mounts=mounts))
    assert (status.exit_code, status.reason) == (1, "Error")
    assert "hello-py: cannot write /host/a.txt: " in output.text("stderr")
    assert (tmp_path / "a.txt").read_text() == "keep\n"


async def test_a_path_that_leaves_its_volume_fails_inside_the_component(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("s3cret\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "secret" / "key")
    for path in ("/data/link", "/data/../secret/key"):
        status, output = await run(runtime, spec(component_path("files"), "files", "read", path,
                                                 mounts=[Mount(tmp_path / "data", "/data", read_only=True)]))
        assert status.exit_code == 1 and "s3cret" not in output.text()


@pytest.mark.parametrize("code, expected", [("0", 0), ("1", 1), ("3", 1), ("255", 1)])
async def test_a_components_exit_status_is_zero_or_one(runtime: WasmtimeRuntime, code: str, expected: int) -> None:
    """WASI 0.2's `wasi:cli/exit` carries ok or err only: the adapter maps every non-zero code to 1."""
    status, output = await run(runtime, spec(component_path("exit"), "exit", code))
    assert (status.exit_code, status.reason) == (expected, "Completed" if expected == 0 else "Error")
    assert output.text() == f"exit: exiting with code {code}\n"


async def test_a_failing_python_program_exits_one(runtime: WasmtimeRuntime, python_component: Path) -> None:
    status, _ = await run(runtime, spec(python_component, "hello-py", "fail"))
    assert (status.exit_code, status.reason) == (1, "Error")


async def test_a_component_growing_past_its_memory_limit_is_oomkilled(runtime: WasmtimeRuntime) -> None:
    status, output = await run(runtime, spec(component_path("grow"), "grow", "64", memory_limit_bytes=16 * MIB))
    assert (status.exit_code, status.reason) == (EXIT_KILLED, "OOMKilled")
    assert "limit of 16777216 bytes exceeded" in status.message
    status, output = await run(runtime, spec(component_path("grow"), "grow", "8", memory_limit_bytes=16 * MIB))
    assert (status.exit_code, status.reason) == (0, "Completed") and "grow: done, grew 8 MiB" in output.text()


async def test_a_busy_component_is_stopped_after_its_grace_period(runtime: WasmtimeRuntime) -> None:
    output = Output()
    instance = await runtime.start(spec(component_path("loop"), "loop"), output)
    async with asyncio.timeout(10):
        while "spinning" not in output.text():
            await asyncio.sleep(0.01)
    started = time.monotonic()
    status = await instance.stop(0.3)
    assert (status.exit_code, status.reason, status.message) == (EXIT_TERMINATED, "Error", "stopped by the agent")
    assert time.monotonic() - started >= 0.3  # it had its grace period


async def test_a_component_service_streams_its_log_and_stops(runtime: WasmtimeRuntime) -> None:
    output = Output()
    instance = await runtime.start(spec(component_path("ticker"), "ticker", "--interval-ms", "50"), output)
    async with asyncio.timeout(10):
        while output.text().count("\n") < 3:
            await asyncio.sleep(0.01)
    status = await instance.stop(0)
    assert status.exit_code in (EXIT_TERMINATED, EXIT_KILLED)  # a sleep in wasi:io/poll ends before the stop lands
    assert output.text().startswith("tick 1\ntick 2\ntick 3\n")


async def test_imports_the_host_cannot_satisfy_are_all_named(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    path = tmp_path / "exotic.wasm"
    path.write_bytes(wasmtime.wat2wasm(EXOTIC))
    await runtime.prepare(path, digest_of(path))
    with pytest.raises(UnsupportedPod) as refused:
        runtime.check(spec(path, "exotic"))
    assert refused.value.reason == "UnsupportedComponent"
    assert "imports wasi:keyvalue/store@0.2.0-draft, wasi:http/outgoing-handler@0.2.0" in refused.value.message
    assert "outgoing wasi:http when the Pod has hostNetwork: true" in refused.value.message
    with pytest.raises(UnsupportedPod) as refused:
        await runtime.start(spec(path, "exotic", network=True), Output())
    assert "imports wasi:keyvalue/store@0.2.0-draft, which" in refused.value.message


async def test_outgoing_http_is_linked_only_for_a_pod_on_the_network(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    path = tmp_path / "http.wasm"
    path.write_bytes(wasmtime.wat2wasm(HTTP_ONLY))
    with pytest.raises(UnsupportedPod, match="imports wasi:http/outgoing-handler@0.2.0"):
        await runtime.start(spec(path, "http"), Output())
    status, _ = await run(runtime, spec(path, "http", network=True))
    assert (status.exit_code, status.reason) == (0, "Completed")


async def test_a_component_that_is_not_a_command_is_an_invalid_module(runtime: WasmtimeRuntime, tmp_path: Path) -> None:
    path = tmp_path / "library.wasm"
    path.write_bytes(wasmtime.wat2wasm("(component)"))
    with pytest.raises(ModuleError) as failed:
        await runtime.prepare(path, digest_of(path))
    assert failed.value.reason == "InvalidModule" and "exports no wasi:cli/run@0.2.x" in failed.value.message
    path.write_bytes(component_path("echo").read_bytes()[:300])
    with pytest.raises(ModuleError, match="not a valid wasm component"):
        await runtime.prepare(path, digest_of(path))


async def test_a_fresh_backend_loads_the_compiled_component_from_the_cache(tmp_path: Path, python_component: Path) -> None:
    digest = digest_of(python_component)
    first = WasmtimeRuntime(cache_dir=tmp_path)
    await first.prepare(python_component, digest)
    await first.close()
    cached = first.cache_path(digest)
    assert cached.is_file()
    second = WasmtimeRuntime(cache_dir=tmp_path)
    # Without the binary: the compiled artifact (and the component type in it) is all it needs.
    await second.prepare(tmp_path / "gone.wasm", digest)
    status, output = await run(second, RunSpec("uid-1", "py", tmp_path / "gone.wasm", digest, ["hello-py"], {}))
    await second.close()
    assert status.exit_code == 0 and output.text().startswith("hello-py: Hello from Python")


async def test_wasmer_refuses_a_component_naming_wasmtime(tmp_path: Path) -> None:
    backend = WasmerRuntime(cache_dir=tmp_path)
    try:
        await backend.prepare(component_path("echo"), digest_of(component_path("echo")))  # no pull error
        with pytest.raises(UnsupportedPod) as refused:
            backend.check(spec(component_path("echo"), "echo"))
    finally:
        await backend.close()
    assert refused.value.reason == "UnsupportedComponent"
    assert "WebAssembly component (WASI 0.2)" in refused.value.message
    assert "runtimeClassName: wasmtime" in refused.value.message


def test_the_committed_components_are_components() -> None:
    for name in ("echo", "exit", "files", "grow", "loop", "ticker"):
        assert component_path(name).read_bytes()[:8] == b"\0asm\x0d\0\x01\0", name
    assert os.path.getsize(component_path("echo")) < 256 * 1024
