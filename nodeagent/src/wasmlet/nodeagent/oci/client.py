"""A registry client on aiohttp: the distribution API with its auth challenge flow.

A request goes out with whatever authorization this registry and repository last needed; on
`401` the `WWW-Authenticate` challenge decides: `Basic` → the credentials, `Bearer realm=…,
service=…,scope=…` → a token from the realm (fetched with the credentials as basic auth when
there are any, anonymously otherwise), then the request is retried once. Tokens are kept
until shortly before they expire. Plain HTTP is used only for insecure registries (those
configured, and loopback — see docs/decisions.md), after HTTPS failed its TLS handshake.
Every failure becomes a `PullError` whose message says what failed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.auth import Credentials, parse_challenge

TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=15, sock_read=60)
# Tokens without `expires_in` live 60 s (the distribution token spec's default).
DEFAULT_TOKEN_SECONDS = 60
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass
class RegistryState:
    """What outlives one pull: tokens and each registry's scheme. One per agent."""

    insecure: tuple[str, ...] = ()
    tokens: dict[tuple[str, str, str], tuple[str, float]] = field(default_factory=dict)
    schemes: dict[str, str] = field(default_factory=dict)
    # The Authorization a repository last needed, so the next pull skips the 401 round trip.
    authorizations: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def is_insecure(self, registry: str) -> bool:
        """Plain HTTP allowed: configured as insecure, or a loopback address (Docker's and containerd's default)."""
        if registry in self.insecure:
            return True
        host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
        host = host.strip("[]")
        if host in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


class RegistryClient:
    """Requests to one registry repository, authenticated as its challenges ask."""

    def __init__(self, session: aiohttp.ClientSession, state: RegistryState, registry: str, api_host: str,
                 repository: str, credentials: Credentials | None, actions: str = "pull") -> None:
        self._session = session
        self._state = state
        self._registry = registry
        self._host = api_host
        self._repository = repository
        self._credentials = credentials
        self._actions = actions
        self._key = (registry, repository, credentials.username if credentials else "")
        self._authorization = state.authorizations.get(self._key)

    @property
    def origin(self) -> str:
        """Where a download through this client comes from and as whom: registry, repository and a
        fingerprint of the credentials. Two pulls share a download only with the same origin, so
        a Pod naming a hostile registry, or a repository it may not read, cannot fail another's."""
        login = hashlib.sha256(self._credentials.basic().encode()).hexdigest()[:16] if self._credentials else "-"
        return f"{self._registry}/{self._repository}#{login}"

    @asynccontextmanager
    async def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                      **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """`method /v2/<repository>/<path>` (or an absolute URL), authenticated; raises PullError on 401/403."""
        for attempt in (1, 2):
            response = await self._send(method, path, headers, **kwargs)
            if response.status == 401 and attempt == 1:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                self._authorization = await self._authorize(challenge)
                self._state.authorizations[self._key] = self._authorization
                continue
            try:
                if response.status in (401, 403):
                    who = f"as {self._credentials.username!r}" if self._credentials else "anonymously"
                    raise PullError(f"unauthorized: {self._registry} refused {self._repository} {who} "
                                    f"(HTTP {response.status}{_error_text(await _errors(response))})")
                yield response
            finally:
                response.release()
            return

    async def _send(self, method: str, path: str, headers: Mapping[str, str] | None,
                    **kwargs: Any) -> aiohttp.ClientResponse:
        all_headers = dict(headers or {})
        if self._authorization:
            all_headers["Authorization"] = self._authorization
        scheme = self._state.schemes.get(self._registry, "https")
        while True:
            url = path if "://" in path else f"{scheme}://{self._host}/v2/{self._repository}/{path}"
            ssl = not self._state.is_insecure(self._registry)
            try:
                return await self._session.request(method, url, headers=all_headers, ssl=ssl, **kwargs)
            except aiohttp.ClientSSLError as exc:
                if scheme == "https" and self._state.is_insecure(self._registry) and "://" not in path:
                    scheme = self._state.schemes[self._registry] = "http"
                    continue
                raise PullError(f"registry unreachable: {self._registry}: TLS failed ({exc})") from exc
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise PullError(f"registry unreachable: {self._registry}: "
                                f"{exc.__class__.__name__}: {exc or 'timed out'}") from exc

    async def _authorize(self, header: str) -> str:
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise PullError(f"unauthorized: {self._registry} requires credentials for {self._repository} "
                                "and no imagePullSecret matches it")
            return self._credentials.basic()
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise PullError(f"unauthorized: {self._registry} asks for unsupported authentication {header!r}")
        scope = challenge.params.get("scope") or f"repository:{self._repository}:{self._actions}"
        return f"Bearer {await self._token(challenge.params['realm'], challenge.params.get('service', ''), scope)}"

    async def _token(self, realm: str, service: str, scope: str) -> str:
        key = (realm, scope, self._credentials.username if self._credentials else "")
        cached = self._state.tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        params = {"scope": scope, **({"service": service} if service else {})}
        try:
            async with self._session.get(realm, params=params, headers=headers) as response:
                if response.status in (401, 403):
                    raise PullError(f"unauthorized: the token service {realm} refused "
                                    f"{'the credentials' if self._credentials else 'an anonymous token'} "
                                    f"for {scope} (HTTP {response.status})")
                if response.status != 200:
                    raise PullError(f"registry error: the token service {realm} answered HTTP {response.status}")
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise PullError(f"registry unreachable: token service {realm}: {exc.__class__.__name__}: {exc}") from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PullError(f"unauthorized: the token service {realm} returned no token")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else DEFAULT_TOKEN_SECONDS
        self._state.tokens[key] = (token, time.monotonic() + max(seconds - 5, 1))
        return token


async def _errors(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """The distribution API's error list (`{"errors": [{"code", "message"}]}`), if the body has one."""
    try:
        body = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError):
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_text(errors: list[dict[str, Any]]) -> str:
    return "".join(f", {e.get('code', '')}: {e.get('message', '')}" for e in errors[:3])


async def error_detail(response: aiohttp.ClientResponse) -> str:
    """`HTTP 404, MANIFEST_UNKNOWN: manifest unknown` for a failed response."""
    return f"HTTP {response.status}{_error_text(await _errors(response))}"
