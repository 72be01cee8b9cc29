"""A store the agent cannot read (after a power loss, a disk error) costs what it held, never the
agent: it is moved aside, the agent starts and relists its Pods, and the loss is a Node Event."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import EVENTS, PODS
from wasmlet.nodeagent.podstore import PodStore

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)

NODE = "wasm-node-1"


async def node_events(api: KubeClient, reason: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
    """The Node's Events with `reason`, once there are `count` of them."""
    async with asyncio.timeout(timeout):
        while True:
            events = await api.list(EVENTS, "default", field_selector=f"involvedObject.name={NODE}")
            found = [e for e in events["items"] if e["reason"] == reason and e["involvedObject"]["kind"] == "Node"]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("garbage", [b"\x00not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
                         ids=["not-sqlite", "torn-header"])
async def test_a_corrupt_store_is_moved_aside_and_the_agent_relists(kube_api: Any, tmp_path: Path,
                                                                    garbage: bytes) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent.db").write_bytes(garbage)
    async with api_client(kube_api.kubeconfig) as api:
        await put_module_configmap(api, "default", "modules", {"hello.wasm": module_bytes("hello")})
        await api.create(PODS, wasm_pod("survivor", NODE, "configmap://modules/hello.wasm"))
        async with running_agent(kube_api.kubeconfig, state):
            await wait_for(api, PODS, "survivor", "default", lambda p: p.get("status", {}).get("phase") == "Succeeded")
            [event] = await node_events(api, "StoreRecovered")
            assert event["type"] == "Warning"
            assert "cannot be read" in event["message"] and "moved it to agent.db.corrupt-" in event["message"]
    [aside] = state.glob("agent.db.corrupt-*[0-9]")
    assert aside.read_bytes() == garbage  # kept for whoever wants to look at it


async def test_a_bad_row_is_skipped_reported_and_dropped(kube_api: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = PodStore(state / "agent.db")
    store.put_pod(wasm_pod("ghost", NODE, "configmap://modules/hello.wasm", metadata={"uid": "good-uid"}))
    store.close()
    with sqlite3.connect(state / "agent.db") as db:
        db.execute("INSERT INTO pods (uid, pod, source) VALUES ('bad-uid', '{\"metadata\": {\"uid\"', 'api')")
        db.execute("INSERT INTO statuses (uid, status) VALUES ('good-uid', '[1, 2]')")
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, state):
        events = await node_events(api, "StoreRecovered", count=2)
        messages = " | ".join(e["message"] for e in events)
        assert "bad row (pod bad-uid: not JSON" in messages
        assert "bad row (status of pod good-uid: not a JSON object): skipped and dropped" in messages
    reopened = PodStore(state / "agent.db")
    try:
        assert reopened.take_problems() == []
        assert reopened.pods() == []  # relisted: the API server had none of them
        assert reopened.take_problems() == []
    finally:
        reopened.close()
