"""`wasmlet run` as a user runs it: the installed `wasmlet` command in a subprocess, on real modules.

What a run waits for, how it judges each Pod (exit code 0 only when every Pod ended as it
should, 1 with a reason per Pod otherwise), how Ctrl-C stops it, and that every flag and path is
checked before anything starts. No test waits on a clock: a run that waited for `--duration`
or a grace period it should not would run into the subprocess timeout instead.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agent_helpers import MODULES
from tests.integration.faults import free_port

ROOT = MODULES.parents[1]
BIN = Path(sys.executable).parent
WASMLET = str(BIN / "wasmlet")
LONG = 150  # seconds a subprocess may take before the test fails: far beyond any run here


def wasmlet(*args: str, timeout: float = LONG) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLET, *args], capture_output=True, text=True, timeout=timeout, check=False)


def pod(name: str, *containers: dict[str, Any], restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "containers": list(containers), **spec}}


def container(name: str, module: str, *args: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"file:{module}.wasm", "args": list(args), **fields}


def folder(tmp_path: Path, *docs: dict[str, Any], modules: tuple[str, ...] = ("hello",)) -> Path:
    for module in modules:
        shutil.copy(MODULES / f"{module}.wasm", tmp_path / f"{module}.wasm")
    for doc in docs:
        (tmp_path / f"{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def http_pod(name: str, port: int) -> dict[str, Any]:
    web = container("main", "http-hello", ports=[{"containerPort": port, "hostPort": port, "protocol": "TCP"}])
    doc = pod(name, web, restart="Always")
    doc["metadata"]["annotations"] = {"wasmlet.dev/http.main": json.dumps({"port": port})}
    return doc


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


class Running:
    """A `wasmlet run` in the background whose merged output is read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([WASMLET, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:  # a failed test: do not leave the run behind
            self.process.kill()
        self.process.wait(timeout=LONG)

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line)

    def wait_for(self, text: str, times: int = 1) -> None:
        while sum(text in line for line in self.seen) < times:
            try:
                self.seen.append(self.lines.get(timeout=LONG))
            except queue.Empty:
                pytest.fail(f"{text!r} never printed; so far:\n{''.join(self.seen)}")

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=LONG)
        while True:
            try:
                self.seen.append(self.lines.get(timeout=5))
            except queue.Empty:
                return code, "".join(self.seen)


def test_the_readme_quick_start_is_what_make_demo_prints() -> None:
    assert "$(BIN)/wasmlet run examples/workloads" in (ROOT / "Makefile").read_text()
    result = wasmlet("run", str(ROOT / "examples" / "workloads"))
    assert result.returncode == 1, result.stdout + result.stderr  # four examples fail on purpose
    readme = (ROOT / "README.md").read_text().split("## What `make demo` shows", 1)[1]
    block = readme.split("```\n", 2)[1]
    printed = result.stdout.splitlines()
    for line in filter(None, block.splitlines()):
        # `…` leaves something out, except as the first character (the progress lines' mark).
        pattern = re.escape(line[0]) + ".*".join(re.escape(part) for part in line[1:].split("…"))
        pattern = pattern.replace(re.escape("ran <1s"), r"ran (<1s|\d+s)")  # a loaded machine runs slower
        assert any(re.fullmatch(pattern, out) for out in printed), f"README line not printed: {line!r}\n{result.stdout}"
    # The runtime's own trap print stays off stderr; the trap is in the summary.
    assert "RuntimeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_run_to_completion_pods_end_the_run_as_soon_as_they_end(tmp_path: Path) -> None:
    path = folder(tmp_path, pod("hello", container("hello", "hello")))
    result = wasmlet("run", str(path), "--duration", "100000")  # services only: hello is not one
    assert result.returncode == 0, result.stdout + result.stderr
    assert "━━ pod hello: Succeeded" in result.stdout
    assert "✓ the Pod ended as it should" in result.stdout


def test_services_run_their_duration_then_stopping_them_is_success(tmp_path: Path) -> None:
    ticker = pod("ticker", container("ticker", "ticker", "--interval-ms", "20"), restart="Always",
                 terminationGracePeriodSeconds=1)
    path = folder(tmp_path, ticker, http_pod("web", free_port()), modules=("ticker", "http-hello"))
    result = wasmlet("run", str(path), "--duration", "1", "--log-lines", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    # Both kinds of service read alike, whatever exit code the module gives SIGTERM.
    assert "━━ pod ticker: service, stopped by the run after running" in result.stdout
    assert "━━ pod web: service, stopped by the run after running" in result.stdout
    assert "… stopping 2 services after --duration 1s, each within its grace period (ticker 1s, web 30s)" \
        in result.stdout
    assert "✓ all 2 Pods ended as they should" in result.stdout
    # Only the last 3 lines, and how many were left out.
    assert re.search(r"│   … \d+ earlier lines left out \(--log-lines 3\)", result.stdout), result.stdout
    assert len(re.findall(r"│   tick \d+", result.stdout)) == 3


def test_pods_that_fail_or_cannot_start_exit_1_at_once_with_a_reason_each(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not wasm")
    port = free_port()
    path = folder(
        tmp_path,
        pod("exits", container("exit", "exit", "3")),
        pod("missing", container("main", "nope"), container("after", "hello")),
        pod("notwasm", {"name": "main", "image": "file:notes.txt"}),
        pod("noimage", {"name": "main"}),
        pod("pathonly", {"name": "main", "image": "./hello.wasm"}),
        pod("noconfig", container("main", "hello", envFrom=[{"configMapRef": {"name": "absent"}}])),
        http_pod("first", port), http_pod("second", port),
        modules=("hello", "exit", "http-hello"),
    )
    result = wasmlet("run", str(path), "--timeout", "100000")  # none of these is worth waiting for
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = result.stdout.split("did not end as they should:\n", 1)[1]
    lines = {line.split(":", 1)[0].strip(): line for line in verdict.splitlines()}
    for name, *fragments in [
        ("exits", "Failed: container exit: exit code 3, Error"),
        ("missing", "container main: ImagePullBackOff — ", "cannot read module file"),
        ("notwasm", "container main: ImagePullBackOff — ", "notes.txt: not a wasm module"),
        ("noimage", "Failed: InvalidImageName — spec.containers[0].image: Required value: container 'main' names no module"),
        ("pathonly", "Failed: InvalidImageName — image './hello.wasm' is a file path, not an image reference: "
                     "a static Pod names a module file as file:./hello.wasm"),
        ("noconfig", 'container main: CreateContainerConfigError — configmap "absent" not found'),
        ("second", "Failed: PortInUse — port"),
    ]:
        assert name in lines and all(f in lines[name] for f in fragments), f"{name}: {fragments} in:\n{verdict}"
    assert "first:" not in verdict  # the service that holds the port ran as it should
    assert "✗ 7 of 8 Pods did not end as they should" in result.stdout
    assert "container after: never started" in result.stdout
    assert "ContainerCreating" not in result.stdout
    # A Pod that cannot even be parsed is reported once, not on every rescan of the folder.
    assert result.stdout.count("✗ noimage: InvalidImageName") == 1, result.stdout


def test_timeout_gives_up_on_pods_still_running_and_says_so(tmp_path: Path) -> None:
    forever = pod("forever", container("ticker", "ticker", "--interval-ms", "100"), terminationGracePeriodSeconds=0)
    # The timeout is long enough for the module to be read and started on a loaded machine (it took
    # most of a second there), so the run gives up on a Pod that runs, not one still being created.
    result = wasmlet("run", str(folder(tmp_path, forever, modules=("ticker",))), "--timeout", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  forever: gave up after 5s (--timeout): still Running (ticker: running)" in result.stdout


@pytest.mark.parametrize(("flag", "value", "complaint"), [
    ("--duration", "nan", "must be a finite number of seconds 0 or more"),
    ("--duration", "-1", "must be a finite number of seconds 0 or more"),
    ("--duration", "inf", "must be a finite number of seconds 0 or more"),
    ("--duration", "soon", "is not a number of seconds"),
    ("--timeout", "0", "must be a finite number of seconds greater than 0"),
    ("--timeout", "-1", "must be a finite number of seconds greater than 0"),
    ("--timeout", "nan", "must be a finite number of seconds greater than 0"),
    ("--log-lines", "-2", "must be 0 or more"),
    ("--log-lines", "some", "is not a whole number"),
])
def test_every_flag_is_checked_up_front_naming_it(flag: str, value: str, complaint: str) -> None:
    result = wasmlet("run", str(ROOT / "examples" / "workloads" / "hello.yaml"), f"{flag}={value}", timeout=60)
    assert result.returncode == 2
    assert f"argument {flag}: " in result.stderr and complaint in result.stderr, result.stderr


def test_a_state_dir_that_cannot_be_used_fails_at_once(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    hello = str(ROOT / "examples" / "workloads" / "hello.yaml")
    for state, complaint in [(afile, f"--state-dir: {afile} is not a directory"),
                             (afile / "below", f"--state-dir: {afile} is not a directory (for {afile / 'below'})"),
                             (Path("/proc/nope"), "--state-dir /proc/nope: ")]:
        result = wasmlet("run", hello, "--state-dir", str(state), timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"wasmlet run: {complaint}"), result.stderr


def test_an_agent_that_fails_to_start_is_reported_not_waited_for(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "modules").write_text("in the way of the module cache's folder")
    result = wasmlet("run", str(ROOT / "examples" / "workloads" / "hello.yaml"), "--state-dir", str(state))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "wasmlet run: the agent stopped: FileExistsError: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr


def test_paths_without_manifests_are_refused_with_what_to_do(tmp_path: Path) -> None:
    module = wasmlet("run", str(MODULES / "hello.wasm"), timeout=60)
    assert module.returncode == 2
    assert "hello.wasm is a wasm module, not a manifest: run it from a Pod whose image is file:" in module.stderr
    empty = wasmlet("run", str(tmp_path), timeout=60)
    assert empty.returncode == 2
    assert f"{tmp_path} holds no manifests (*.yaml, *.yml, *.json): nothing to run" in empty.stderr
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only}\n")
    nothing = wasmlet("run", str(tmp_path))
    assert nothing.returncode == 1
    assert f"wasmlet run: no Pods to run in {tmp_path}" in nothing.stderr


def test_unknown_fields_are_named_and_unusable_files_reported_once(tmp_path: Path) -> None:
    typo = pod("typo", container("hello", "hello", enviroment=[{"name": "A", "value": "b"}]))
    typo["spec"]["contianers"] = []
    workload = {"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload", "metadata": {"name": "ww"},
                "spec": {"module": {"image": "file:hello.wasm"}, "replicaz": 2, "runtim": "wasmer"}}
    path = folder(tmp_path, typo, workload)
    (tmp_path / "broken.yaml").write_text("kind: Pod\nmetadata: {name: x\n")
    result = wasmlet("run", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f'⚠ {tmp_path / "typo.yaml"}: document 0: Pod typo: unknown field "spec.contianers"' in out
    assert 'unknown field "spec.containers[0].enviroment"' in out
    assert "━━ pod typo: Succeeded" in out  # a warning, as the API server's: the Pod runs
    assert f"✗ {tmp_path / 'ww.yaml'}: document 0: spec: unknown fields replicaz, runtim" in out
    assert f"✗ {tmp_path / 'broken.yaml'}: cannot parse: line 3, column 1: while parsing a flow mapping (line 2); " \
           "expected ',' or '}', but got '<stream end>'" in out
    assert out.count("broken.yaml") == 1 and "<unicode string>" not in out
    assert "ERROR" not in result.stderr and "WARNING" not in result.stderr, result.stderr


def test_ctrl_c_stops_every_pod_within_its_grace_and_still_prints_the_summary(tmp_path: Path) -> None:
    ticker = pod("ticker", container("ticker", "ticker", "--interval-ms", "100"), restart="Always",
                 terminationGracePeriodSeconds=1)
    with Running(str(folder(tmp_path, ticker, modules=("ticker",))), "--duration", "100000") as run:
        run.wait_for("ticker/ticker: started")
        run.process.send_signal(signal.SIGINT)
        code, out = run.finish()
    assert code == 130, out
    assert "… stopping: every Pod gets its grace period (Ctrl-C again to stop at once)" in out
    assert "━━ pod ticker: service, stopped by the run after running" in out
    assert "tick 1" in out and "Traceback" not in out and "KeyboardInterrupt" not in out


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    # The ticker ignores SIGTERM: stopping it gracefully would take its whole hour of grace.
    ticker = pod("ticker", container("ticker", "ticker", "--interval-ms", "100"), restart="Always",
                 terminationGracePeriodSeconds=3600)
    with Running(str(folder(tmp_path, ticker, modules=("ticker",))), "--duration", "100000") as run:
        run.wait_for("ticker/ticker: started")
        run.process.send_signal(signal.SIGINT)
        run.wait_for("Ctrl-C again to stop at once")
        run.process.send_signal(signal.SIGINT)
        code, out = run.finish()
    assert code == 130, out
    assert "wasmlet run: stopped at once; Pods did not get their grace periods" in out
    assert "━━ pod ticker" in out and "Traceback" not in out


def test_the_http_examples_run_locally(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "modules", tmp_path / "modules")
    local = tmp_path / "http" / "local"
    shutil.copytree(ROOT / "examples" / "http" / "local", local)
    ports = {}
    for manifest in sorted(local.glob("*.yaml")):  # the examples' fixed ports may be taken here
        docs = list(yaml.safe_load_all(manifest.read_text()))
        for doc in docs:
            if doc["kind"] == "WasmWorkload":
                doc["spec"]["http"]["port"] = ports[doc["metadata"]["name"]] = free_port()
        manifest.write_text(yaml.safe_dump_all(docs))
    with Running(str(local), "--duration", "100000") as run:
        run.wait_for("/main: started", times=3)
        answers = {name: get(f"http://127.0.0.1:{port}/items" if name == "json-api" else f"http://127.0.0.1:{port}/")
                   for name, port in ports.items()}
        run.process.send_signal(signal.SIGINT)
        code, out = run.finish()
    assert answers["hello-http"] == b"hello from wasm\n"
    assert json.loads(answers["json-api"]) == ["colour", "greeting", "limits.json"]
    assert json.loads(answers["echo-http"])["method"] == "GET"
    assert code == 130 and out.count("service, stopped by the run after running") == 3, out


@pytest.mark.parametrize(("command", "shows"), [
    (["wasmlet", "run", "--help"], ["(default: 3)", "(default: 60)", "(default: 20)", "Exit code:"]),
    (["wasmlet-agent", "--help"], ["(default wasmer,wasmtime)", "(default 10250)", "(default /var/lib/wasmlet)"]),
    (["wasmlet-operator", "--help"], ["(default 300; env WASMLET_RESYNC_SECONDS)", "(default wasmlet; env"]),
])
def test_helps_show_the_defaults(command: list[str], shows: list[str]) -> None:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for expected in shows:
        assert expected in text, f"{expected!r} missing from:\n{result.stdout}"


@pytest.mark.parametrize("command", ["wasmlet", "wasmlet-agent", "wasmlet-operator"])
def test_every_command_tells_its_version(command: str) -> None:
    result = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{command} \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout
