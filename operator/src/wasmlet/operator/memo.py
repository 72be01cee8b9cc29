"""What kopf hands every handler as `memo`: the settings, and the services built at startup.

kopf gives each object a shallow copy of this memo, made when the object is first seen (after
the startup handlers ran), so every copy shares the one `Services` instance.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from wasmlet.kube import ClusterConfig
from wasmlet.kube.credentials import Credentials, Login
from wasmlet.operator.services import Services
from wasmlet.operator.settings import OperatorSettings


@dataclass
class OperatorMemo:
    """The operator's state in kopf's `memo`."""

    settings: OperatorSettings
    cluster_config: ClusterConfig
    identity: str  # this replica's name among its peers (kopf's peering identity)
    priority: int  # this replica's peering priority
    stop_flag: asyncio.Event = field(default_factory=asyncio.Event)  # kopf's: set it to stop the operator
    services: Services | None = None
    fatal: BaseException | None = None  # why the services died, if they did (the process then exits 1)
    # One credential for kopf's login and our own client; the last one kopf was given (see login).
    credentials: Credentials = field(init=False)
    kopf_login: Login | None = None

    def __post_init__(self) -> None:
        self.credentials = Credentials(self.cluster_config)

    def require_services(self) -> Services:
        """The running services (a handler before startup or after cleanup is a bug)."""
        if self.services is None:
            raise RuntimeError("wasmlet operator services are not running")
        return self.services

    def fail(self, error: BaseException) -> None:
        """The services died: stop the operator (kopf runs the cleanup handlers) and remember why."""
        self.fatal = error
        self.stop_flag.set()
