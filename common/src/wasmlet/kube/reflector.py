"""List-then-watch, forever: the informer loop both components build their view of the API on.

It resumes a watch from the last resourceVersion it saw (including bookmarks), relists on
`410 Gone`, and retries an unreachable API with jittered backoff. After every (re)list the
handler gets the full set of objects, so it can drop what vanished while it was not watching.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from wasmlet.kube.backoff import Backoff
from wasmlet.kube.client import KubeClient
from wasmlet.kube.errors import ApiError, ApiUnavailable, Gone
from wasmlet.kube.resources import Resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ReflectorHandler(Protocol):
    """What a reflector feeds. Both methods must be quick; long work goes to the handler's own tasks."""

    async def replace(self, objects: list[Obj]) -> None:
        """The complete current set after a (re)list."""

    async def apply(self, event_type: str, obj: Obj) -> None:
        """One ADDED/MODIFIED/DELETED event."""


class Reflector:
    """Keeps a handler in sync with the objects of one resource that match the selectors."""

    def __init__(self, api: KubeClient, resource: Resource, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 watch_timeout: int = 300, backoff: Backoff | None = None) -> None:
        self._api = api
        self._resource = resource
        self._namespace = namespace
        self._labels = label_selector
        self._fields = field_selector
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff()
        self.synced = asyncio.Event()
        self.tried = asyncio.Event()  # the first list was answered, or failed (then `error` says why)
        self.error: ApiError | None = None  # why the last list or watch failed; None once it works again
        self.resource_version: str | None = None

    async def run(self, handler: ReflectorHandler) -> None:
        """Run until cancelled."""
        while True:
            try:
                if self.resource_version is None:
                    await self._list(handler)
                await self._watch(handler)
                self._backoff.reset()
            except Gone:
                log.info("watch on %s expired at resourceVersion %s; relisting",
                         self._resource.plural, self.resource_version)
                self.resource_version = None
            except ApiUnavailable as exc:
                self._failed(exc)
                delay = self._backoff.next()
                log.warning("API unavailable for %s (%s); retrying in %.1fs", self._resource.plural, exc, delay)
                await asyncio.sleep(delay)
            except ApiError as exc:
                # 403 (RBAC not there yet) or similar: nothing to do but wait and try again.
                self._failed(exc)
                delay = self._backoff.next()
                log.error("cannot watch %s: %s; retrying in %.1fs", self._resource.plural, exc, delay)
                self.resource_version = None
                await asyncio.sleep(delay)

    def _failed(self, exc: ApiError) -> None:
        self.error = exc
        self.tried.set()

    async def _list(self, handler: ReflectorHandler) -> None:
        listing = await self._api.list(self._resource, self._namespace,
                                       label_selector=self._labels, field_selector=self._fields)
        self.resource_version = listing.get("metadata", {}).get("resourceVersion") or None
        await handler.replace(list(listing.get("items") or []))
        self.error = None
        self.synced.set()
        self.tried.set()

    async def _watch(self, handler: ReflectorHandler) -> None:
        async for event in self._api.watch(
            self._resource, self._namespace, resource_version=self.resource_version,
            label_selector=self._labels, field_selector=self._fields, timeout_seconds=self._watch_timeout,
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            version = obj.get("metadata", {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                await handler.apply(kind, obj)
            if version:
                self.resource_version = version
