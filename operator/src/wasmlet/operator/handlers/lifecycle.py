"""Login, startup, cleanup and the liveness probe: where the operator's services live."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from wasmlet.kube.config import ConfigError
from wasmlet.operator.kopflogin import connection_info
from wasmlet.operator.memo import OperatorMemo
from wasmlet.operator.services import Services

log = logging.getLogger(__name__)

LOGIN_RETRY_SECONDS = 10.0


async def login(memo: OperatorMemo, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to exactly the server, with exactly the credentials, of our own client.

    kopf calls this first, then again when the credential it was given is refused (401) or
    expires: a second call means "this one no longer works", so an exec plugin runs again and
    a rotated (projected) token file is re-read.
    """
    stale, credentials = memo.kopf_login, memo.credentials
    try:
        fresh = await (credentials.login() if stale is None else credentials.refresh(stale))
    except ConfigError as exc:  # an exec plugin failed this time: kopf tries the login again later
        raise kopf.TemporaryError(f"cannot get credentials: {exc}", delay=LOGIN_RETRY_SECONDS) from exc
    memo.kopf_login = fresh
    return connection_info(credentials, fresh)


async def startup(memo: OperatorMemo, **_: Any) -> None:
    """Start the services before kopf starts watching (kopf runs startup handlers first)."""
    settings = memo.settings
    memo.services = await Services.start(settings, memo.cluster_config, identity=memo.identity,
                                         priority=memo.priority, on_fatal=memo.fail,
                                         credentials=memo.credentials)
    scope = f"namespace {settings.namespace}" if settings.namespace else "cluster-wide"
    peering = "standalone" if settings.standalone else f"peering {settings.peering_name} as {memo.identity}, " \
                                                       f"priority {memo.priority}"
    log.info("wasmlet operator started (%s, %s)", scope, peering)


async def cleanup(memo: OperatorMemo, **_: Any) -> None:
    """Stop the services: watches, queue (reconciles in flight), metrics server, API client."""
    services, memo.services = memo.services, None
    if services is not None:
        await services.stop()
    # Stopped by a signal, kopf still waits for the stop flag it was given, then gives up after 5 s.
    memo.stop_flag.set()


async def probe(memo: OperatorMemo, **_: Any) -> dict[str, Any]:
    """The liveness endpoint's report; fails (HTTP 500) once the services have died."""
    return memo.require_services().health()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register login, startup, cleanup and the probe on `registry`."""
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.probe(registry=registry, id="wasmlet")(probe)
