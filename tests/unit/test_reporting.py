"""The API reporter's status ordering: an older status never lands after a newer one."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from wasmlet.nodeagent.pods import PodRef
from wasmlet.nodeagent.reporting import POST_CONCURRENCY, ApiReporter

Obj = dict[str, Any]


class SlowApi:
    """Records patches as the API applies them (when they complete); chosen phases wait for a gate."""

    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.gate = asyncio.Event()
        self.started: list[tuple[str, str]] = []
        self.applied: dict[str, str] = {}
        self.order: list[tuple[str, str]] = []

    async def patch(self, resource: Any, name: str, body: Obj, namespace: str, subresource: str = "") -> Obj:
        phase = body["status"]["phase"]
        self.started.append((name, phase))
        if phase in self.held:
            await self.gate.wait()
        self.applied[name] = phase
        self.order.append((name, phase))
        return body

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        return None


def reporter(api: SlowApi) -> ApiReporter:
    return ApiReporter(cast(Any, api), "node-1")


async def until(predicate: Any) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_a_status_posted_while_an_older_one_is_in_flight_lands_after_it() -> None:
    api = SlowApi(held={"Pending"})
    posting = reporter(api)
    ref = PodRef("default", "p", "uid-p")
    run = asyncio.create_task(posting.run())
    try:
        posting.update(ref, {"phase": "Pending"})
        await until(lambda: api.started)
        posting.update(ref, {"phase": "Succeeded"})
        finishing = asyncio.create_task(posting.finished(ref, deleting=False))
        await asyncio.sleep(0.01)
        assert api.started == [("p", "Pending")]  # waits for the post in flight
        api.gate.set()
        await finishing
        assert api.order == [("p", "Pending"), ("p", "Succeeded")]
        assert api.applied == {"p": "Succeeded"}
        assert not posting._posting and not posting._latest
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_status_queued_behind_other_posts_is_dropped_once_a_newer_one_was_posted() -> None:
    api = SlowApi(held={"Running"})
    posting = reporter(api)
    others = [PodRef("default", f"o{i}", f"uid-o{i}") for i in range(POST_CONCURRENCY)]
    ref = PodRef("default", "p", "uid-p")
    run = asyncio.create_task(posting.run())
    try:
        for other in others:
            posting.update(other, {"phase": "Running"})
        posting.update(ref, {"phase": "Pending"})  # queued: every post slot is taken
        await until(lambda: len(api.started) == POST_CONCURRENCY)
        posting.update(ref, {"phase": "Succeeded"})
        await posting.finished(ref, deleting=False)
        api.gate.set()
        await until(lambda: len(api.applied) == POST_CONCURRENCY + 1)
        await asyncio.sleep(0.01)
        assert ("p", "Pending") not in api.started
        assert api.applied["p"] == "Succeeded"
        assert not posting._posting and not posting._latest
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
