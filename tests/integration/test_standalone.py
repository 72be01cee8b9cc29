"""Standalone mode, no API server at all: the agent runs the Pods and WasmWorkloads of a manifest
folder, follows files that are added, changed and removed, names the files it cannot use without
disturbing the rest, and serves the same kubelet API. `wasmlet run` (the README's quick start)
is that agent with a console summary; it is run here exactly as a user runs it."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.agent_helpers import MODULES
from tests.integration.faults import AgentProcess, agent_process, metric_value

EXAMPLES = MODULES.parent
NODE = "edge-1"


def ticker(name: str, interval_ms: int) -> dict[str, Any]:
    """A `ticker` service whose module is a file next to its manifest."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "ticker", "image": "file:ticker.wasm",
                                     "args": ["--interval-ms", str(interval_ms)]}]}}


def workload(name: str, replicas: int) -> list[dict[str, Any]]:
    """A WasmWorkload whose module is in a ConfigMap of the same folder."""
    module = base64.b64encode((MODULES / "ticker.wasm").read_bytes()).decode()
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "modules"},
             "binaryData": {"ticker.wasm": module}},
            {"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload", "metadata": {"name": name},
             "spec": {"replicas": replicas, "module": {"configMap": {"name": "modules", "key": "ticker.wasm"}},
                      "args": ["--interval-ms", "200"], "terminationGracePeriodSeconds": 0}}]


def runs(pod: dict[str, Any]) -> bool:
    """Whether the Pod's first container runs."""
    return "running" in ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {})


async def until(agent: AgentProcess, names: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Wait until the agent runs exactly `names` (every other Pod gone); their Pods, by name."""
    listed: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                listed = (await agent.get("/pods"))["items"]
                running = {pod["metadata"]["name"]: pod for pod in listed if runs(pod)}
                if set(running) == names == {pod["metadata"]["name"] for pod in listed}:
                    return running
                await asyncio.sleep(0.2)
    except TimeoutError:
        states = {pod["metadata"]["name"]: "running" if runs(pod) else "not running" for pod in listed}
        raise AssertionError(f"wanted {sorted(names)} running, the agent has {states}") from None


async def test_the_agent_follows_a_manifest_folder_with_no_api_server(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    shutil.copy(MODULES / "ticker.wasm", folder / "ticker.wasm")
    (folder / "ticker.yaml").write_text(yaml.safe_dump(ticker("ticker", 100)))
    (folder / "fleet.yaml").write_text(yaml.safe_dump_all(workload("fleet", 2)))
    (folder / "notes.txt").write_text("not a manifest: ignored")

    async with agent_process(None, tmp_path / "state", manifests=folder, node_name=NODE) as agent:
        first = await until(agent, {f"ticker-{NODE}", f"fleet-0-{NODE}", f"fleet-1-{NODE}"})
        logs = await agent.get(f"/containerLogs/default/ticker-{NODE}/ticker")
        assert "tick 1" in logs
        metrics = await agent.get("/metrics")
        assert metric_value(metrics, "wasmlet_pods") == 3
        assert metric_value(metrics, "wasmlet_agent_asyncio_tasks") > 0
        assert metric_value(metrics, "process_resident_memory_bytes") > 0

        # A file that cannot be used is named in the log and changes nothing else.
        (folder / "broken.yaml").write_text("kind: Pod\nmetadata: [unclosed\n")
        (folder / "wrong.yaml").write_text(yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "d"}},
            {"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload", "metadata": {"name": "w"},
             "spec": {"replicas": -1, "module": {"image": "x/y:1"}}}]))
        async with asyncio.timeout(15):
            while "wrong.yaml" not in agent.log() or "broken.yaml" not in agent.log():
                await asyncio.sleep(0.2)
        log = agent.log()
        assert "broken.yaml: cannot parse" in log
        assert "wrong.yaml: document 0: kind 'Deployment' is not supported" in log
        assert "wrong.yaml: document 1: " in log and "spec.replicas" in log
        assert await agent.get("/healthz") == "ok"

        # An edited Pod is a new Pod (the kubelet's config hash); a removed file stops its Pods.
        (folder / "ticker.yaml").write_text(yaml.safe_dump(ticker("ticker", 50)))
        (folder / "fleet.yaml").unlink()
        second = await until(agent, {f"ticker-{NODE}"})
        assert second[f"ticker-{NODE}"]["metadata"]["uid"] != first[f"ticker-{NODE}"]["metadata"]["uid"]
        assert second[f"ticker-{NODE}"]["spec"]["containers"][0]["args"] == ["--interval-ms", "50"]

        # A file added later is picked up.
        (folder / "fleet.yaml").write_text(yaml.safe_dump_all(workload("fleet", 1)))
        third = await until(agent, {f"ticker-{NODE}", f"fleet-{NODE}"})
        assert [pod["status"]["containerStatuses"][0]["restartCount"] for pod in third.values()] == [0, 0]


def wasmlet_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet.cli.main", "run", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_quick_start_runs_every_example_workload_and_summarises_each() -> None:
    result = wasmlet_run(str(EXAMPLES / "workloads"), "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr  # four examples fail on purpose
    out = result.stdout
    for expected in [
        "━━ pod hello: Succeeded", "Hello from wasmlet!",
        "━━ pod echo: Succeeded", "GREETING=hello from a ConfigMap",
        "━━ pod files: Succeeded", "written by an init container",
        "━━ pod exit-code: Failed", "container exit: exit code 3, Error",
        "━━ pod trap: Failed", "container trap: exit code 134, Error", "wasm trap:",
        "━━ pod memory-cap: Failed", "container grow: exit code 137, OOMKilled",
        "━━ pod runaway: Failed (DeadlineExceeded", "━━ pod ticker: service, stopped by the run", "tick 1",
        "✗ 4 of 8 Pods did not end as they should:",
    ]:
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_wasmlet_run_names_the_manifests_it_cannot_use_and_runs_the_rest(tmp_path: Path) -> None:
    shutil.copy(MODULES / "hello.wasm", tmp_path / "hello.wasm")
    hello = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
             "spec": {"restartPolicy": "Never", "containers": [{"name": "hello", "image": "file:hello.wasm"}]}}
    (tmp_path / "hello.yaml").write_text(yaml.safe_dump(hello))
    (tmp_path / "typo.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n")
    (tmp_path / "nameless.json").write_text('{"apiVersion": "v1", "kind": "Pod", "metadata": {}}')

    result = wasmlet_run(str(tmp_path), "--quiet", "--duration", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"✗ {tmp_path / 'typo.yaml'}: cannot parse" in result.stdout
    assert f"✗ {tmp_path / 'nameless.json'}: document 0: Pod without metadata.name" in result.stdout
    assert "━━ pod hello: Succeeded" in result.stdout
    assert "Hello from wasmlet!" in result.stdout

    missing = wasmlet_run(str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "nowhere does not exist" in missing.stderr
