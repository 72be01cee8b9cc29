"""kopf handlers: thin adapters from kopf's events to the operator's services. No decisions here.

`build_registry()` registers every handler on a fresh kopf registry (no import-time
registration on kopf's global one), and `kopf_settings()` translates OperatorSettings.
"""

from __future__ import annotations

import logging

import kopf

from wasmlet.operator.handlers import lifecycle, workloads
from wasmlet.operator.settings import OperatorSettings

# kopf's bookkeeping annotations (last-handled-configuration, retry progress) would live under our
# domain rather than kopf.zalando.org. The operator registers no change handler, daemon or timer,
# so kopf writes none today; the prefix keeps it so if one is ever added.
ANNOTATION_PREFIX = "operator.wasmlet.dev"
PEERING_LIFETIME_SECONDS = 30  # a crashed active replica is replaced this fast (kopf's default: 60)


def build_registry() -> kopf.OperatorRegistry:
    """A registry holding the operator's handlers."""
    registry = kopf.OperatorRegistry()
    lifecycle.register(registry)
    workloads.register(registry)
    return registry


def kopf_settings(settings: OperatorSettings, *, priority: int = 0) -> kopf.OperatorSettings:
    """kopf's settings for our operator (`priority`: this replica's peering priority)."""
    config = kopf.OperatorSettings()
    # Annotations only: the default (kopf's "smart" storage) also writes status.kopf, which our
    # structural schema prunes, so every retry would look like a failed patch.
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    config.posting.reporting_component = "wasmlet-operator"
    config.posting.level = logging.WARNING  # kopf posts only its warnings and errors as Events
    # One active replica: kopf pauses while a live peer has a higher (or the same) priority, and
    # wasmlet.operator.peering holds the reconcile queue by the same rule. Mandatory: without the
    # peering object nobody could tell a second replica apart, so a replica waits rather than fight.
    config.peering.standalone = settings.standalone
    config.peering.mandatory = not settings.standalone
    config.peering.name = settings.peering_name
    config.peering.priority = priority
    config.peering.lifetime = PEERING_LIFETIME_SECONDS
    config.peering.clusterwide = settings.clusterwide
    config.watching.server_timeout = settings.watch_timeout_seconds
    config.watching.client_timeout = settings.watch_timeout_seconds + 30  # the server closes first
    config.watching.connect_timeout = 10
    config.watching.reconnect_backoff = 1.0  # a broken watch is retried after a second, not in a tight loop
    config.networking.request_timeout = 60
    config.networking.error_backoffs = (1, 2, 5, 10, 30)  # kopf's API retries on 429/5xx
    config.execution.default_backoff = settings.retry_seconds  # delay after an unexpected exception
    return config


__all__ = ["ANNOTATION_PREFIX", "build_registry", "kopf_settings"]
