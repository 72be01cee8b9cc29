"""KubeClient: the dozen API verbs wasmlet uses, over one aiohttp session.

Every method either returns the decoded JSON body or raises an `ApiError` subclass; connection
failures, timeouts and credentials that cannot be fetched right now (an exec plugin failing)
become `ApiUnavailable` so callers retry them with backoff. A 401 is retried once with fresh
credentials when they can change (exec plugin, auth-provider, token file), as client-go does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from wasmlet.kube.config import ClusterConfig
from wasmlet.kube.credentials import Credentials, Login
from wasmlet.kube.errors import ApiError, ApiUnavailable, Gone, error_from_status
from wasmlet.kube.kubeconfig import ConfigError
from wasmlet.kube.resources import Resource

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Obj = dict[str, Any]
RequestHook = Callable[[str, str, str], None]  # (verb, resource[/subresource], code) of each request sent


class KubeClient:
    """An asyncio API client. Use as `async with KubeClient(config) as api:`.

    `credentials` lets several clients of one process share one credential (one exec plugin run).
    """

    def __init__(self, config: ClusterConfig, *, user_agent: str = "wasmlet", timeout: float = 30.0,
                 max_connections: int = 32, credentials: Credentials | None = None,
                 on_request: RequestHook | None = None) -> None:
        self.config = config
        self.credentials = credentials or Credentials(config)
        self._on_request = on_request
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        self._session = aiohttp.ClientSession(
            base_url=self.config.server,
            # TLS is chosen per request: an exec plugin may hand out a new client certificate.
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- verbs -------------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        return await self.request("GET", resource.path(namespace, name, subresource))

    async def list(self, resource: Resource, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None) -> Obj:
        params = _selectors(label_selector, field_selector)
        return await self.request("GET", resource.path(namespace), params=params)

    async def create(self, resource: Resource, body: Obj, namespace: str | None = None,
                     subresource_of: str | None = None, subresource: str | None = None) -> Obj:
        ns = namespace or body.get("metadata", {}).get("namespace")
        path = resource.path(ns, subresource_of, subresource) if subresource_of else resource.path(ns)
        return await self.request("POST", path, json_body=body)

    async def replace(self, resource: Resource, body: Obj, namespace: str | None = None,
                      subresource: str | None = None) -> Obj:
        meta = body.get("metadata", {})
        path = resource.path(namespace or meta.get("namespace"), meta["name"], subresource)
        return await self.request("PUT", path, json_body=body)

    async def patch(self, resource: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    subresource: str | None = None, content_type: str = MERGE_PATCH) -> Obj:
        return await self.request("PATCH", resource.path(namespace, name, subresource),
                                  json_body=patch, content_type=content_type)

    async def delete(self, resource: Resource, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, uid: str | None = None,
                     propagation_policy: str | None = None) -> Obj:
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        return await self.request("DELETE", resource.path(namespace, name), json_body=options)

    async def watch(self, resource: Resource, namespace: str | None = None, *,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[Obj]:
        """Yield watch events until the server closes the stream; raise Gone on 410 Expired."""
        params = _selectors(label_selector, field_selector)
        params.update(watch="true", timeoutSeconds=str(timeout_seconds))
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        session = self._require_session()
        # The server ends the stream after timeoutSeconds; the client allows a margin beyond it.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        try:
            async with await self._send(session, "GET", resource.path(namespace), params=params,
                                        timeout=timeout) as response:
                self._count("WATCH", resource.path(namespace), response.status)
                if response.status >= 400:
                    raise error_from_status(response.status, await _json_or_text(response))
                async for event in _json_lines(response):
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise error_from_status(int(status.get("code") or 500), status)
                    yield event
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
            raise ApiUnavailable(0, "WatchBroken", f"watch {resource.plural}: {exc!r}") from exc
        except ConfigError as exc:
            raise ApiUnavailable(0, "CredentialsUnavailable", f"watch {resource.plural}: {exc}") from exc

    # -- plumbing ----------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json_body: Any = None, content_type: str = "application/json") -> Obj:
        """Send one request; return the JSON body or raise the ApiError for the failure."""
        session = self._require_session()
        headers: dict[str, str] = {}
        data = None
        if json_body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(json_body, separators=(",", ":"))
        try:
            async with await self._send(session, method, path, params=params, data=data, headers=headers,
                                        timeout=self._timeout) as response:
                self._count(method, path, response.status)
                body = await _json_or_text(response)
                if response.status >= 400:
                    raise error_from_status(response.status, body)
                return body if isinstance(body, dict) else {}
        except ApiError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiUnavailable(0, "Unreachable", f"{method} {path}: {exc!r}") from exc
        except ConfigError as exc:
            raise ApiUnavailable(0, "CredentialsUnavailable", f"{method} {path}: {exc}") from exc

    def _count(self, method: str, path: str, code: int) -> None:
        if self._on_request is not None:
            verb, resource = verb_and_resource(method, path)
            self._on_request(verb, resource, str(code))

    async def get_text(self, path: str, *, params: Mapping[str, str] | None = None) -> tuple[int, str]:
        """GET a body that is not JSON (`pods/NAME/log`): the HTTP status and the text, errors included."""
        session = self._require_session()
        try:
            async with await self._send(session, "GET", path, params=params, timeout=self._timeout) as response:
                return response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiUnavailable(0, "Unreachable", f"GET {path}: {exc!r}") from exc
        except ConfigError as exc:
            raise ApiUnavailable(0, "CredentialsUnavailable", f"GET {path}: {exc}") from exc

    async def _send(self, session: aiohttp.ClientSession, method: str, path: str, *,
                    headers: Mapping[str, str] | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        """One request with the current credentials; on 401 once more with fresh ones, if they can change."""
        login = await self.credentials.login()
        response = await self._attempt(session, login, method, path, headers, kwargs)
        if response.status == 401 and self.credentials.refreshable:
            response.release()
            login = await self.credentials.refresh(login)
            response = await self._attempt(session, login, method, path, headers, kwargs)
        return response

    async def _attempt(self, session: aiohttp.ClientSession, login: Login, method: str, path: str,
                       headers: Mapping[str, str] | None, kwargs: dict[str, Any]) -> aiohttp.ClientResponse:
        return await session.request(method, path, headers={**(headers or {}), **self.credentials.headers(login)},
                                     ssl=self.credentials.ssl_context(login), proxy=self.config.proxy_url,
                                     **kwargs)

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient used outside `async with`")
        return self._session


def verb_and_resource(method: str, path: str) -> tuple[str, str]:
    """A request as kube-apiserver's `apiserver_request_total` labels it: (verb, resource[/subresource]);
    a GET is GET with a name, LIST without (a watch is counted as WATCH by its caller)."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]  # after /api/v1 or /apis/group/version
    if len(rest) >= 3 and rest[0] == "namespaces":  # namespaced, not a Namespace itself
        rest = rest[2:]
    resource = rest[0] if rest else ""
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    verb = method.upper()
    if verb == "GET":
        verb = "GET" if len(rest) >= 2 else "LIST"
    return verb, resource


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


async def _json_lines(response: aiohttp.ClientResponse) -> AsyncIterator[Obj]:
    """Split a watch stream into events; a line may exceed aiohttp's readline limit, so buffer here."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


async def _json_or_text(response: aiohttp.ClientResponse) -> Any:
    """The decoded JSON body, or the raw text when it is not JSON (e.g. `404 page not found`)."""
    raw = await response.read()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode(errors="replace")


__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "Gone", "KubeClient"]
