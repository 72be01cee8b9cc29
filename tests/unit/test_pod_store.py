"""The local store is never behind the API on what a restarted agent must know."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wasmlet.nodeagent.podstore import PodStore, StoringReporter


class SeenByTheApi:
    """The inner reporter: records what the store held when each status reached it."""

    def __init__(self, store: PodStore) -> None:
        self.store = store
        self.stored_when_reported: list[Any] = []

    def update(self, ref: Any, status: dict[str, Any]) -> None:
        self.stored_when_reported.append(self.store.status(ref.uid))


def container(state: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "Running" if "running" in state else "Pending",
            "containerStatuses": [{"name": "main", "restartCount": 0, "state": state}]}


def test_a_running_or_ended_container_is_stored_before_the_api_is_told(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "agent.db")
    inner = SeenByTheApi(store)
    reporter = StoringReporter(inner, store)
    ref = SimpleNamespace(uid="u1")
    running = container({"running": {"startedAt": "2026-11-21T10:00:00Z"}})
    ended = container({"terminated": {"exitCode": 0, "reason": "Completed"}})

    reporter.update(ref, running)
    reporter.update(ref, ended)

    assert inner.stored_when_reported == [running, ended]


def test_waiting_statuses_are_written_behind_coalesced(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "agent.db")
    reporter = StoringReporter(SeenByTheApi(store), store)
    ref = SimpleNamespace(uid="u1")
    first = container({"waiting": {"reason": "ContainerCreating"}})
    second = container({"waiting": {"reason": "ContainerCreating", "message": "pulling"}})

    reporter.update(ref, first)
    reporter.update(ref, second)
    assert store.status("u1") is None

    reporter.flush()
    assert store.status("u1") == second
