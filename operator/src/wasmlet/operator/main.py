"""`wasmlet-operator`: the composition root. Settings → credentials → kopf, embedded.

    wasmlet-operator [--kubeconfig PATH] [--namespace NS] [--verbose] ...

kopf talks to the API server named by our own credentials loading (`wasmlet.kube.load_config`)
through the login handler. Replicas agree through kopf's peering that one of them is active
(`--peering-name`, a distinct priority per replica); `--standalone` skips that for one replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from wasmlet.kube import ClusterConfig, load_config
from wasmlet.kube.config import ConfigError
from wasmlet.operator.handlers import build_registry, kopf_settings
from wasmlet.operator.memo import OperatorMemo
from wasmlet.operator.settings import OperatorSettings, SettingsError, build_parser, load_settings

log = logging.getLogger("wasmlet.operator")

EXIT_USAGE = 2


EXIT_FAILED = 1
PRIORITY_RANGE = (1, 999_999_999)  # random priorities: two replicas collide (and both pause) ~1e-9 of the time


class OperatorFailed(RuntimeError):
    """The operator's services died; it stopped (the process exits 1 and Kubernetes restarts it)."""


def peering_identity() -> str:
    """This process among its peers: the Pod's name (kopf's `POD_ID` convention, else the host
    name, which is the Pod's name in a cluster) and a random suffix, so a restarted container
    never mistakes its predecessor's entry for itself."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}/{secrets.token_hex(3)}"


async def run_operator(settings: OperatorSettings, config: ClusterConfig, *,
                       stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
    """Run the operator in the current event loop until `stop_flag` is set (or a signal arrives);
    raise OperatorFailed if its services died."""
    scope: dict[str, Any] = {"clusterwide": True} if settings.clusterwide else {"namespaces": [settings.namespace]}
    priority = settings.peering_priority
    if priority is None:
        priority = random.SystemRandom().randint(*PRIORITY_RANGE)
    memo = OperatorMemo(settings=settings, cluster_config=config, identity=peering_identity(), priority=priority)
    await memo.credentials.login()  # an exec plugin that cannot run stops us here, with its error
    if stop_flag is not None:
        memo.stop_flag = stop_flag
    await kopf.operator(
        registry=build_registry(),
        settings=kopf_settings(settings, priority=priority),
        memo=memo,
        identity=memo.identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
        standalone=settings.standalone,
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=memo.stop_flag,
        ready_flag=ready_flag,
        **scope,
    )
    if memo.fatal is not None:
        raise OperatorFailed(f"the operator stopped: {memo.fatal!r}") from memo.fatal


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit code."""
    try:
        settings = load_settings(argv)
        config = load_config(settings.kubeconfig, settings.context)
    except (SettingsError, ConfigError) as exc:
        print(f"wasmlet-operator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if build_parser().parse_args(argv).check_config:
        for name, value in sorted(vars(settings).items()):
            print(f"{name}: {value}")
        print(f"api: {config.server}")
        return 0
    logging.basicConfig(
        level=logging.DEBUG if settings.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not settings.verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    log.info("API server %s (from %s)", config.server, config.source or "default")
    try:
        asyncio.run(run_operator(settings, config))
    except OperatorFailed as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"wasmlet-operator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
