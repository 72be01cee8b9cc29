"""Who may use the kubelet API (everything but `/healthz`), as the kubelet decides it:

- a client certificate signed by the client CA — how the API server proxies `kubectl logs`
  (kube-apiserver's `--kubelet-client-certificate`); verified by TLS itself. The client CA is
  `client_ca_file`, else the cluster CA the agent's own credentials trust (in a cluster the
  service account's `ca.crt`, from a kubeconfig its certificate authority): kubeadm signs the
  API server's kubelet-client certificate with that CA and points the kubelet's
  `clientCAFile` at it, so `kubectl logs` works without further setup;
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
from pathlib import Path
from typing import Any

from aiohttp import web

from wasmlet.kube import ApiError, KubeClient
from wasmlet.kube.config import ConfigError
from wasmlet.kube.resources import TOKEN_REVIEWS

log = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 120.0
CACHE_MAX_ENTRIES = 1024
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_ca_for(client_ca_file: Path | None, api: KubeClient | None) -> Path | bytes | None:
    """The CA that verifies callers' client certificates: the configured file, else the cluster CA."""
    if client_ca_file is not None:
        return client_ca_file
    if api is None or not api.config.server.startswith("https://"):
        return None
    try:
        return api.config.ca_pem()
    except ConfigError as exc:
        log.warning("kubelet API: cannot read the cluster CA to verify client certificates: %s", exc)
        return None


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
            return await handler(request)  # TLS verified it against the client CA
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token and reviewer is not None and await reviewer.user(token.strip()):
            return await handler(request)
        raise web.HTTPUnauthorized(text="Unauthorized")

    return authenticate
