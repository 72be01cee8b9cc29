"""API errors by behaviour: what a caller should do, not which HTTP library failed."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API server answered with a failure Status (or could not be reached)."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409 on a stale resourceVersion or a failed precondition: re-read and try again."""


class AlreadyExists(Conflict):
    """409 AlreadyExists on create."""


class Forbidden(ApiError):
    """403: RBAC, or admission (a missing RuntimeClass, a namespace without its ServiceAccount)."""


class Invalid(ApiError):
    """422: the object failed validation; retrying the same request cannot help."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; relist."""


class UnsupportedMediaType(ApiError):
    """415: e.g. a strategic merge patch sent to a custom resource."""


class ApiUnavailable(ApiError):
    """The API could not be reached, timed out, or answered 429/5xx: retry with backoff."""


_BY_STATUS: dict[int, type[ApiError]] = {
    404: NotFound,
    403: Forbidden,
    410: Gone,
    415: UnsupportedMediaType,
    422: Invalid,
}


def error_from_status(status: int, body: dict[str, Any] | None) -> ApiError:
    """Build the error for an HTTP status and the API's Status body (if it sent one)."""
    body = body if isinstance(body, dict) else {}
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")
    if status == 409:
        cls: type[ApiError] = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status == 429 or status >= 500:
        cls = ApiUnavailable
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason or cls.__name__, message or f"HTTP {status}", body)
