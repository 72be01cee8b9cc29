"""The example wasm modules: the committed binaries are exactly what their sources build to,
and each one behaves as examples/modules/README.md says when run under wasmtime-py."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
import wasmtime

from tests.integration.component_helpers import load_script

MODULES = Path(__file__).resolve().parents[2] / "examples" / "modules"
MIB = 1024 * 1024


build = load_script(MODULES / "build.py", "wasmlet_examples_build")


@dataclass(frozen=True)
class Result:
    """What a WASI command did: its exit code (None after a trap), trap text, and output."""

    exit_code: int | None
    trap: str | None
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs one example module to completion under wasmtime-py (the `run` fixture)."""

    def __call__(self, name: str, *args: str, env: dict[str, str] | None = None,
                 dirs: dict[str, tuple[Path, bool]] | None = None, memory: int | None = None,
                 epoch_deadline: int = ...) -> Result: ...


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True  # so `loop` can be stopped
    return wasmtime.Engine(config)


@pytest.fixture
def run(engine: wasmtime.Engine, tmp_path: Path) -> Runner:
    """Run an example module: run(name, *args, env=, dirs={guest: (host, writable)}, memory=)."""
    def runner(name: str, *args: str, env: dict[str, str] | None = None,
               dirs: dict[str, tuple[Path, bool]] | None = None, memory: int | None = None,
               epoch_deadline: int = 1 << 62) -> Result:
        wasi = wasmtime.WasiConfig()
        wasi.argv = [name, *args]
        wasi.env = sorted((env or {}).items())
        for guest, (host, writable) in (dirs or {}).items():
            wasi.preopen_dir(str(host), guest, writable)
        stdout, stderr = tmp_path / f"{name}.stdout", tmp_path / f"{name}.stderr"
        wasi.stdout_file, wasi.stderr_file = str(stdout), str(stderr)
        store = wasmtime.Store(engine)
        store.set_wasi(wasi)
        store.set_epoch_deadline(epoch_deadline)
        if memory is not None:
            store.set_limits(memory_size=memory)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(MODULES / f"{name}.wasm")))
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        exit_code: int | None = 0
        trap = None
        try:
            start(store)
        except wasmtime.ExitTrap as exited:
            exit_code = exited.code
        except wasmtime.Trap as trapped:
            exit_code, trap = None, str(trapped)
        return Result(exit_code, trap, stdout.read_text(), stderr.read_text())

    return runner


EVERY_MODULE = ["cpu", "echo", "exit", "files", "grow", "hello", "hold", "hostile", "http-echo", "http-hello", "http-json",
                "leftover", "loop", "ticker", "trap"]


def test_the_committed_binaries_are_a_fresh_reproducible_build(tmp_path: Path) -> None:
    fresh = build.build(tmp_path / "out")
    assert sorted(fresh) == EVERY_MODULE
    assert build.drift(fresh) == [], "run `make modules` and commit the .wasm files"
    committed = {path.stem for path in MODULES.glob("*.wasm")}
    assert committed == set(fresh), "a .wasm without a source (or a source never built)"


@pytest.mark.parametrize("name", EVERY_MODULE)
def test_every_module_is_a_plain_wasip1_command(engine: wasmtime.Engine, name: str) -> None:
    # Only wasi_snapshot_preview1 imports: both runtimes (wasmer, wasmtime) can run it as is.
    module = wasmtime.Module.from_file(engine, str(MODULES / f"{name}.wasm"))
    assert {i.module for i in module.imports} == {"wasi_snapshot_preview1"}
    assert {"_start", "memory"} <= {e.name for e in module.exports}


def test_hello_greets_on_stdout_and_writes_a_line_to_stderr(run: Runner) -> None:
    assert run("hello") == Result(0, None, "Hello from wasmlet!\n", "hello: this line goes to stderr\n")


def test_echo_prints_argv_then_the_environment_sorted(run: Runner) -> None:
    result = run("echo", "a", "b c", env={"ZED": "1", "ALPHA": "x=y"})
    assert result.stdout == "argv[0]=echo\nargv[1]=a\nargv[2]=b c\nALPHA=x=y\nZED=1\n"
    assert result.exit_code == 0


def test_exit_exits_with_the_code_it_is_given(run: Runner) -> None:
    assert run("exit", "3") == Result(3, None, "exit: exiting with code 3\n", "")
    assert run("exit").exit_code == 0
    assert run("exit", "nope").exit_code == 2


def test_ticker_prints_count_lines_then_exits(run: Runner) -> None:
    assert run("ticker", "--count", "3", "--interval-ms", "10") == Result(0, None, "tick 1\ntick 2\ntick 3\n", "")
    assert run("ticker", "--count", "2", "--interval-ms", "0").stdout == "tick 1\ntick 2\n"
    assert run("ticker", "--bogus").exit_code == 2


def test_leftover_answers_clean_in_a_fresh_memory_and_dirty_in_one_it_ran_in(engine: wasmtime.Engine, run: Runner,
                                                                            tmp_path: Path) -> None:
    assert run("leftover") == Result(0, None, "Content-Type: text/plain\n\nclean\n", "")
    wasi = wasmtime.WasiConfig()
    wasi.stdout_file = str(tmp_path / "twice")
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    store.set_epoch_deadline(1 << 62)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(MODULES / "leftover.wasm")))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    start(store)
    start(store)  # the same memory again: the marker is there
    assert (tmp_path / "twice").read_text().split("\n\n")[1:] == ["clean\nContent-Type: text/plain", "dirty\n"]


def test_trap_prints_then_traps_on_unreachable(run: Runner) -> None:
    result = run("trap")
    assert result.exit_code is None and result.trap is not None
    assert "unreachable" in result.trap
    assert result.stdout == "trap: about to execute unreachable\n"


def test_loop_prints_then_spins_until_the_host_interrupts_it(run: Runner, engine: wasmtime.Engine) -> None:
    stop = threading.Event()

    def tick() -> None:  # epoch interruption: the host's only way into a loop without syscalls
        while not stop.wait(0.05):
            engine.increment_epoch()

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        result = run("loop", epoch_deadline=4)
    finally:
        stop.set()
        ticker.join()
    assert result.stdout == "loop: spinning forever\n"
    assert result.trap is not None and "interrupt" in result.trap


def test_grow_grows_and_touches_memory_and_fails_cleanly_at_a_limit(run: Runner) -> None:
    grown = run("grow", "32")
    assert grown.exit_code == 0
    assert grown.stdout.splitlines()[-1] == "grow: done, grew 32 MiB (memory is 32.1 MiB)"
    limited = run("grow", "64", memory=16 * MIB)
    assert limited.exit_code == 1
    assert limited.stderr.startswith("grow: memory.grow failed after growing 15 MiB")


def test_cpu_computes_the_documented_function(run: Runner) -> None:
    x, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1
    for i in range(5000):
        x ^= x >> 33
        x = (x * 0xFF51AFD7ED558CCD) & mask
        x ^= x >> 29
        x = (x + i) & mask
    assert run("cpu", "5000") == Result(0, None, f"cpu: iterations=5000 result=0x{x:016x}\n", "")


def test_hostile_links_flips_and_fills(run: Runner, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    dirs = {"/data": (volume, True)}
    linked = run("hostile", "link", "../../../etc", "/data/up", dirs=dirs)
    assert (linked.exit_code, linked.stdout) == (0, "hostile: /data/up -> ../../../etc\n")
    assert os.readlink(volume / "up") == "../../../etc"
    flipped = run("hostile", "flip", "/data/sub", "../../..", "3", dirs=dirs)
    assert (flipped.exit_code, flipped.stdout) == (0, "hostile: flipped /data/sub 3 times\n")
    assert (volume / "sub.real" / "marker").read_text() == "inside\n" and not os.path.lexists(volume / "sub")
    assert run("hostile", "link", "x", "/data/up", dirs=dirs).stderr == "hostile: cannot link /data/up: File exists\n"
    assert run("hostile", "nonsense").exit_code == 2


def test_files_reads_writes_appends_lists_and_makes_directories(run: Runner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("hello file\n")
    dirs = {"/data": (data, True)}
    assert run("files", "read", "/data/in.txt", dirs=dirs).stdout == "hello file\n"
    assert run("files", "write", "/data/out.txt", "one", dirs=dirs).stdout == "files: wrote 4 bytes to /data/out.txt\n"
    assert run("files", "append", "/data/out.txt", "two", dirs=dirs).exit_code == 0
    assert (data / "out.txt").read_text() == "one\ntwo\n"
    assert run("files", "mkdir", "/data/sub", dirs=dirs).exit_code == 0
    assert run("files", "list", "/data", dirs=dirs).stdout == "in.txt\nout.txt\nsub/\n"


def test_files_fails_with_exit_1_on_a_read_only_mount_or_outside_every_mount(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    dirs = {"/ro": (tmp_path / "ro", False)}
    read_only = run("files", "write", "/ro/x.txt", "no", dirs=dirs)
    assert read_only.exit_code == 1
    assert read_only.stderr.startswith("files: cannot write /ro/x.txt: ")
    assert not (tmp_path / "ro" / "x.txt").exists()
    outside = run("files", "read", "/etc/passwd", dirs=dirs)
    assert (outside.exit_code, outside.stdout) == (1, "")
    assert outside.stderr.startswith("files: cannot read /etc/passwd: ")
    assert run("files", "frobnicate", dirs=dirs).exit_code == 2
