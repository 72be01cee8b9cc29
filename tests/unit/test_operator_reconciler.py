"""Reconciler decisions that are pure functions."""

from __future__ import annotations

from typing import Any

from wasmlet.operator.reconciler import spec_changed_meanwhile


def body(generation: int | None, resource_version: str = "1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "apps", "resourceVersion": resource_version}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta, "spec": {}}


def test_a_spec_changed_during_a_pass_is_looked_at_again() -> None:
    """The status write answered with the new spec: the change's watch event is then no news to
    the cache and queues nothing, so without a second look the change would wait for the resync."""
    assert spec_changed_meanwhile(body(1), body(2, "9"))


def test_a_status_write_of_our_own_is_no_reason_to_look_again() -> None:
    assert not spec_changed_meanwhile(body(1), body(1, "9"))  # only the status (resourceVersion) moved
    assert not spec_changed_meanwhile(body(1), None)  # deleted meanwhile: the gone workload is handled
    assert not spec_changed_meanwhile(body(None), body(None))  # a manifest never stored by an API server
