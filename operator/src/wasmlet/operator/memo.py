"""What kopf hands every handler as `memo`: the settings, and the services built at startup.

kopf gives each object a shallow copy of this memo, made when the object is first seen (after
the startup handlers ran), so every copy shares the one `Services` instance.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from wasmlet.kube import ClusterConfig
from wasmlet.operator.queue import ReconcileQueue
from wasmlet.operator.settings import OperatorSettings


@dataclass
class Services:
    """Built by the startup handler, torn down by the cleanup handler; never module globals."""

    queue: ReconcileQueue
    queue_task: asyncio.Task[None]
    resources: contextlib.AsyncExitStack
    node_fingerprints: dict[str, Any] = field(default_factory=dict)


@dataclass
class OperatorMemo:
    """The operator's state in kopf's `memo`."""

    settings: OperatorSettings
    cluster_config: ClusterConfig
    services: Services | None = None

    def require_services(self) -> Services:
        """The running services (a handler before startup or after cleanup is a bug)."""
        if self.services is None:
            raise RuntimeError("wasmlet operator services are not running")
        return self.services
