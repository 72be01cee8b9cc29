"""Reporters: where Pod status and Events go.

`ApiReporter` is the agent's status manager and event sink, built to spend as few API requests
per Pod as a kubelet does:
- status is coalesced: only the latest status per Pod is kept and posted when the link allows,
  so a reconnect never floods the API with stale intermediate states; a Pod's statuses are
  posted one at a time, each taken as the newest when its post begins, so an older one never
  lands after a newer one; a status equal to the one last posted is not posted again;
- a Pod's first status, while it is only starting (`Pending`, its containers `ContainerCreating`),
  waits `pending_hold` seconds: a Pod that starts within that time gets one write (`Running`)
  instead of two, and the writes that matter (`Running`, an error such as `ErrImagePull`, the
  end) are never delayed;
- nothing is written for a Pod known to be gone (its watch said DELETED, a write answered 404,
  or the agent deleted it): its pending status and events are dropped, and it is deleted at
  most once;
- Events go through client-go's correlator (events.py) and are posted behind statuses: an event
  waits, at most `event_delay` seconds, until no status post is pending, so events never
  compete with the write a user is waiting for. Like the kubelet's, they are best effort (a
  bounded queue, dropped when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

from wasmlet.kube import ApiError, ApiUnavailable, Conflict, Invalid, KubeClient, NotFound
from wasmlet.kube.backoff import Backoff
from wasmlet.kube.resources import EVENTS, PODS
from wasmlet.nodeagent.events import EventCorrelator, Post
from wasmlet.nodeagent.link import CloudLink
from wasmlet.nodeagent.metrics import AgentMetrics
from wasmlet.nodeagent.pods import PodRef
from wasmlet.nodeagent.status import now

log = logging.getLogger(__name__)

Obj = dict[str, Any]
EVENT_QUEUE = 1000
POST_CONCURRENCY = 8
PENDING_HOLD = 1.0  # seconds a new Pod's first Pending status waits for a quick Running
EVENT_DELAY = 0.25  # longest an event waits for status posts to finish
STARTING_REASONS = ("ContainerCreating", "PodInitializing")  # the waiting reasons of a Pod merely starting
GONE_MEMORY = 10_000  # Pods remembered as gone until their workers end (a bound, should one never end)


class ApiReporter:
    """Posts Pod status (`/status`, merge patch) and Events to the API server."""

    def __init__(self, api: KubeClient, node_name: str, *, pending_hold: float = PENDING_HOLD,
                 event_delay: float = EVENT_DELAY, metrics: AgentMetrics | None = None,
                 link: CloudLink | None = None) -> None:
        self._api = api
        self._link = link or CloudLink()
        self._link.on_reconnect(self.retry_now)
        self._retry = asyncio.Event()  # set (and replaced) when the link comes back
        self._steps = metrics.start_steps if metrics is not None else None
        self._starting: dict[PodRef, list[float]] = {}  # first status, then Running handed in: when
        self._node = node_name
        self._pending_hold = pending_hold
        self._event_delay = event_delay
        self._latest: dict[PodRef, Obj] = {}
        self._posted: dict[PodRef, Obj] = {}  # what the API holds, as far as this agent wrote it
        self._hold: dict[PodRef, float] = {}  # a first Pending status: not posted before this time
        self._posting: dict[PodRef, asyncio.Event] = {}  # a post in flight, set when it ends
        self._gone: OrderedDict[str, None] = OrderedDict()  # uids of Pods the API no longer has
        self._scheduled: dict[PodRef, asyncio.Event] = {}  # Pods with a delivery task: set on a new status
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(POST_CONCURRENCY)
        self._quiet: asyncio.Event = asyncio.Event()  # no status waits to be posted
        self._quiet.set()
        self._events: asyncio.Queue[tuple[PodRef, Obj]] = asyncio.Queue(EVENT_QUEUE)
        self._correlator = EventCorrelator()
        self._backoff = Backoff(base=0.5, cap=15.0)

    def update(self, ref: PodRef, status: Obj) -> None:
        if ref.uid in self._gone:
            return
        if ref not in self._posted and ref not in self._hold and _starting(status):
            self._hold[ref] = time.monotonic() + self._pending_hold
        self._time_start(ref, status)
        self._latest[ref] = status
        self._quiet.clear()
        self._schedule(ref)

    def retry_now(self) -> None:
        """The link is back: post what is pending now, not when the backoff ends."""
        self._backoff.reset()
        self._retry.set()
        self._retry = asyncio.Event()

    def _time_start(self, ref: PodRef, status: Obj) -> None:
        if self._steps is None:
            return
        marks = self._starting.get(ref)
        if marks is None and ref not in self._posted:
            marks = self._starting[ref] = [time.monotonic()]
        if marks is not None and len(marks) == 1 and status.get("phase") == "Running":
            marks.append(time.monotonic())
            self._steps.labels("run").observe(marks[1] - marks[0])

    def _time_posted(self, ref: PodRef, status: Obj) -> None:
        marks = self._starting.get(ref)
        if marks is not None and self._steps is not None and status.get("phase") != "Pending":
            del self._starting[ref]
            if len(marks) == 2 and status.get("phase") == "Running":
                self._steps.labels("report").observe(time.monotonic() - marks[1])

    def _schedule(self, ref: PodRef) -> None:
        changed = self._scheduled.get(ref)
        if changed is not None:
            changed.set()
            return
        # One delivery task per Pod with something to post: a status never waits for other Pods'
        # posts to end (only for a free post slot).
        self._scheduled[ref] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._deliver(ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
        if ref.uid in self._gone:
            return
        try:
            self._events.put_nowait((ref, _event(ref, self._node, type_, reason, message, container)))
        except asyncio.QueueFull:
            log.debug("event queue full; dropping %s %s", reason, ref.name)

    def gone(self, ref: PodRef) -> None:
        """The API no longer has this Pod: write nothing more for it."""
        self._gone[ref.uid] = None
        while len(self._gone) > GONE_MEMORY:
            self._gone.popitem(last=False)
        self._latest.pop(ref, None)
        self._posted.pop(ref, None)
        self._hold.pop(ref, None)
        self._starting.pop(ref, None)
        self._settle()

    async def finished(self, ref: PodRef, deleting: bool) -> None:
        await self.flush_one(ref)
        if deleting and ref.uid not in self._gone:
            self.gone(ref)  # deleted now, or found gone: either way, never again
            try:
                await self._api.delete(PODS, ref.name, ref.namespace, grace_period_seconds=0, uid=ref.uid)
            except (NotFound, Conflict):
                pass  # already gone, or a new Pod of the same name: not ours to delete
            except ApiError as exc:
                log.warning("cannot delete pod %s/%s: %s", ref.namespace, ref.name, exc)
        self._gone.pop(ref.uid, None)  # the worker ended: nothing reports on this uid again

    async def run(self) -> None:
        """Post events until cancelled (statuses are posted by their own tasks, ended here)."""
        try:
            await self._post_events()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, timeout: float = 10.0) -> None:
        """Post every pending status before shutdown, for at most `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self.flush_one(ref) for ref in list(self._latest)))

    async def idle(self) -> None:
        """Wait until every status and event handed in so far has been sent (or dropped)."""
        while True:
            await self._events.join()
            await self._quiet.wait()
            if not self._tasks and self._events.empty():
                return
            await asyncio.sleep(0.01)  # a delivery task still winding down

    async def flush_one(self, ref: PodRef) -> None:
        """Post the Pod's pending status now, whatever its hold (kept for a retry when the API is
        unavailable)."""
        if not await self._post(ref):
            self._schedule(ref)

    async def _post(self, ref: PodRef) -> bool:
        """Post the newest status of `ref`, after a post of it still in flight; False when the API
        is unavailable (the status is kept for the next round)."""
        while (in_flight := self._posting.get(ref)) is not None:
            await in_flight.wait()
        status = self._latest.pop(ref, None)
        if status is None or ref.uid in self._gone or status == self._posted.get(ref):
            self._settle()
            return True
        self._hold.pop(ref, None)
        done = self._posting[ref] = asyncio.Event()
        try:
            if await self._patch(ref, status):
                self._posted[ref] = status
                self._time_posted(ref, status)
        except ApiUnavailable:
            self._latest.setdefault(ref, status)  # a newer one may have arrived meanwhile
            self._link.failed()
            return False
        finally:
            del self._posting[ref]
            done.set()
            self._settle()
        return True

    def _settle(self) -> None:
        if not self._latest and not self._posting:
            self._quiet.set()

    async def _deliver(self, ref: PodRef) -> None:
        """Post the Pod's statuses until none is pending: after its hold, with a free post slot,
        again after a backoff while the API is unavailable."""
        changed = self._scheduled[ref]
        try:
            while (status := self._latest.get(ref)) is not None:
                changed.clear()
                until = self._hold.get(ref)
                if until is not None and _starting(status) and until > time.monotonic():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(until - time.monotonic()):
                            await changed.wait()
                    continue
                async with self._slots:
                    posted = await self._post(ref)
                if posted:
                    self._backoff.reset()
                else:
                    retry = self._retry
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._backoff.next()):
                            await retry.wait()
        finally:
            del self._scheduled[ref]

    async def _patch(self, ref: PodRef, status: Obj) -> bool:
        """Merge patch the Pod's status; False when the Pod is gone (nothing more is written for it)."""
        # Merge patch with whole lists: containerStatuses/conditions are always sent complete.
        # The UID precondition keeps a late status from landing on a new Pod of the same name.
        body = {"metadata": {"uid": ref.uid}, "status": status}
        try:
            await self._api.patch(PODS, ref.name, body, ref.namespace, subresource="status")
        except (NotFound, Conflict, Invalid) as exc:
            # A mismatching uid answers 422 (`metadata.uid: field is immutable`): the name now
            # belongs to a new Pod, which is not ours to report on.
            log.debug("status of %s/%s not posted: %s", ref.namespace, ref.name, exc)
            self.gone(ref)
            return False
        except ApiUnavailable:
            raise
        except ApiError as exc:
            log.warning("cannot post status of %s/%s: %s", ref.namespace, ref.name, exc)
        return True

    async def _post_events(self) -> None:
        while True:
            ref, event = await self._events.get()
            try:
                # Not wait_for: on Python 3.11 it can swallow a cancellation that arrives as the
                # wait ends, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._event_delay):
                        await self._quiet.wait()
                if ref.uid in self._gone:
                    continue  # an event about a Pod that no longer exists: no one can see it
                post = self._correlator.correlate(event)
                if post is not None:
                    await self._send(post)
            finally:
                self._events.task_done()

    async def _send(self, post: Post) -> None:
        meta = post.event["metadata"]
        try:
            if post.patch is None:
                await self._api.create(EVENTS, post.event)
                return
            try:
                await self._api.patch(EVENTS, meta["name"], post.patch, meta["namespace"])
            except NotFound:
                self._correlator.forget(post.event)  # the Event expired: create it again
                await self._api.create(EVENTS, {**post.event, "count": 1, "firstTimestamp": post.event["lastTimestamp"]})
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

    def gone(self, ref: PodRef) -> None:
        """Nothing to do: no API to write to."""


def _starting(status: Obj) -> bool:
    """A Pod that is only starting: Pending, and no container waits for any other reason (an image
    pull error, a missing ConfigMap: what a user must see at once)."""
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return status.get("phase") == "Pending" and all(
        ((c.get("state") or {}).get("waiting") or {}).get("reason") in STARTING_REASONS for c in containers)


async def post_node_event(api: KubeClient, node: str, type_: str, reason: str, message: str) -> None:
    """An Event about the Node itself, as the kubelet posts them (in `default`, the Node's name as uid)."""
    event = _event(PodRef("default", node, node), node, type_, reason, message, None)
    event["involvedObject"] = {"kind": "Node", "name": node, "uid": node}
    await api.create(EVENTS, event)


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
