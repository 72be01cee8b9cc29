"""One active operator among replicas: kopf's peering rule, mirrored for the operator's own loops.

kopf keeps a `ClusterKopfPeering` (or, for a namespaced operator, a `KopfPeering`) object whose
`status` maps each running operator to `{priority, lifetime, lastseen}`, and pauses its watches
while another live operator has a higher priority -- or the same one, in which case all of them
pause (kopf's rule: "if two operators run with the same priority, all operators freeze"). That is
why every replica gets a priority of its own (`OperatorSettings.peering_priority`).

kopf's pause stops kopf's watch streams and handlers only. The operator's reconcile queue, its
retries and resyncs, and its Pod and Node watches are its own, so `PeeringGate` applies the very
same rule to the same object and holds the queue while kopf would be paused. Pure except for the
clock: the caller feeds it the peering object and asks again after `recheck_after`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wasmlet.operator import objects

DEFAULT_LIFETIME = 60  # kopf's default peering lifetime (seconds)


@dataclass(frozen=True)
class Verdict:
    """Whether this operator may act; who blocks it; when the answer may change by itself."""

    active: bool
    blockers: tuple[str, ...] = ()
    recheck_after: float | None = None
    reason: str = ""


def evaluate(peering: Mapping[str, Any] | None, *, identity: str, priority: int,
             now: datetime.datetime) -> Verdict:
    """kopf's `process_peering_event` rule for the peering object (None: it does not exist).

    Without the object a mandatory peering keeps kopf paused (nobody could tell it apart from a
    peer), so the gate is closed too; the operator creates the object at start. Until kopf has
    written this replica's own keep-alive into it, the gate stays closed as well.
    """
    if peering is None:
        return Verdict(False, reason="the peering object does not exist")
    if identity not in (peering.get("status") or {}):
        # Stricter than kopf: act only once the peers can see us, so the one we take over from
        # pauses on the very update that lets us start.
        return Verdict(False, reason="this replica's keep-alive is not in the peering object yet")
    blockers: list[str] = []
    deadlines: list[float] = []
    for peer, info in (peering.get("status") or {}).items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        seen = objects.parse_time(str(info.get("lastseen") or "")) or now
        try:
            lifetime = int(info.get("lifetime", DEFAULT_LIFETIME))
            their = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue
        remaining = (seen + datetime.timedelta(seconds=lifetime) - now).total_seconds()
        if remaining > 0 and their >= priority:
            blockers.append(f"{peer} (priority {their})")
            deadlines.append(remaining)
    if blockers:
        same = any(f"(priority {priority})" in b for b in blockers)
        why = "peers with the same priority (all pause)" if same else "a peer with a higher priority is active"
        return Verdict(False, tuple(sorted(blockers)), min(deadlines), why)
    return Verdict(True)


class PeeringGate:
    """Feeds on the peering object's watch; tells `on_change(active, verdict)` when the answer flips."""

    def __init__(self, *, identity: str, priority: int, on_change: Callable[[bool, Verdict], None],
                 clock: Callable[[], datetime.datetime]) -> None:
        self.identity = identity
        self.priority = priority
        self._on_change = on_change
        self._clock = clock
        self._peering: Mapping[str, Any] | None = None
        self.verdict = Verdict(False, reason="the peering object has not been read yet")

    async def replace(self, objects: list[dict[str, Any]]) -> None:
        """A listing (the name is field-selected: zero or one object)."""
        self._peering = objects[0] if objects else None
        self.evaluate()

    async def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        """A watch event for the peering object."""
        self._peering = None if event_type == "DELETED" else obj
        self.evaluate()

    @property
    def present(self) -> bool:
        """Whether the last listing or event showed the peering object (False before the first)."""
        return self._peering is not None

    def evaluate(self) -> Verdict:
        """Apply the rule now; report a flip. Call again after `verdict.recheck_after`."""
        before = self.verdict.active
        self.verdict = evaluate(self._peering, identity=self.identity, priority=self.priority, now=self._clock())
        if self.verdict.active != before:
            self._on_change(self.verdict.active, self.verdict)
        return self.verdict
