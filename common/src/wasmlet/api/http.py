"""HTTP handlers: a container whose module answers requests, one instance per request (docs/http.md).

A Pod makes its container `c` a handler with the annotation `wasmlet.dev/http.c`, a JSON object:

    {"port": 8080, "path": "/", "maxConcurrency": 32, "requestTimeoutSeconds": 10,
     "maxBodyBytes": 1048576}

`port` must be one of the container's `ports[].containerPort` (TCP); the agent serves it on the
node's IP. Requests outside `path` get 404; past `maxConcurrency` instances in flight a request
waits for a place, for at most its timeout; a request body over `maxBodyBytes` gets 413. The
operator writes the annotation from a WasmWorkload's `spec.http`; anyone may write it by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_PATH = "/"
DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # nginx's client_max_body_size default

MAX_CONCURRENCY = 10_000
MAX_REQUEST_TIMEOUT_SECONDS = 3600
MAX_BODY_BYTES = 64 * 1024 * 1024
FIELDS = ("port", "path", "maxConcurrency", "requestTimeoutSeconds", "maxBodyBytes")


class InvalidHandler(ValueError):
    """The handler settings cannot be used; `field` names the one at fault (`maxConcurrency`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class HttpHandler:
    """How one container serves HTTP."""

    port: int
    path: str = DEFAULT_PATH
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    request_timeout_seconds: int = DEFAULT_REQUEST_TIMEOUT_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "path": self.path, "maxConcurrency": self.max_concurrency,
                "requestTimeoutSeconds": self.request_timeout_seconds, "maxBodyBytes": self.max_body_bytes}

    def annotation_value(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    def serves(self, path: str) -> bool:
        """Whether a request for `path` is this handler's (a prefix match on whole segments)."""
        prefix = self.path.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")


def parse_handler(settings: Any) -> HttpHandler:
    """Parse a handler's settings (a mapping, or the annotation's JSON text); raise InvalidHandler."""
    if isinstance(settings, str):
        try:
            settings = json.loads(settings)
        except ValueError as exc:
            raise InvalidHandler("annotation", f"is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise InvalidHandler("annotation", "must be a JSON object")
    unknown = sorted(set(settings) - set(FIELDS))
    if len(unknown) > 1:  # every typo at once, not one per attempt
        raise InvalidHandler(unknown[0], f"unknown field, and {', '.join(unknown[1:])} (known: {', '.join(FIELDS)})")
    if unknown:
        raise InvalidHandler(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    path = settings.get("path", DEFAULT_PATH)
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidHandler("path", "must be a string starting with /")
    return HttpHandler(
        port=_integer(settings, "port", None, 1, 65535),
        path=path,
        max_concurrency=_integer(settings, "maxConcurrency", DEFAULT_MAX_CONCURRENCY, 1, MAX_CONCURRENCY),
        request_timeout_seconds=_integer(settings, "requestTimeoutSeconds", DEFAULT_REQUEST_TIMEOUT_SECONDS, 1,
                                         MAX_REQUEST_TIMEOUT_SECONDS),
        max_body_bytes=_integer(settings, "maxBodyBytes", DEFAULT_MAX_BODY_BYTES, 0, MAX_BODY_BYTES),
    )


def _integer(settings: dict[str, Any], field: str, default: int | None, low: int, high: int) -> int:
    value = settings.get(field, default)
    if value is None:
        raise InvalidHandler(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidHandler(field, f"must be an integer, not {value!r}")
    if not low <= value <= high:
        raise InvalidHandler(field, f"must be between {low} and {high}, not {value}")
    return value
