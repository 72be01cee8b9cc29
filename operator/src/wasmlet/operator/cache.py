"""In-memory views of Pods, wasm Nodes, Services and WasmWorkloads: the operator's informer cache. No I/O.

Watches fill the caches (through `wasmlet.kube.reflector`, and kopf's events for WasmWorkloads),
and the operator's own writes go in at once (write-through), so a reconcile always sees what the
previous one did, even before the watch reports it: a Pod it created is there, a Pod it deleted
is terminating. That is what keeps two reconciles in a row from creating a replica twice without
a list request per reconcile.

Ordering: an object's `resourceVersion` is opaque to clients, but every API server (etcd's
revisions) makes it an integer that grows with each write; an update older than what the cache
holds (a watch event for a write the cache already has from the write's response) is ignored.
Where a resourceVersion is not an integer, the newest arrival wins.
"""

from __future__ import annotations

import copy
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from wasmlet.api import keys
from wasmlet.operator import objects

Json = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); "" for cluster-scoped objects
TOMBSTONES = 10_000  # deleted uids remembered, so a late event cannot bring a deleted object back
LOCALLY_DELETED = "1970-01-01T00:00:00Z"  # deletionTimestamp put on a Pod we deleted, until the watch says


def newer_or_same(incoming: str | None, cached: str | None) -> bool:
    """Whether an object at resourceVersion `incoming` may replace the one at `cached`."""
    try:
        return int(incoming or "") >= int(cached or "")
    except ValueError:
        return True


def object_key(obj: Mapping[str, Any]) -> Key:
    """(namespace, name) of an object ("" namespace when cluster-scoped)."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class ObjectCache:
    """Objects of one kind by (namespace, name), the newest version of each."""

    def __init__(self) -> None:
        self._objects: dict[Key, Json] = {}
        self._tombstones: OrderedDict[str, str] = OrderedDict()  # uid → resourceVersion at deletion
        self.synced = False  # set after the first complete listing

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, namespace: str | None, name: str) -> Json | None:
        """The cached object, or None."""
        return self._objects.get((namespace or "", name))

    def values(self) -> Iterator[Json]:
        """Every cached object."""
        return iter(list(self._objects.values()))

    def upsert(self, obj: Json) -> bool:
        """Store `obj` unless the cache holds this or a newer version, or saw it deleted; return
        whether it was stored."""
        obj = self._trim(obj)
        meta = obj.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if uid and uid in self._tombstones and newer_or_same(self._tombstones[uid], version):
            return False
        key = object_key(obj)
        cached = self._objects.get(key)
        if cached is not None:
            cached_meta = cached.get("metadata") or {}
            if cached_meta.get("uid") == uid and (cached_meta.get("resourceVersion") == version
                                                  or not newer_or_same(version, cached_meta.get("resourceVersion"))):
                return False
            self._forget(key, cached)
        self._objects[key] = obj
        self._remember(key, obj)
        return True

    def delete(self, obj: Mapping[str, Any]) -> Json | None:
        """The object is gone (a DELETED event): drop it, and ignore older news of it from now on."""
        meta = obj.get("metadata") or {}
        uid = meta.get("uid")
        if uid:
            self._tombstones[uid] = str(meta.get("resourceVersion") or "")
            self._tombstones.move_to_end(uid)
            while len(self._tombstones) > TOMBSTONES:
                self._tombstones.popitem(last=False)
        key = object_key(obj)
        cached = self._objects.get(key)
        if cached is None or (uid and (cached.get("metadata") or {}).get("uid") != uid):
            return None  # a successor of the same name, or never seen
        del self._objects[key]
        self._forget(key, cached)
        return cached

    def replace(self, objects: Iterable[Json]) -> None:
        """The complete current set (a fresh listing): what is not in it is gone."""
        for key, cached in list(self._objects.items()):
            self._forget(key, cached)
        self._objects.clear()
        self._tombstones.clear()
        for obj in map(self._trim, objects):
            self._objects[object_key(obj)] = obj
            self._remember(object_key(obj), obj)
        self.synced = True

    def _trim(self, obj: Json) -> Json:
        """What is worth keeping of `obj` (never mutated: it may be shared with kopf)."""
        meta = obj.get("metadata") or {}
        if "managedFields" not in meta:
            return obj
        return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}

    def _remember(self, key: Key, obj: Json) -> None:
        """Index hook: `obj` is now cached under `key`."""

    def _forget(self, key: Key, obj: Json) -> None:
        """Index hook: `obj` is no longer cached under `key`."""


class PodCache(ObjectCache):
    """Pods in the operator's scope, indexed by workload, with what occupies each node."""

    def __init__(self) -> None:
        super().__init__()
        self._by_workload: dict[Key, dict[str, Json]] = {}
        self._on_node: dict[str, dict[Key, float]] = {}  # node → occupying Pods → memory they request
        self._ports_on_node: dict[str, dict[Key, frozenset[int]]] = {}  # node → occupying Pods → their ports
        self._deleting: set[str] = set()  # uids we deleted, terminating until the watch says so
        self._reserved_pods: Counter[str] = Counter()  # placed, being created
        self._reserved_memory: Counter[str] = Counter()
        self._reserved_ports: dict[str, Counter[int]] = {}

    def workload_pods(self, namespace: str, workload: str) -> list[Json]:
        """The Pods labelled for the workload (ownership is the caller's to check)."""
        return list(self._by_workload.get((namespace, workload), {}).values())

    def node_usage(self) -> tuple[Counter[str], Counter[str]]:
        """Per node: how many Pods occupy it (bound, not finished, or placed and being created),
        and the memory they request."""
        pods: Counter[str] = Counter(self._reserved_pods)
        memory: Counter[str] = Counter(self._reserved_memory)
        for node, occupants in self._on_node.items():
            pods[node] += len(occupants)
            memory[node] += int(sum(occupants.values()))
        return pods, memory

    def node_ports(self) -> dict[str, frozenset[int]]:
        """Per node: the ports held by the Pods occupying it, or placed there and being created."""
        held: dict[str, set[int]] = {node: set(+ports) for node, ports in self._reserved_ports.items()}
        for node, occupants in self._ports_on_node.items():
            held.setdefault(node, set()).update(*occupants.values())
        return {node: frozenset(ports) for node, ports in held.items() if ports}

    def reserve(self, node: str, memory: float, ports: Collection[int] = ()) -> None:
        """A Pod was placed on `node` and is being created: count it until `unreserve` (what
        kube-scheduler's assumed Pods are), so placements running meanwhile see the node fuller."""
        self._reserved_pods[node] += 1
        self._reserved_memory[node] += int(memory)
        if ports:
            self._reserved_ports.setdefault(node, Counter()).update(ports)

    def unreserve(self, node: str, memory: float, ports: Collection[int] = ()) -> None:
        """The placed Pod was created (and is cached now) or its creation failed."""
        self._reserved_pods[node] -= 1
        self._reserved_memory[node] -= int(memory)
        if ports:
            self._reserved_ports[node].subtract(ports)
        if self._reserved_pods[node] <= 0:
            del self._reserved_pods[node]
            self._reserved_memory.pop(node, None)
            self._reserved_ports.pop(node, None)

    def upsert(self, obj: Json) -> bool:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid in self._deleting and not objects.is_terminating(obj):
            obj = _mark_terminating(obj)  # an event from before our delete: the Pod is going all the same
        return super().upsert(obj)

    def _trim(self, obj: Json) -> Json:
        """Pods of other workloads only occupy nodes: keep what placement counts of them."""
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get(keys.LABEL_WORKLOAD):
            return super()._trim(obj)
        spec = obj.get("spec") or {}
        return {
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp")
                         if k in meta},
            "spec": {"nodeName": spec.get("nodeName"), "overhead": spec.get("overhead"),
                     **{part: [_occupancy(c) for c in spec.get(part) or []]
                        for part in ("containers", "initContainers")}},
            "status": {"phase": (obj.get("status") or {}).get("phase")},
        }

    def mark_deleting(self, namespace: str, name: str, uid: str | None) -> None:
        """We deleted this Pod: it is terminating (or gone) whatever older events say."""
        cached = self.get(namespace, name)
        if cached is None or (uid and (cached.get("metadata") or {}).get("uid") != uid):
            return
        key = (namespace, name)
        self._deleting.add(str((cached.get("metadata") or {}).get("uid")))
        self._forget(key, cached)
        self._objects[key] = _mark_terminating(cached)
        self._remember(key, self._objects[key])

    def _remember(self, key: Key, obj: Json) -> None:
        workload = ((obj.get("metadata") or {}).get("labels") or {}).get(keys.LABEL_WORKLOAD)
        if workload:
            self._by_workload.setdefault((key[0], workload), {})[key[1]] = obj
        node = objects.pod_node(obj)
        if node and not objects.is_terminal(obj):
            spec = obj.get("spec") or {}
            self._on_node.setdefault(node, {})[key] = objects.pod_memory_request(spec)
            ports = objects.pod_ports(spec)
            if ports:
                self._ports_on_node.setdefault(node, {})[key] = ports

    def _forget(self, key: Key, obj: Json) -> None:
        workload = ((obj.get("metadata") or {}).get("labels") or {}).get(keys.LABEL_WORKLOAD)
        if workload:
            pods = self._by_workload.get((key[0], workload), {})
            pods.pop(key[1], None)
            if not pods:
                self._by_workload.pop((key[0], workload), None)
        node = objects.pod_node(obj)
        if node:
            for index in (self._on_node, self._ports_on_node):
                occupants = index.get(node, {})
                occupants.pop(key, None)
                if not occupants:
                    index.pop(node, None)

    def delete(self, obj: Mapping[str, Any]) -> Json | None:
        self._deleting.discard(str((obj.get("metadata") or {}).get("uid")))
        return super().delete(obj)

    def replace(self, objects: Iterable[Json]) -> None:
        self._deleting.clear()
        super().replace(objects)


class ServiceCache(ObjectCache):
    """Services in the operator's scope. Only those a WasmWorkload controls are kept whole; of the
    others the name is enough (a workload's Service must not take a name that is taken)."""

    def _trim(self, obj: Json) -> Json:
        meta = obj.get("metadata") or {}
        if any(ref.get("controller") and ref.get("kind") == keys.WORKLOAD_KIND
               and str(ref.get("apiVersion", "")).startswith(f"{keys.GROUP}/")
               for ref in meta.get("ownerReferences") or []):
            return super()._trim(obj)
        return {"metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp",
                                                  "ownerReferences") if k in meta}}


def _occupancy(container: Mapping[str, Any]) -> Json:
    """What of a container occupies its node: its resources, and its ports when it has some."""
    kept: Json = {"resources": container.get("resources") or {}}
    if container.get("ports"):
        kept["ports"] = container["ports"]
    return kept


def _mark_terminating(pod: Json) -> Json:
    """A copy of the Pod with a deletionTimestamp (the one it has, or a placeholder)."""
    marked = copy.copy(pod)
    marked["metadata"] = {**(pod.get("metadata") or {}), "deletionTimestamp": LOCALLY_DELETED}
    return marked
