"""Who may read what the agent writes on the node: Secret volumes are owner-only unless the Pod's
defaultMode says otherwise, and the state directory is closed to other local users."""

from __future__ import annotations

import asyncio
import base64
import stat
from pathlib import Path

from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.podspec import parse_pod
from wasmlet.nodeagent.volumes import prepare_volumes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pod(volumes: list[dict]) -> dict:
    return {"metadata": {"uid": "u", "name": "p", "namespace": "default"},
            "spec": {"volumes": volumes, "containers": [{"name": "main", "image": "configmap://m/a.wasm"}]}}


async def test_secret_files_are_owner_only_unless_default_mode_says_otherwise(tmp_path: Path) -> None:
    objects = StaticObjects()
    objects.replace([
        {"kind": "Secret", "metadata": {"name": "s"}, "data": {"key": base64.b64encode(b"v").decode()}},
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"key": "v"}}])
    plan = parse_pod(pod([
        {"name": "plain", "secret": {"secretName": "s"}},
        {"name": "shared", "secret": {"secretName": "s", "defaultMode": 0o440}},
        {"name": "item", "secret": {"secretName": "s", "items": [{"key": "key", "path": "k", "mode": 0o400}]}},
        {"name": "config", "configMap": {"name": "c"}}]))
    paths = await prepare_volumes(plan, tmp_path, objects, {})
    assert mode(paths["plain"] / "key") == 0o600 and mode(paths["plain"]) == 0o700
    assert mode(paths["shared"] / "key") == 0o440
    assert mode(paths["item"] / "k") == 0o400
    assert mode(paths["config"] / "key") == 0o644


async def test_the_state_directory_is_owner_only_even_if_it_existed_open(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (tmp_path / "manifests").mkdir()
    settings = AgentSettings(node_name="n", kubelet_port=0, state_dir=state, manifests=tmp_path / "manifests",
                             serve_kubelet_api=False).validate()
    agent = Agent(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert mode(state) == 0o700
    assert mode(state / "agent.db") == 0o600
