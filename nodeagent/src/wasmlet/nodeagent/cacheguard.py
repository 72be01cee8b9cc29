"""CacheGuard: how far the Pod source trusts an API endpoint that is a cache (KubeEdge MetaServer).

MetaServer answers reads from edgecore's local store whenever the cloud is away or refuses,
always with 200: a LIST of Pods is empty offline, a GET returns the last copy it kept (also when
the cloud answers 403 because the Pod no longer exists), and on reconnect its watch replays the
whole store as ADDED, stale copies of long-deleted Pods included. A Pod force-deleted while the
edge was away may stay in that store for good (edgecore drops the delete message it gets on
reconnect: "Object 'Kind' is missing"). Only writes always go to the cloud. So, on a MetaServer:

- a Pod stops on a DELETED event or a deletionTimestamp, as everywhere;
- a Pod missing from a LIST is not stopped: it is confirmed once the link is up (`CloudLink`);
- every running Pod is confirmed after each reconnect, since the cache may hold a deleted one;
- confirming is a write, an empty merge patch of the Pod's status with its UID as precondition:
  404 (or another UID under that name) is the cloud saying the Pod is gone, and it stops; 200
  returns the cloud's current Pod; 500 means the link is down again, and it is asked later;
- an object older than the copy the agent already has (same UID, lower resourceVersion), or a
  Pod the agent saw deleted (kept in the local store), is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wasmlet.kube import ApiError, ApiUnavailable, Conflict, Invalid, KubeClient, NotFound
from wasmlet.kube.resources import PODS
from wasmlet.nodeagent.link import CloudLink
from wasmlet.nodeagent.pods import PodController
from wasmlet.nodeagent.podstore import PodStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Between two rounds of confirmations that could not be answered, while the link is up.
CONFIRM_INTERVAL = 5.0


def resource_version(obj: Obj) -> int | None:
    """The object's resourceVersion as a number (etcd's revision), or None if it is not one."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


class CacheGuard:
    """Decides which of a cache's answers may change what the node runs."""

    def __init__(self, api: KubeClient, store: PodStore, controller: PodController, link: CloudLink) -> None:
        self._api = api
        self._store = store
        self._controller = controller
        self._link = link
        self._versions: dict[str, int] = {}  # uid → newest resourceVersion seen
        self._unconfirmed: dict[str, Obj] = {}  # uid → a Pod a LIST left out, still running
        for pod in store.pods("api"):
            self.seen(pod)
        self._wake = asyncio.Event()
        link.on_reconnect(self._reconnected)

    def stale(self, pod: Obj) -> bool:
        """A copy older than one already seen, or of a Pod already deleted: not to act on."""
        uid = pod["metadata"]["uid"]
        if self._store.is_gone(uid):
            return True
        version, known = resource_version(pod), self._versions.get(uid)
        return version is not None and known is not None and version < known

    def seen(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        version = resource_version(pod)
        if version is not None and version > self._versions.get(uid, -1):
            self._versions[uid] = version
        self._unconfirmed.pop(uid, None)

    def deleted(self, uid: str) -> None:
        """The API said the Pod is gone: remember it against later replays, and stop it."""
        self._store.mark_gone(uid)
        self._versions.pop(uid, None)
        self._unconfirmed.pop(uid, None)
        self._controller.remove(uid)

    def omitted(self, pods: list[Obj], why: str = "missing from the list") -> None:
        """These running Pods are in doubt (a LIST left them out, or the cache may have missed their
        deletion): they keep running until the cloud answers for them."""
        for pod in pods:
            self._unconfirmed[pod["metadata"]["uid"]] = pod
        if pods:
            log.info("%d pod(s) to confirm with the API (%s): %s", len(pods), why,
                     ", ".join(f"{p['metadata'].get('namespace')}/{p['metadata']['name']}" for p in pods))
            self._wake.set()

    def _reconnected(self) -> None:
        self.omitted(self._controller.desired("api"), why="the link is back")

    async def run(self) -> None:
        """Confirm the Pods in doubt whenever the link is up, until cancelled; once at the start,
        as after a reconnect (the agent may have been restarted while the cloud was away)."""
        await self._link.up.wait()
        if not self._unconfirmed:  # unless the first success was already a reconnect
            self._reconnected()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._link.up.wait()
            for uid, pod in list(self._unconfirmed.items()):
                await self._confirm(uid, pod)
            if self._unconfirmed:
                await asyncio.sleep(CONFIRM_INTERVAL)
                self._wake.set()

    async def _confirm(self, uid: str, pod: Obj) -> None:
        meta = pod["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        try:
            current: Obj | None = await self._api.patch(PODS, name, {"metadata": {"uid": uid}}, namespace,
                                                        subresource="status")
        except (NotFound, Conflict, Invalid):
            current = None  # no Pod of that name, or a new one (another UID): ours is gone
        except ApiUnavailable as exc:
            log.debug("pod %s/%s not confirmed yet: %s", namespace, name, exc)
            return
        except ApiError as exc:
            log.warning("cannot confirm pod %s/%s: %s; it keeps running", namespace, name, exc)
            self._unconfirmed.pop(uid, None)
            return
        if uid not in self._unconfirmed:
            return  # an event settled it meanwhile
        if current is None:
            log.info("pod %s/%s is gone from the API: stopping it", namespace, name)
            self.deleted(uid)
        elif not self.stale(current):
            self.seen(current)
            self._controller.sync(current)
        else:
            self._unconfirmed.pop(uid, None)
