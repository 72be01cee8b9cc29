"""`wasmlet-operator`: the composition root. Settings → credentials → kopf, embedded.

    wasmlet-operator [--kubeconfig PATH] [--namespace NS] [--verbose] ...

kopf runs standalone (one active operator; no peering objects) and talks to the API server
named by our own credentials loading (`wasmlet.kube.load_config`) through the login handler.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from wasmlet.kube import ClusterConfig, load_config
from wasmlet.kube.config import ConfigError
from wasmlet.operator.handlers import build_registry, kopf_settings
from wasmlet.operator.memo import OperatorMemo
from wasmlet.operator.settings import OperatorSettings, SettingsError, load_settings

log = logging.getLogger("wasmlet.operator")

EXIT_USAGE = 2


async def run_operator(settings: OperatorSettings, config: ClusterConfig, *,
                       stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
    """Run the operator in the current event loop until `stop_flag` is set (or a signal arrives)."""
    scope: dict[str, Any] = {"clusterwide": True} if settings.clusterwide else {"namespaces": [settings.namespace]}
    await kopf.operator(
        registry=build_registry(),
        settings=kopf_settings(settings),
        memo=OperatorMemo(settings=settings, cluster_config=config),
        standalone=True,
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        **scope,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit code."""
    try:
        settings = load_settings(argv)
        config = load_config(settings.kubeconfig)
    except (SettingsError, ConfigError) as exc:
        print(f"wasmlet-operator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if settings.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not settings.verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    log.info("API server %s (from %s)", config.server, config.source or "default")
    asyncio.run(run_operator(settings, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
