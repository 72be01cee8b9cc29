"""WASI 0.2 components as Pods, through the real agent: published with `wasmlet push` to the real
registry (their config says `os: wasip2` and lists their world), pulled, and run on wasmtime with
argv, env, volumes, exit codes, memory limits, deadlines and restarts — from two toolchains (C
through jco's preview1 adapter, Python through componentize-py); and, standalone, `wasmlet run`
of the example folder. Pods that cannot run fail naming why (wasmer; an import the host lacks)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import wasmtime

from wasmlet.cli.main import main as wasmlet
from wasmlet.kube.resources import PODS

from tests.fixtures.registry import OciRegistry, push_blob, sha256_digest
from tests.integration.agent_helpers import (
    MODULES,
    api_client,
    container_state,
    log_lines,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)
from tests.integration.component_helpers import COMPONENTS, component_path
from tests.integration.oci_helpers import push_image
from tests.integration.test_wasmtime_components import EXOTIC

NODE = "wasm-node-1"
# Compiling the Python component takes seconds (more on a loaded machine) before its first start.
SLOW = 90.0


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


async def push(binary: Path, reference: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`wasmlet push` as a user runs it; the pinned reference it prints."""
    capsys.readouterr()
    assert await asyncio.to_thread(wasmlet, ["push", str(binary), reference]) == 0
    return capsys.readouterr().out.strip()


async def wasm_config(registry: OciRegistry, pinned: str) -> dict[str, Any]:
    repo, digest = pinned.split("/", 1)[1].split("@")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{registry.url}/v2/{repo}/manifests/{digest}",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}) as response:
            manifest = await response.json(content_type=None)
        async with session.get(f"{registry.url}/v2/{repo}/blobs/{manifest['config']['digest']}") as response:
            config: dict[str, Any] = json.loads(await response.read())
    return config


async def test_components_from_two_toolchains_run_as_pods_with_the_container_contract(
        kube_api: Any, oci_registry: OciRegistry, python_component: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    images = {name: await push(path, f"{oci_registry.host}/components/{name}:v1", capsys) for name, path in (
        ("hello-py", python_component), ("echo", component_path("echo")), ("exit", component_path("exit")),
        ("grow", component_path("grow")), ("loop", component_path("loop")))}
    config = await wasm_config(oci_registry, images["hello-py"])
    assert (config["os"], config["architecture"]) == ("wasip2", "wasm")
    assert config["component"]["exports"] == ["exports", "wasi:cli/run@0.2.12"]
    assert "wasi:filesystem/preopens@0.2.12" in config["component"]["imports"]
    out = tmp_path / "out"
    out.mkdir()
    volume = {"volumes": [{"name": "out", "hostPath": {"path": str(out)}}]}
    mounts = [{"name": "out", "mountPath": "/out"}]
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state") as agent:
        await api.create(PODS, wasm_pod("py", NODE, images["hello-py"], runtime="wasmtime", **volume, container={
            "args": ["write", "/out/note.txt", "from Python"], "volumeMounts": mounts,
            "env": [{"name": "GREETING", "value": "hi"}]}))
        await api.create(PODS, wasm_pod("echo", NODE, images["echo"], runtime="wasmtime",
                                        container={"args": ["x y"], "env": [{"name": "A", "value": "1"}]}))
        await api.create(PODS, wasm_pod("exit", NODE, images["exit"], runtime="wasmtime", container={"args": ["3"]}))
        await api.create(PODS, wasm_pod("greedy", NODE, images["grow"], runtime="wasmtime", container={
            "args": ["64"], "resources": {"limits": {"memory": "16Mi"}}}))
        await api.create(PODS, wasm_pod("spinner", NODE, images["loop"], runtime="wasmtime",
                                        activeDeadlineSeconds=2, terminationGracePeriodSeconds=0))
        py = await wait_for(api, PODS, "py", "default", lambda p: phase(p) == "Succeeded", timeout=SLOW)
        assert ("stdout", "argv: ['main', 'write', '/out/note.txt', 'from Python']") in log_lines(agent, py)
        assert ("stdout", "env: GREETING=hi") in log_lines(agent, py)
        assert py["status"]["containerStatuses"][0]["imageID"] == images["hello-py"]
        echo = await wait_for(api, PODS, "echo", "default", lambda p: phase(p) == "Succeeded")
        assert log_lines(agent, echo) == [("stdout", "argv[0]=main"), ("stdout", "argv[1]=x y"), ("stdout", "A=1")]
        exited = await wait_for(api, PODS, "exit", "default", lambda p: phase(p) == "Failed")
        assert (container_state(exited)["terminated"]["exitCode"], container_state(exited)["terminated"]["reason"]) \
            == (1, "Error")  # a component's exit status is 0 or 1 (docs/runtimes.md)
        greedy = await wait_for(api, PODS, "greedy", "default", lambda p: phase(p) == "Failed")
        assert container_state(greedy)["terminated"]["reason"] == "OOMKilled"
        spinner = await wait_for(api, PODS, "spinner", "default", lambda p: phase(p) == "Failed", timeout=SLOW)
        assert spinner["status"]["reason"] == "DeadlineExceeded"
    assert (out / "note.txt").read_text() == "from Python\n"


async def test_a_component_service_is_restarted_as_a_container_is(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path) as agent:
        await put_module_configmap(api, "default", "components", {"ticker.wasm": component_path("ticker").read_bytes()})
        await api.create(PODS, wasm_pod("ticker", NODE, "configmap://components/ticker.wasm", restart="Always",
                                        runtime="wasmtime", container={"args": ["--interval-ms", "10", "--count", "2"]}))
        pod = await wait_for(api, PODS, "ticker", "default",
                             lambda p: ((p.get("status") or {}).get("containerStatuses") or [{}])[0]
                             .get("restartCount", 0) >= 2, timeout=SLOW)
        assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 0
        assert ("stdout", "tick 2") in log_lines(agent, pod)


async def test_pods_whose_component_cannot_run_fail_naming_why(
        kube_api: Any, oci_registry: OciRegistry, tmp_path: Path) -> None:
    exotic = bytes(wasmtime.wat2wasm(EXOTIC))
    repo = oci_registry.repository("components/liar")
    config = json.dumps({"architecture": "wasm", "os": "wasip2"}).encode()
    async with aiohttp.ClientSession() as session:  # a core module that claims to be a component
        await push_blob(session, oci_registry, repo, config)
        await push_image(session, oci_registry, repo, "v1", config=config,
                         config_type="application/vnd.wasm.config.v0+json",
                         layers=[((MODULES / "hello.wasm").read_bytes(), "application/wasm")])
    assert sha256_digest(config)
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path):
        await put_module_configmap(api, "default", "components", {"echo.wasm": component_path("echo").read_bytes(),
                                                                  "exotic.wasm": exotic})
        await api.create(PODS, wasm_pod("on-wasmer", NODE, "configmap://components/echo.wasm", runtime="wasmer"))
        await api.create(PODS, wasm_pod("exotic", NODE, "configmap://components/exotic.wasm", runtime="wasmtime"))
        await api.create(PODS, wasm_pod("liar", NODE, f"{oci_registry.host}/{repo}:v1", runtime="wasmtime"))
        on_wasmer = await wait_for(api, PODS, "on-wasmer", "default", lambda p: phase(p) == "Failed")
        assert on_wasmer["status"]["reason"] == "UnsupportedComponent"
        assert "runtimeClassName: wasmtime" in on_wasmer["status"]["message"]
        failed = await wait_for(api, PODS, "exotic", "default", lambda p: phase(p) == "Failed")
        assert failed["status"]["reason"] == "UnsupportedComponent"
        assert "imports wasi:keyvalue/store@0.2.0-draft, wasi:http/outgoing-handler@0.2.0" in failed["status"]["message"]
        liar = await wait_for(api, PODS, "liar", "default",
                              lambda p: container_state(p).get("waiting", {}).get("reason") == "ErrImagePull")
        assert "config says os 'wasip2' (a wasm component), but the layer is a wasm module" \
            in container_state(liar)["waiting"]["message"]


def test_wasmlet_run_runs_the_example_components(tmp_path: Path, python_component: Path) -> None:
    """The README's "a Python program as a wasm Pod", as a user runs it after `make modules`."""
    shutil.copytree(COMPONENTS / "workloads", tmp_path / "workloads")
    for name in ("echo", "exit", "grow", "loop"):
        shutil.copy(component_path(name), tmp_path / f"{name}.wasm")
    (tmp_path / "build").mkdir()
    shutil.copy(python_component, tmp_path / "build" / "hello-py.wasm")
    # Compiling the Python component takes tens of seconds on a loaded machine: a longer --timeout.
    result = subprocess.run([sys.executable, "-m", "wasmlet.cli.main", "run", str(tmp_path / "workloads"), "--quiet",
                             "--timeout", "240"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stdout + result.stderr  # three examples fail on purpose
    for expected in [
        "✗ 3 of 5 Pods did not end as they should:",
        "━━ pod hello-py: Succeeded", "argv: ['read', 'read', '/config/message.txt']",
        "env: GREETING=hello from a Pod spec", "a ConfigMap, read by Python", "written by Python in an init container",
        "━━ pod echo-component: Succeeded", "argv[1]=a component", "GREETING=hello from WASI 0.2",
        "━━ pod exit-component: Failed", "container exit: exit code 1, Error",
        "━━ pod memory-cap-component: Failed", "container grow: exit code 137, OOMKilled",
        "━━ pod runaway-component: Failed (DeadlineExceeded",
    ]:
        assert expected in result.stdout, f"{expected!r} missing from:\n{result.stdout}"
