"""Login, startup and cleanup: where the operator's services are built and torn down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from wasmlet.kube import KubeClient
from wasmlet.operator.cluster import Cluster
from wasmlet.operator.memo import OperatorMemo, Services
from wasmlet.operator.queue import ReconcileQueue
from wasmlet.operator.reconciler import Reconciler

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
    """Open the API client and start the reconcile queue before kopf starts watching."""
    settings = memo.settings
    resources = contextlib.AsyncExitStack()
    api = await resources.enter_async_context(KubeClient(memo.cluster_config, user_agent="wasmlet-operator"))
    reconciler = Reconciler(Cluster(api, namespace=settings.namespace, retry_seconds=settings.retry_seconds))
    queue = ReconcileQueue(reconciler.reconcile, resync_seconds=settings.resync_seconds,
                           retry_seconds=settings.retry_seconds)
    task = asyncio.create_task(queue.run(), name="wasmlet reconcile queue")
    memo.services = Services(queue=queue, queue_task=task, resources=resources)
    log.info("wasmlet operator started (%s)", f"namespace {settings.namespace}" if settings.namespace
             else "cluster-wide")


async def cleanup(memo: OperatorMemo, **_: Any) -> None:
    """Stop the queue (cancelling reconciles in flight) and close the API client."""
    services, memo.services = memo.services, None
    if services is None:
        return
    services.queue_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await services.queue_task
    await services.resources.aclose()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register login, startup and cleanup on `registry`."""
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
