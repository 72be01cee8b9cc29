"""Reporters: where Pod status and Events go.

`ApiReporter` coalesces status: a worker may change its Pod ten times while the API is slow or
gone; only the latest status is kept per Pod and posted when the link allows, so the final
truth arrives when it returns and a reconnect never floods the API with stale intermediate
states. A Pod's statuses are posted one at a time, each taken as the newest when its post begins,
so an older one can never land after a newer one. Events are best effort, as the kubelet's are
(a bounded queue, dropped when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from wasmlet.kube import ApiError, ApiUnavailable, Conflict, Invalid, KubeClient, NotFound
from wasmlet.kube.backoff import Backoff
from wasmlet.kube.resources import EVENTS, PODS
from wasmlet.nodeagent.pods import PodRef
from wasmlet.nodeagent.status import now

log = logging.getLogger(__name__)

Obj = dict[str, Any]
EVENT_QUEUE = 1000
POST_CONCURRENCY = 8


class ApiReporter:
    """Posts Pod status (`/status`, merge patch) and Events to the API server."""

    def __init__(self, api: KubeClient, node_name: str) -> None:
        self._api = api
        self._node = node_name
        self._latest: dict[PodRef, Obj] = {}
        self._posting: dict[PodRef, asyncio.Event] = {}  # a post in flight, set when it ends
        self._dirty: asyncio.Event = asyncio.Event()
        self._events: asyncio.Queue[Obj] = asyncio.Queue(EVENT_QUEUE)
        self._backoff = Backoff(base=0.5, cap=15.0)

    def update(self, ref: PodRef, status: Obj) -> None:
        self._latest[ref] = status
        self._dirty.set()

    def event(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
        try:
            self._events.put_nowait(_event(ref, self._node, type_, reason, message, container))
        except asyncio.QueueFull:
            log.debug("event queue full; dropping %s %s", reason, ref.name)

    async def finished(self, ref: PodRef, deleting: bool) -> None:
        await self.flush_one(ref)
        if deleting:
            try:
                await self._api.delete(PODS, ref.name, ref.namespace, grace_period_seconds=0, uid=ref.uid)
            except (NotFound, Conflict):
                pass  # already gone, or a new Pod of the same name: not ours to delete
            except ApiError as exc:
                log.warning("cannot delete pod %s/%s: %s", ref.namespace, ref.name, exc)

    async def run(self) -> None:
        """Post status and events until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._post_statuses())
            group.create_task(self._post_events())

    async def drain(self, timeout: float = 10.0) -> None:
        """Post every pending status before shutdown, for at most `timeout` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(self.flush_one(ref) for ref in list(self._latest))), timeout)

    async def flush_one(self, ref: PodRef) -> None:
        if not await self._post(ref):
            self._dirty.set()

    async def _post(self, ref: PodRef) -> bool:
        """Post the newest status of `ref`, after a post of it still in flight; False when the API
        is unavailable (the status is kept for the next round)."""
        while (in_flight := self._posting.get(ref)) is not None:
            await in_flight.wait()
        status = self._latest.pop(ref, None)
        if status is None:
            return True
        done = self._posting[ref] = asyncio.Event()
        try:
            await self._patch(ref, status)
        except ApiUnavailable:
            self._latest.setdefault(ref, status)  # a newer one may have arrived meanwhile
            return False
        finally:
            del self._posting[ref]
            done.set()
        return True

    async def _post_statuses(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            semaphore = asyncio.Semaphore(POST_CONCURRENCY)

            async def post(ref: PodRef) -> None:
                async with semaphore:  # noqa: B023 - awaited below, within this iteration
                    await self._post(ref)

            await asyncio.gather(*(post(ref) for ref in list(self._latest)))
            if self._latest and not self._dirty.is_set():
                await asyncio.sleep(self._backoff.next())
                self._dirty.set()
            elif not self._latest:
                self._backoff.reset()

    async def _patch(self, ref: PodRef, status: Obj) -> None:
        # Merge patch with whole lists: containerStatuses/conditions are always sent complete.
        # The UID precondition keeps a late status from landing on a new Pod of the same name.
        body = {"metadata": {"uid": ref.uid}, "status": status}
        try:
            await self._api.patch(PODS, ref.name, body, ref.namespace, subresource="status")
        except (NotFound, Conflict):
            pass
        except Invalid as exc:
            # The API answers a mismatching uid with 422 (`metadata.uid: field is immutable`): the name
            # now belongs to a new Pod, which is not ours to report on.
            log.debug("status of %s/%s not posted: %s", ref.namespace, ref.name, exc)
        except ApiUnavailable:
            raise
        except ApiError as exc:
            log.warning("cannot post status of %s/%s: %s", ref.namespace, ref.name, exc)

    async def _post_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._api.create(EVENTS, event)
            except ApiError as exc:
                log.debug("event dropped: %s", exc)


class ConsoleReporter:
    """Standalone mode: keeps the latest status per Pod and prints events as they happen."""

    def __init__(self, printer: Any = None) -> None:
        self.latest: dict[PodRef, Obj] = {}
        self.finished_pods: set[PodRef] = set()
        self._print = printer

    def update(self, ref: PodRef, status: Obj) -> None:
        self.latest[ref] = status

    def event(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
        if self._print is not None:
            self._print(ref, type_, reason, message, container)
        else:
            log.info("%s/%s %s %s: %s", ref.namespace, ref.name, type_, reason, message)

    async def finished(self, ref: PodRef, deleting: bool) -> None:
        self.finished_pods.add(ref)


def _event(ref: PodRef, node: str, type_: str, reason: str, message: str, container: str | None) -> Obj:
    stamp = now()
    involved: Obj = {"apiVersion": "v1", "kind": "Pod", "namespace": ref.namespace, "name": ref.name, "uid": ref.uid}
    if container:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": "wasmlet", "host": node},
        "reportingComponent": "wasmlet",
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
