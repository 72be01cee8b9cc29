"""Event correlation as client-go's `EventCorrelator` does it, before anything is sent (pure, no I/O).

Three steps, in client-go's order, each with its defaults:
- the spam filter: a token bucket per (source, object, type, reason, message) — a burst of 25,
  then one event every 5 minutes; what exceeds it is dropped;
- the aggregator: more than 10 events of the same source, object, type and reason but different
  messages within 10 minutes become one event, "(combined from similar events): <message>";
- the logger: an event seen before (same key) is not created again: its `count` and
  `lastTimestamp` are patched onto the existing Event.

So a Pod in a crash loop produces one `BackOff` Event whose count grows, not an Event a restart.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

CACHE_SIZE = 4096  # client-go's maxLruCacheEntries
MAX_SIMILAR = 10  # defaultAggregateMaxEvents
AGGREGATE_WINDOW = 600.0  # defaultAggregateIntervalInSeconds
SPAM_BURST = 25  # defaultSpamBurst
SPAM_REFILL_SECONDS = 300.0  # defaultSpamQPS = 1/300
COMBINED = "(combined from similar events): "


@dataclass
class Post:
    """What to send for one event: a create of `event`, or a patch of the Event named in it."""

    event: Obj
    patch: Obj | None = None  # when set: a merge patch of `count`, `lastTimestamp`, `message`


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    since: float = 0.0


class _Lru(OrderedDict[str, Any]):
    def remember(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE_SIZE:
            self.popitem(last=False)


class EventCorrelator:
    """Decides, for each new event, whether to create it, patch an earlier one, or drop it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets = _Lru()
        self._similar = _Lru()
        self._seen = _Lru()  # event key → the Event as created (name, firstTimestamp, count)

    def correlate(self, event: Obj) -> Post | None:
        """The request to make for `event`, or None when the spam filter drops it."""
        if not self._allow(_key(event, with_message=True)):
            return None
        event, key = self._aggregate(event)
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen.remember(key, event)
            return Post(event)
        merged = {**event, "metadata": {**event["metadata"], "name": earlier["metadata"]["name"]},
                  "count": int(earlier.get("count") or 1) + 1, "firstTimestamp": earlier.get("firstTimestamp")}
        self._seen.remember(key, merged)
        patch = {"count": merged["count"], "lastTimestamp": event.get("lastTimestamp"), "message": event.get("message")}
        return Post(merged, patch)

    def forget(self, event: Obj) -> None:
        """The Event could not be patched (it expired from the API): the next one is created anew."""
        for key in [k for k, seen in self._seen.items() if seen["metadata"]["name"] == event["metadata"]["name"]]:
            del self._seen[key]

    def _allow(self, key: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(key) or _Bucket(float(SPAM_BURST), now)
        bucket.tokens = min(float(SPAM_BURST), bucket.tokens + (now - bucket.stamp) / SPAM_REFILL_SECONDS)
        bucket.stamp = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        self._buckets.remember(key, bucket)
        return allowed

    def _aggregate(self, event: Obj) -> tuple[Obj, str]:
        """The event (combined when it has too many similar ones) and its key for deduplication:
        combined events share one key, so they all count onto one Event."""
        now = self._clock()
        key = _key(event, with_message=False)
        similar = self._similar.get(key)
        if similar is None or now - similar.since > AGGREGATE_WINDOW:
            similar = _Similar(since=now)
        similar.messages.add(event.get("message") or "")
        self._similar.remember(key, similar)
        if len(similar.messages) < MAX_SIMILAR:
            return event, _key(event, with_message=True)
        return {**event, "message": COMBINED + (event.get("message") or "")}, key


def _key(event: Obj, with_message: bool) -> str:
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    parts = [source.get("component"), source.get("host"), involved.get("kind"), involved.get("namespace"),
             involved.get("name"), involved.get("uid"), involved.get("apiVersion"), involved.get("fieldPath"),
             event.get("type"), event.get("reason")]
    if with_message:
        parts.append(event.get("message"))
    return "\x00".join(str(part or "") for part in parts)
