"""kopf handlers: thin adapters from kopf's events to the reconcile queue. No decisions here.

`build_registry()` registers every handler on a fresh kopf registry (no import-time
registration on kopf's global one), and `kopf_settings()` translates OperatorSettings.
"""

from __future__ import annotations

import kopf

from wasmlet.operator.handlers import lifecycle, watches, workloads
from wasmlet.operator.settings import OperatorSettings

# kopf's bookkeeping annotations (last-handled-configuration, retry progress) live under our
# domain rather than kopf.zalando.org, so `kubectl get -o yaml` says whose they are.
ANNOTATION_PREFIX = "operator.wasmlet.dev"


def build_registry() -> kopf.OperatorRegistry:
    """A registry holding the operator's handlers."""
    registry = kopf.OperatorRegistry()
    lifecycle.register(registry)
    workloads.register(registry)
    watches.register(registry)
    return registry


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for our operator."""
    config = kopf.OperatorSettings()
    # Annotations only: the default (kopf's "smart" storage) also writes status.kopf, which our
    # structural schema prunes, so every retry would look like a failed patch.
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    config.posting.reporting_component = "wasmlet-operator"
    config.watching.server_timeout = settings.watch_timeout_seconds
    config.watching.client_timeout = settings.watch_timeout_seconds + 30  # the server closes first
    config.watching.connect_timeout = 10
    config.networking.request_timeout = 60
    config.execution.default_backoff = settings.retry_seconds  # delay after an unexpected exception
    return config


__all__ = ["ANNOTATION_PREFIX", "build_registry", "kopf_settings"]
