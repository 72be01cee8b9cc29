"""The container images: what can be checked without a container engine.

`docker build` cannot run here, so the test does what the Dockerfiles' build stage does with the
same build context: build the wheel from exactly the files .dockerignore lets in, install it
into a fresh virtualenv, and run both entry points' `--help` and `--check-config` from it, the
latter with the environment the chart gives the containers. The Dockerfiles themselves are
linted structurally: multi-stage, slim base, non-root user, bytecode off, the wheel installed,
exec-form entry points.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.chart import ROOT, env_of, one, render

IMAGES = {"operator": ("operator/Dockerfile", "wasmlet-operator"), "agent": ("nodeagent/Dockerfile", "wasmlet-agent")}
Instruction = tuple[str, str]


def instructions(dockerfile: Path) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1].strip()}" if line.endswith("\\") else f"{pending} {line}"
        if not line.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
            pending = ""
    return result


def final_stage(steps: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_dockerfile_builds_a_slim_non_root_read_only_friendly_image(image: str) -> None:
    path, entry_point = IMAGES[image]
    steps = instructions(ROOT / path)
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper(), "multi-stage: a build stage, then the runtime"
    assert any(k == "ARG" and "-slim" in a for k, a in steps), "a slim Python base"
    build = " ".join(a for k, a in steps[:len(steps) - len(final_stage(steps))] if k == "RUN")
    assert "pip wheel --no-deps" in build and "pip install /wheels/wasmlet-" in build, "the wheel is installed"
    assert "compileall" in build  # bytecode at build time: nothing to write on a read-only root
    final = final_stage(steps)
    assert any(k == "COPY" and a.startswith("--from=build") for k, a in final)
    env = " ".join(a for k, a in final if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    [user] = [a for k, a in final if k == "USER"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, "a numeric non-root uid (runAsNonRoot)"
    assert final[-1] == ("ENTRYPOINT", f'["{entry_point}"]'), "exec form, last"
    assert not any(k == "RUN" for k, _ in final), "the runtime stage installs nothing"


def test_the_images_match_what_the_chart_expects() -> None:
    objects = render()
    agent_pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    operator_pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    agent_steps = final_stage(instructions(ROOT / IMAGES["agent"][0]))
    state_dir = env_of(agent_pod["containers"][0])["WASMLET_STATE_DIR"]
    assert ("VOLUME", f'["{state_dir}"]') in agent_steps
    assert ("EXPOSE", str(agent_pod["containers"][0]["ports"][0]["containerPort"])) in agent_steps
    for pod, (path, _) in ((agent_pod, IMAGES["agent"]), (operator_pod, IMAGES["operator"])):
        [user] = [a for k, a in final_stage(instructions(ROOT / path)) if k == "USER"]
        assert user == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"


def build_context() -> list[Path]:
    """The files `docker build .` sends with .dockerignore applied (its allow-list form)."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore starts from nothing and allows what the build needs"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    excluded = [r.removeprefix("**/").rstrip("/") for r in rules[1:] if not r.startswith("!")]
    files = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if not path.is_file() or not any(relative == a or relative.startswith(f"{a}/") for a in allowed):
            continue
        if any(fnmatch.fnmatch(part, pattern) for part in relative.split("/") for pattern in excluded):
            continue
        files.append(path)
    return files


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv with only the built wheel installed; its dependencies are this test run's."""
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    for path in build_context():
        target = context / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    wheels = work / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--wheel-dir", str(wheels), str(context)], cwd=work)
    [wheel] = wheels.glob("wasmlet-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=work)
    # The image installs the dependencies from PyPI; here they come from this run's environment:
    # a .pth line adds its site-packages *after* the fresh one (its .pth files, such as the
    # editable install of wasmlet, are not processed, so the source tree stays out of reach).
    fresh_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=work).strip()
    (Path(fresh_site) / "zz-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    yield venv


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a command in a clean environment; its stdout (and, with check=False, stderr too)."""
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=90)
    if check:
        assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout
    assert done.returncode == 2, f"{argv}: expected a usage error, got exit {done.returncode}"
    return done.stdout + done.stderr


def test_the_wheel_runs_from_its_install_not_from_the_source_tree(fresh_install: Path) -> None:
    out = run([str(fresh_install / "bin" / "python"), "-c",
               "import wasmlet.operator.main as o, wasmlet.nodeagent.main as a, wasmlet.cli.main as c;"
               "print(o.__file__); print(a.__file__); print(c.__file__)"], cwd=fresh_install)
    for line in out.splitlines():
        assert Path(line).is_relative_to(fresh_install), line


@pytest.mark.parametrize("command", ["wasmlet-operator", "wasmlet-agent", "wasmlet"])
def test_every_entry_point_answers_help(fresh_install: Path, command: str) -> None:
    out = run([str(fresh_install / "bin" / command), "--help"], cwd=fresh_install)
    assert out.startswith(f"usage: {command}")
    if command != "wasmlet":
        assert "--check-config" in out


def test_the_operator_checks_the_config_the_chart_gives_it(fresh_install: Path) -> None:
    container = one(render({"operator": {"watchNamespace": "apps"}}), "Deployment")["spec"]["template"]["spec"][
        "containers"][0]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    out = run([str(fresh_install / "bin" / "wasmlet-operator"), "--check-config", "--kubeconfig",
               "https://10.96.0.1:443"], cwd=fresh_install, env=env)
    assert "namespace: apps" in out and "liveness_endpoint: http://0.0.0.0:8080/healthz" in out
    assert "api: https://10.96.0.1:443" in out
    bad = run([str(fresh_install / "bin" / "wasmlet-operator"), "--check-config"], cwd=fresh_install,
              env={**env, "WASMLET_RESYNC_SECONDS": "0"}, check=False)
    assert "WASMLET_RESYNC_SECONDS" in bad


def test_the_agent_checks_the_config_the_chart_gives_it(fresh_install: Path) -> None:
    container = one(render({}), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    # What the kubelet fills in: the downward API and $(VAR) expansion.
    env["WASMLET_NODE_NAME"] = env["WASMLET_NODE_NAME"].replace("$(HOST_NODE_NAME)", "worker-1")
    ca = fresh_install / "ca.crt"  # the kube-root-ca.crt ConfigMap the chart mounts
    ca.write_text("a CA")
    env.update(WASMLET_NODE_IP="10.0.0.7", WASMLET_STATE_DIR=str(fresh_install / "state"), WASMLET_CLIENT_CA_FILE=str(ca))
    if "WASMLET_BOOTSTRAP_KUBECONFIG" in env:
        assert env["WASMLET_BOOTSTRAP_KUBECONFIG"] == "in-cluster"  # TLS bootstrap from the ServiceAccount
        env["WASMLET_BOOTSTRAP_KUBECONFIG"] = "https://10.96.0.1:443"  # stands in for the in-cluster credentials
    else:
        env["WASMLET_KUBECONFIG"] = "https://10.96.0.1:443"  # stands in for the in-cluster credentials
    out = run([str(fresh_install / "bin" / "wasmlet-agent"), "--check-config"], cwd=fresh_install, env=env)
    assert "node_name: worker-1-wasm" in out and "kubelet_port: 10260" in out and "node_ip: 10.0.0.7" in out
    assert "api: https://10.96.0.1:443" in out
    bad = run([str(fresh_install / "bin" / "wasmlet-agent"), "--check-config"], cwd=fresh_install,
              env={**env, "WASMLET_KUBELET_PORT": "eighty"}, check=False)
    assert "kubelet_port" in bad


def test_the_systemd_unit_starts_the_installed_agent_with_its_config(fresh_install: Path) -> None:
    """deploy/systemd: the KubeEdge edge host's service runs the wheel's `wasmlet-agent` on the
    config file shipped beside it, which the agent accepts."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys keep their case
    unit.read(ROOT / "deploy" / "systemd" / "wasmlet-agent.service")
    command = unit["Service"]["ExecStart"].split()
    assert command[0] == "/opt/wasmlet/bin/wasmlet-agent" and command[1:] == ["--config", "/etc/wasmlet/agent.yaml"]
    assert unit["Service"]["StateDirectory"] == "wasmlet" and unit["Install"]["WantedBy"] == "multi-user.target"
    ca = fresh_install / "kubelet-client-ca.crt"
    ca.write_text("a CA")
    config = ROOT / "deploy" / "systemd" / "wasmlet-agent.yaml"
    out = run([str(fresh_install / "bin" / "wasmlet-agent"), "--config", str(config), "--check-config"],
              cwd=fresh_install, env={"WASMLET_CLIENT_CA_FILE": str(ca), "WASMLET_NODE_IP": "192.0.2.10"})
    assert "api: http://127.0.0.1:10550" in out and "metaserver: True" in out and "node_name: edge-node-1" in out
