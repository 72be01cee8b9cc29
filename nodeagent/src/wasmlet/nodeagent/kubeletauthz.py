"""What an authenticated caller may do on the kubelet API, decided as the kubelet decides it.

The kubelet maps each request to attributes on its own Node object (`nodeAuthorizerAttributesGetter`
in its `server/auth.go`) and asks the API server with a SubjectAccessReview:

- verb from the HTTP method (GET → get, POST → create, PUT → update, PATCH → patch, DELETE → delete);
- resource `nodes`, name the node's, subresource by path: `/stats/*` → stats, `/metrics/*` →
  metrics, `/logs/*` → log, `/pods` → pods then proxy, `/healthz` → healthz then proxy,
  anything else (`/containerLogs/...` included) → proxy;
- the request passes when any of those subresources is allowed, in order.

Answers are cached as the kubelet's webhook authorizer caches them (`cacheAuthorizedTTL` 5 min,
`cacheUnauthorizedTTL` 30 s); a review that fails is not cached and the request gets a 500.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from wasmlet.kube import ApiError, KubeClient
from wasmlet.kube.resources import SUBJECT_ACCESS_REVIEWS

log = logging.getLogger(__name__)

AUTHORIZED_TTL_SECONDS = 300.0
UNAUTHORIZED_TTL_SECONDS = 30.0
CACHE_MAX_ENTRIES = 1024
# Every authenticated caller is in this group: the kubelet's authenticator adds it, as kube-apiserver's does.
AUTHENTICATED_GROUP = "system:authenticated"
VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Subresources checked before the path's own, behind the kubelet's KubeletFineGrainedAuthz (GA in 1.36).
FINE_GRAINED = (("/pods", "pods"), ("/healthz", "healthz"), ("/configz", "configz"), ("/runningpods", "pods"))
COARSE = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/checkpoint", "checkpoint"))


@dataclass(frozen=True)
class Caller:
    """Who made a request: what a TokenReview or a client certificate says about the user."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if AUTHENTICATED_GROUP not in self.groups:
            object.__setattr__(self, "groups", (*self.groups, AUTHENTICATED_GROUP))


class AuthorizationError(Exception):
    """The API server could not answer a SubjectAccessReview."""


def is_subpath(path: str, prefix: str) -> bool:
    """The kubelet's `isSubpath`: the path itself or anything below it."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def subresources_for(path: str) -> list[str]:
    """The `nodes/<subresource>` names a request path needs (any one of them suffices)."""
    found = [sub for prefix, sub in FINE_GRAINED if is_subpath(path, prefix)][:1]
    coarse = [sub for prefix, sub in COARSE if is_subpath(path, prefix)][:1]
    return found + (coarse or ["proxy"])


def forbidden_message(caller: Caller, verb: str, subresources: list[str]) -> str:
    """The kubelet's wording of a 403 (Go's `%v` of a string slice: `[pods proxy]`)."""
    return f"Forbidden (user={caller.username}, verb={verb}, resource=nodes, subresource(s)=[{' '.join(subresources)}])\n"


class AccessReviewer:
    """Asks the API server whether a caller may use a `nodes/<subresource>` of this node."""

    def __init__(self, api: KubeClient, node_name: str) -> None:
        self._api = api
        self._node_name = node_name
        self._cache: dict[str, tuple[float, bool]] = {}

    async def allowed(self, caller: Caller, verb: str, subresource: str) -> bool:
        """Raises AuthorizationError when the API server does not answer."""
        spec = {
            "user": caller.username, "uid": caller.uid, "groups": list(caller.groups), "extra": caller.extra,
            "resourceAttributes": {"namespace": "", "verb": verb, "group": "", "version": "v1",
                                   "resource": "nodes", "subresource": subresource, "name": self._node_name},
        }
        key = json.dumps(spec, sort_keys=True)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        try:
            answer = await self._api.create(SUBJECT_ACCESS_REVIEWS, review)
        except ApiError as exc:
            log.warning("SubjectAccessReview for %s failed: %s", caller.username, exc)
            raise AuthorizationError(str(exc)) from exc
        allowed = bool((answer.get("status") or {}).get("allowed"))
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        ttl = AUTHORIZED_TTL_SECONDS if allowed else UNAUTHORIZED_TTL_SECONDS
        self._cache[key] = (time.monotonic() + ttl, allowed)
        return allowed
