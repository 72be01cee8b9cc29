"""API errors by behaviour: what a caller should do, not which HTTP library failed."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API server answered with a failure (a Status, or another body), or could not be reached.

    `body` is the Status object when the server sent one, else empty: kube-apiserver answers a
    path no API group serves (an uninstalled CRD's resources) with plain text `404 page not
    found`, and proxies in front of it send their own pages.
    """

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


# The longest part of a non-Status error body kept as the message (an HTML page can be long).
MAX_TEXT_MESSAGE = 200


def error_from_status(status: int, body: Any) -> ApiError:
    """Build the error for an HTTP status and the body that came with it.

    A Status body gives the reason and message; any other body (text, HTML, JSON that is not a
    Status) gives only its first line as the message, and the class comes from the status alone.
    """
    if isinstance(body, str | bytes):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        body, text_message = {}, first_line[:MAX_TEXT_MESSAGE]
    else:
        body, text_message = (body if isinstance(body, dict) else {}), ""
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "") or text_message
    if status == 409:
        cls: type[ApiError] = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status == 429 or status >= 500:
        cls = ApiUnavailable
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason or cls.__name__, message or f"HTTP {status}", body)
