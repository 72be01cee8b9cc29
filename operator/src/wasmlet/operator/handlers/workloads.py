"""WasmWorkload handlers: a created, changed or (at start) resumed workload is reconciled now.

Reconciling inside the change handler lets kopf retry failures (kopf.TemporaryError with the
error's delay). An invalid spec is not a failure: the reconcile reports it in status
(Ready=False, InvalidSpec) and returns normally, so kopf does not retry it.
"""

from __future__ import annotations

from typing import Any

import kopf

from wasmlet.api import keys
from wasmlet.operator import errors
from wasmlet.operator.memo import OperatorMemo


async def workload_changed(namespace: str | None, name: str, memo: OperatorMemo, **_: Any) -> None:
    """Reconcile the workload now, exclusive with queued reconciles of it."""
    assert namespace is not None  # WasmWorkloads are namespaced
    try:
        await memo.require_services().queue.run_now((namespace, name))
    except errors.OperatorError as exc:
        raise errors.to_kopf(exc) from exc


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the WasmWorkload change handlers on `registry` (one id: one retry state)."""
    resource = (keys.GROUP, keys.VERSION, keys.WORKLOAD_PLURAL)
    kopf.on.resume(*resource, registry=registry, id="reconcile")(workload_changed)
    kopf.on.create(*resource, registry=registry, id="reconcile")(workload_changed)
    kopf.on.update(*resource, registry=registry, id="reconcile")(workload_changed)
