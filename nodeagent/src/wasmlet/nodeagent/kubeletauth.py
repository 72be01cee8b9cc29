"""Who may use the kubelet API (everything but `/healthz`), as the kubelet decides it:

- a client certificate signed by `client_ca_file` — how the API server proxies `kubectl logs`
  (kube-apiserver's `--kubelet-client-certificate`); verified by TLS itself;
- a bearer token the API server vouches for (a TokenReview), cached for two minutes like the
  kubelet's `authentication.webhook.cacheTTL`;
- nobody else: 401. `kubelet_api_auth: none` turns this off, explicitly, for standalone use.

Authorization beyond authentication (the kubelet's SubjectAccessReview on `nodes/log`) is not
done: an authenticated caller may read every endpoint (see docs/decisions.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from wasmlet.kube import ApiError, KubeClient
from wasmlet.kube.resources import TOKEN_REVIEWS

log = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 120.0
CACHE_MAX_ENTRIES = 1024
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenReviewer:
    """Asks the API server whether a bearer token is valid; remembers answers for a while."""

    def __init__(self, api: KubeClient) -> None:
        self._api = api
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def user(self, token: str) -> str | None:
        key = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            answer = await self._api.create(TOKEN_REVIEWS, review)
        except ApiError as exc:
            log.warning("TokenReview failed: %s", exc)
            return None  # not cached: the next request asks again
        status = answer.get("status") or {}
        user = (status.get("user") or {}).get("username") if status.get("authenticated") else None
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + CACHE_TTL_SECONDS, user)
        return user


def auth_middleware(reviewer: TokenReviewer | None) -> Any:
    """An aiohttp middleware that lets through authenticated requests only."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if request.transport is not None and request.transport.get_extra_info("peercert"):
            return await handler(request)  # TLS verified it against client_ca_file
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token and reviewer is not None and await reviewer.user(token.strip()):
            return await handler(request)
        raise web.HTTPUnauthorized(text="Unauthorized")

    return authenticate
