"""The operator's errors, by what should happen next: retry later, or wait for a new spec.

The API module (cluster.py) turns `wasmlet.kube` errors into these; kopf handlers turn these
into `kopf.TemporaryError` / `kopf.PermanentError`; the reconcile queue retries the first kind
with backoff and drops the second. Raw client exceptions never get past cluster.py.
"""

from __future__ import annotations

import kopf

from wasmlet.kube.errors import ApiError, Invalid

DEFAULT_RETRY_SECONDS = 5.0


class OperatorError(Exception):
    """Base of the operator's errors."""


class RetryableError(OperatorError):
    """Transient: the API is unreachable, an object changed under us, admission said "not yet"
    (a new namespace's ServiceAccount, a RuntimeClass being installed). Retry after `delay`."""

    def __init__(self, message: str, *, delay: float = DEFAULT_RETRY_SECONDS) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(OperatorError):
    """Retrying the same request cannot help (the API rejected the object as invalid); the next
    change of the workload tries again."""


def from_api_error(exc: ApiError, action: str, *, delay: float = DEFAULT_RETRY_SECONDS) -> OperatorError:
    """Classify an API failure of `action` (e.g. "create pod web-x7k2p"); retry after `delay`."""
    message = f"{action}: {exc.message or exc.reason}"
    if isinstance(exc, Invalid):
        return PermanentError(message)
    # Everything else may pass later. Note 403: real API servers answer it both for RBAC and
    # for admission that will pass soon (a new namespace's default ServiceAccount, a
    # RuntimeClass being installed); 404 on a write: the namespace is being (re)created.
    return RetryableError(message, delay=delay)


def to_kopf(exc: OperatorError) -> kopf.TemporaryError | kopf.PermanentError:
    """The kopf exception that makes kopf retry (or not) a change handler."""
    if isinstance(exc, RetryableError):
        return kopf.TemporaryError(str(exc), delay=exc.delay)
    return kopf.PermanentError(str(exc))
