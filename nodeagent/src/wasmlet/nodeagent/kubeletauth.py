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

Then, as the kubelet's webhook authorizer, a SubjectAccessReview decides what the caller may do
(`kubeletauthz`): 403 with the kubelet's wording otherwise. The caller is the certificate's
subject (CN the user, O the groups, as kube-apiserver's x509 authenticator reads it) or the
TokenReview's user. Without an API server (standalone), a certificate from the client CA is
authorization enough: there is nobody to ask.
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
from wasmlet.nodeagent.kubeletauthz import (
    VERBS,
    AccessReviewer,
    AuthorizationError,
    Caller,
    forbidden_message,
    subresources_for,
)

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
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def user(self, token: str) -> Caller | None:
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
        user = _caller(status.get("user") or {}) if status.get("authenticated") else None
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + CACHE_TTL_SECONDS, user)
        return user


def _caller(info: dict[str, Any]) -> Caller | None:
    name = info.get("username")
    if not name:
        return None
    extra = {str(k): [str(v) for v in values or []] for k, values in (info.get("extra") or {}).items()}
    return Caller(str(name), str(info.get("uid") or ""), tuple(str(g) for g in info.get("groups") or ()), extra)


def certificate_caller(peercert: dict[str, Any]) -> Caller | None:
    """The user a verified client certificate names: CN is the user, each O a group."""
    attributes = [attribute for rdn in peercert.get("subject") or () for attribute in rdn]
    names = [str(value) for key, value in attributes if key == "commonName"]
    groups = tuple(str(value) for key, value in attributes if key == "organizationName")
    return Caller(names[0], groups=groups) if names else None


async def _authenticate(request: web.Request, reviewer: TokenReviewer | None) -> Caller | None:
    peercert = request.transport.get_extra_info("peercert") if request.transport is not None else None
    if peercert:
        return certificate_caller(peercert)  # TLS verified it against the client CA
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() and reviewer is not None:
        return await reviewer.user(token.strip())
    return None


async def _authorize(request: web.Request, caller: Caller, access: AccessReviewer) -> None:
    """Pass when any of the path's subresources is allowed; raise 403 (or 500) otherwise."""
    verb = VERBS.get(request.method, "")
    subresources = subresources_for(request.path)
    for subresource in subresources:
        try:
            if await access.allowed(caller, verb, subresource):
                return
        except AuthorizationError:
            raise web.HTTPInternalServerError(
                text=f"Authorization error (user={caller.username}, verb={verb}, resource=nodes, "
                     f"subresource={subresource})") from None
    log.info("kubelet API: forbidden: user %s, %s nodes/%s", caller.username, verb, ",".join(subresources))
    raise web.HTTPForbidden(text=forbidden_message(caller, verb, subresources))


def auth_middleware(reviewer: TokenReviewer | None, access: AccessReviewer | None = None) -> Any:
    """An aiohttp middleware that lets through authenticated requests the API server authorizes
    (`access`; None only without an API server, when authentication is all there is)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        caller = await _authenticate(request, reviewer)
        if caller is None:
            raise web.HTTPUnauthorized(text="Unauthorized")
        if access is not None:
            await _authorize(request, caller, access)
        return await handler(request)

    return authenticate
