"""WasmWorkload events: put them in the cache and queue the workload. No decisions here.

An event handler, not kopf's change handlers (on.create/update/resume): those make kopf write
its bookkeeping into every workload (a last-handled-configuration annotation per change, retry
progress), one more API write per change, and the reconcile queue already retries with backoff.
With event handlers kopf writes nothing on our objects and needs no finalizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from wasmlet.api import keys
from wasmlet.operator.memo import OperatorMemo


async def workload_event(event: Mapping[str, Any], memo: OperatorMemo, **_: Any) -> None:
    """Any WasmWorkload event: the raw body goes to the cache; the queue decides if it is work."""
    memo.require_services().workload_event(event.get("type"), dict(event["object"]))


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the WasmWorkload event handler on `registry`."""
    kopf.on.event(keys.GROUP, keys.VERSION, keys.WORKLOAD_PLURAL, registry=registry, id="cache")(workload_event)
