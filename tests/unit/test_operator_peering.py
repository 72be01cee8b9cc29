"""kopf's peering rule, as the operator's own loops apply it: one active replica among its peers."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from wasmlet.operator.peering import PeeringGate, Verdict, evaluate

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
ME = "op-a/123abc"


def peer(priority: int, *, seen_ago: float = 0.0, lifetime: int = 30) -> dict[str, Any]:
    seen = NOW - datetime.timedelta(seconds=seen_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def peering(**peers: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "wasmlet"}, "status": {ME: peer(10), **peers}}


def test_alone_or_above_every_live_peer_is_active() -> None:
    assert evaluate(peering(), identity=ME, priority=10, now=NOW).active
    assert evaluate(peering(other=peer(5)), identity=ME, priority=10, now=NOW).active


def test_a_higher_live_peer_pauses_us_until_it_would_expire() -> None:
    verdict = evaluate(peering(other=peer(20, seen_ago=10)), identity=ME, priority=10, now=NOW)
    assert not verdict.active
    assert verdict.blockers == ("other (priority 20)",)
    assert verdict.recheck_after == pytest.approx(20)


def test_equal_priorities_pause_everyone_as_kopf_does() -> None:
    verdict = evaluate(peering(twin=peer(10)), identity=ME, priority=10, now=NOW)
    assert not verdict.active and "same priority" in verdict.reason


def test_dead_peers_do_not_count() -> None:
    assert evaluate(peering(old=peer(99, seen_ago=31)), identity=ME, priority=10, now=NOW).active


def test_no_object_or_no_keep_alive_of_our_own_is_not_active() -> None:
    assert not evaluate(None, identity=ME, priority=10, now=NOW).active
    without_me = {"metadata": {"name": "wasmlet"}, "status": {"other": peer(1)}}
    assert not evaluate(without_me, identity=ME, priority=10, now=NOW).active


async def test_the_gate_reports_flips_only() -> None:
    flips: list[bool] = []
    now = [NOW]

    def changed(active: bool, verdict: Verdict) -> None:
        flips.append(active)

    gate = PeeringGate(identity=ME, priority=10, on_change=changed, clock=lambda: now[0])
    await gate.replace([peering(other=peer(20))])
    await gate.apply("MODIFIED", peering(other=peer(20)))
    assert flips == [] and not gate.verdict.active  # closed from the start: no flip to report
    now[0] = NOW + datetime.timedelta(seconds=31)  # the other replica stopped renewing
    gate.evaluate()
    assert flips == [True]
    await gate.apply("DELETED", peering())
    assert flips == [True, False] and not gate.present
