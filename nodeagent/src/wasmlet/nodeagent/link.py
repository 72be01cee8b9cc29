"""CloudLink: whether the agent's writes currently reach the API server.

Behind KubeEdge's MetaServer a read never tells: while the cloud is away MetaServer answers a
LIST with an empty list and a GET with whatever copy it kept, both with 200. Only a write fails
(500), so the Lease renewal, a write made every few seconds anyway, is the agent's link probe.
Reads that would stop a Pod count as definitive only while the link is up, and a reconnect
(the first successful write after a failed one) is when the agent tells the API its truth again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class CloudLink:
    """Up after a write succeeded, down after one failed for want of the server (5xx, no answer)."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self._was_down = False  # a failure was seen: the next success is a reconnect
        self._listeners: list[Callable[[], None]] = []

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call `listener` (quick, synchronous) each time the link comes back after a failure."""
        self._listeners.append(listener)

    def succeeded(self) -> None:
        if self.up.is_set():
            return
        self.up.set()
        if self._was_down:
            self._was_down = False
            log.info("API link is back")
            for listener in self._listeners:
                listener()

    def failed(self) -> None:
        if self.up.is_set() or not self._was_down:
            log.info("API link is down: reads are not trusted to end Pods until a write succeeds")
        self.up.clear()
        self._was_down = True
