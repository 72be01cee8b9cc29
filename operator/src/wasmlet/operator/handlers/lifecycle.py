"""Login, startup, cleanup and the liveness probe: where the operator's services live."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from wasmlet.operator.memo import OperatorMemo
from wasmlet.operator.services import Services

log = logging.getLogger(__name__)


async def login(memo: OperatorMemo, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to exactly the server our ClusterConfig names (kubeconfig, in-cluster or URL).

    kopf calls this again on a 401, so a rotated (projected) token file is picked up.
    """
    config = memo.cluster_config
    return kopf.ConnectionInfo(
        server=config.server,
        ca_path=config.ca_file,
        insecure=config.insecure or None,
        token=config.bearer_token(),
        certificate_path=config.client_cert_file,
        private_key_path=config.client_key_file,
        default_namespace=config.namespace,
    )


async def startup(memo: OperatorMemo, **_: Any) -> None:
    """Start the services before kopf starts watching (kopf runs startup handlers first)."""
    settings = memo.settings
    memo.services = await Services.start(settings, memo.cluster_config, identity=memo.identity,
                                         priority=memo.priority, on_fatal=memo.fail)
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
