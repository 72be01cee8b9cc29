"""NodeController: registers this agent's Node, renews its Lease, and keeps NodeStatus true.

As the kubelet does: the Lease in `kube-node-lease` is renewed every 10 s (valid 40 s) and
is what the node lifecycle controller watches; NodeStatus is posted when it changes and at
least every `node_status_seconds`; a renewal that fails is retried quickly with backoff.
The Lease renewal is also the link probe (`CloudLink`): after a reconnect NodeStatus is posted
at once, and the API's Node is compared with the agent's view every `node_check_seconds`, so a
Node the node lifecycle controller marked `Unknown` while the link was down is Ready again
within seconds, not at the next periodic report.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from typing import Any

from wasmlet.api import keys
from wasmlet.kube import AlreadyExists, ApiError, ApiUnavailable, Conflict, Forbidden, KubeClient, NotFound
from wasmlet.kube.backoff import Backoff
from wasmlet.kube.resources import LEASES, NODES
from wasmlet.nodeagent import VERSION
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.link import CloudLink
from wasmlet.nodeagent.noderestriction import (
    forbidden_label,
    labels_to_change,
    missing_taints,
    node_restriction_note,
)
from wasmlet.nodeagent.status import now, now_micro

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
# runtime → (import name, distribution name)
RUNTIME_PACKAGES = {"wasmer": ("wasmer_sdk", "wasmer-sdk"), "wasmtime": ("wasmtime", "wasmtime")}
# kubectl and the API server expect a Kubernetes-shaped kubelet version.
KUBELET_VERSION = f"v1.34.0-wasmlet.{VERSION}"


def node_labels(settings: AgentSettings) -> dict[str, str]:
    labels = {
        keys.LABEL_ARCH: keys.WASM_ARCH,
        keys.LABEL_OS: keys.WASM_ARCH,
        keys.LABEL_HOSTNAME: settings.node_name,
        keys.LABEL_TYPE: keys.TYPE_WASMLET,
        keys.LABEL_AGENT: "true",
    }
    labels.update({keys.runtime_label(r): "true" for r in settings.runtimes})
    labels.update(settings.node_labels)
    return labels


def node_object(settings: AgentSettings) -> Obj:
    """The Node as registered: labels and taints of docs/contract.md; status is posted separately."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": settings.node_name, "labels": node_labels(settings)},
        "spec": {"taints": [{"key": keys.TAINT_KEY, "value": keys.TAINT_VALUE, "effect": e}
                            for e in keys.TAINT_EFFECTS]},
    }


def node_status(settings: AgentSettings, ready: bool, reason: str, message: str, previous: list[Obj]) -> Obj:
    stamp = now()
    before = {c.get("type"): c for c in previous}

    def condition(ctype: str, status: str, why: str, text: str) -> Obj:
        old = before.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else stamp
        return {"type": ctype, "status": status, "reason": why, "message": text,
                "lastHeartbeatTime": stamp, "lastTransitionTime": since or stamp}

    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki", "pods": str(settings.max_pods)}
    runtimes = ",".join(f"{r}://{_runtime_version(r)}" for r in settings.runtimes)
    return {
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "wasmlet has sufficient memory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "wasmlet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "wasmlet has sufficient PID available"),
            condition("Ready", "True" if ready else "False", reason, message),
        ],
        "addresses": [{"type": "InternalIP", "address": settings.node_ip},
                      {"type": "Hostname", "address": settings.node_name}],
        "capacity": capacity,
        "allocatable": {**capacity, "memory": f"{settings.allocatable_memory // 1024}Ki"}
        if settings.allocatable_memory else dict(capacity),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.kubelet_port}},
        "nodeInfo": {
            "architecture": "wasm32", "operatingSystem": "wasi", "kernelVersion": os.uname().release,
            "osImage": "wasmlet", "containerRuntimeVersion": runtimes, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }


class NodeController:
    """Owns the Node object and the Lease for the agent's lifetime."""

    def __init__(self, api: KubeClient, settings: AgentSettings, link: CloudLink | None = None) -> None:
        self._api = api
        self._settings = settings
        self.link = link or CloudLink()
        self.link.on_reconnect(self._reconnected)
        self._conditions: list[Obj] = []
        self._ready = (True, "KubeletReady", "wasmlet is posting ready status")
        missing = [r for r in settings.runtimes if importlib.util.find_spec(RUNTIME_PACKAGES[r][0]) is None]
        if missing:  # a node that cannot run the Pods it advertises for must not look Ready
            self._ready = (False, "RuntimeUnavailable",
                           f"runtime(s) {', '.join(missing)} offered but not installed "
                           f"(pip install {' '.join(RUNTIME_PACKAGES[r][1] for r in missing)})")
        self._changed = asyncio.Event()
        self._lease: Obj | None = None
        self.registered = asyncio.Event()
        self._reported: set[str] = set()  # labels NodeRestriction refused, already logged

    def set_ready(self, ready: bool, reason: str, message: str) -> None:
        if (ready, reason, message) != self._ready:
            self._ready = (ready, reason, message)
            self._changed.set()

    async def run(self) -> None:
        await self._register()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._renew_lease())
            group.create_task(self._report_status())

    async def post_status(self) -> None:
        ready, reason, message = self._ready
        status = node_status(self._settings, ready, reason, message, self._conditions)
        await self._api.patch(NODES, self._settings.node_name, {"status": status}, subresource="status")
        self._conditions = status["conditions"]

    async def _register(self) -> None:
        backoff = Backoff(base=0.5, cap=7.0)  # as the Lease's: a reconnect is noticed within 7 s
        while True:
            try:
                try:
                    await self._create_node()
                except AlreadyExists:
                    await self._reconcile_node()
                await self.post_status()
                self.link.succeeded()
                self.registered.set()
                log.info("registered node %s", self._settings.node_name)
                return
            except ApiError as exc:
                if isinstance(exc, ApiUnavailable):
                    self.link.failed()
                delay = backoff.next()
                log.warning("cannot register node %s: %s; retrying in %.1fs", self._settings.node_name, exc, delay)
                await asyncio.sleep(delay)

    async def _create_node(self) -> None:
        """Create the Node; when NodeRestriction refuses some of its labels, create it without them."""
        node = node_object(self._settings)
        labels = node["metadata"]["labels"]
        restricted = {key: value for key, value in labels.items() if forbidden_label(key)}
        try:
            await self._api.create(NODES, node)
        except Forbidden:
            if not restricted:
                raise
            self._report_restricted(restricted)
            node["metadata"]["labels"] = {k: v for k, v in labels.items() if k not in restricted}
            await self._api.create(NODES, node)

    async def _reconcile_node(self) -> None:
        """An existing Node (a restart): patch only the labels that differ and add our taints if
        they are missing, as the kubelet leaves an existing Node's taints alone. A node identity may
        not change taints or restricted labels: a refused patch is retried once without them, and
        a second refusal is reported and left — never retried in a loop."""
        current = await self._api.get(NODES, self._settings.node_name)
        wanted = node_object(self._settings)
        labels = labels_to_change(wanted["metadata"]["labels"], current["metadata"].get("labels") or {})
        have_taints = list((current.get("spec") or {}).get("taints") or [])
        taints = missing_taints(wanted["spec"]["taints"], have_taints)
        patch: Obj = {"metadata": {"labels": labels}} if labels else {}
        if taints:
            patch["spec"] = {"taints": have_taints + taints}
        if not patch:
            return
        try:
            await self._api.patch(NODES, self._settings.node_name, patch)
            return
        except Forbidden as exc:
            refused = str(exc)
        allowed = {k: v for k, v in labels.items() if not forbidden_label(k)}
        restricted = {k: v for k, v in labels.items() if forbidden_label(k)}
        self._report_restricted(restricted)
        if taints:
            log.warning("node %s lacks the taints %s and its identity may not add them (%s); add them with "
                        "`kubectl taint node`", self._settings.node_name,
                        ", ".join(f"{t['key']}={t['value']}:{t['effect']}" for t in taints), refused)
        if not (restricted or taints):
            log.warning("node %s: cannot update labels %s: %s", self._settings.node_name, sorted(labels), refused)
        elif allowed:
            try:
                await self._api.patch(NODES, self._settings.node_name, {"metadata": {"labels": allowed}})
            except Forbidden as exc:
                log.warning("node %s: cannot update labels %s: %s", self._settings.node_name, sorted(allowed), exc)

    def _report_restricted(self, labels: dict[str, str]) -> None:
        """Say once which labels NodeRestriction keeps the node from setting."""
        if labels and set(labels) - self._reported:
            self._reported |= set(labels)
            log.warning("%s", node_restriction_note(labels))

    async def _renew_lease(self) -> None:
        backoff = Backoff(base=0.2, cap=7.0)  # the kubelet's lease retry: 200 ms doubling to 7 s
        while True:
            try:
                await self._put_lease()
                self.link.succeeded()
                backoff.reset()
                await asyncio.sleep(self._settings.lease_renew_seconds)
            except ApiError as exc:
                if isinstance(exc, ApiUnavailable):
                    self.link.failed()
                delay = backoff.next()
                log.warning("lease renewal failed: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _put_lease(self) -> None:
        """Renew from the copy the last write returned, as the kubelet does: one request per renewal.
        The Lease is read again only when that copy is stale (409) or the Lease is gone."""
        name = self._settings.node_name
        spec = {"holderIdentity": name, "leaseDurationSeconds": self._settings.lease_duration_seconds,
                "renewTime": now_micro()}
        if self._lease is None:
            try:
                self._lease = await self._api.get(LEASES, name, LEASE_NAMESPACE)
            except NotFound:
                self._lease = await self._api.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                                 "ownerReferences": await self._node_owner()},
                    "spec": spec,
                })
                return
        lease = {**self._lease, "spec": {**self._lease.get("spec", {}), **spec}}
        try:
            self._lease = await self._api.replace(LEASES, lease)  # resourceVersion in the body: stale → 409
        except (Conflict, NotFound):
            self._lease = None
            raise

    async def _node_owner(self) -> list[Obj]:
        node = await self._api.get(NODES, self._settings.node_name)
        meta = node["metadata"]
        return [{"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}]

    def _reconnected(self) -> None:
        """The link is back: whatever the API made of the Node meanwhile, post the truth now."""
        self._changed.set()

    async def _report_status(self) -> None:
        interval = self._settings.node_status_seconds
        last_post = asyncio.get_running_loop().time()
        while True:
            timeout = min(self._settings.node_check_seconds, interval)
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)
            except TimeoutError:
                due = asyncio.get_running_loop().time() - last_post >= interval
                if not due and not await self._api_disagrees():
                    continue
            self._changed.clear()
            try:
                await self.post_status()
                last_post = asyncio.get_running_loop().time()
            except ApiError as exc:
                log.warning("cannot post node status: %s", exc)
                self._changed.set()
                await asyncio.sleep(1.0)

    async def _api_disagrees(self) -> bool:
        """Whether the API's Node shows another Ready status than this agent's (e.g. `Unknown`,
        set by the node lifecycle controller while the Lease could not be renewed)."""
        try:
            node = await self._api.get(NODES, self._settings.node_name)
        except ApiError:
            return False  # the next check, or the reconnect, tells
        conditions: list[Obj] = (node.get("status") or {}).get("conditions") or []
        ready: Obj = next((c for c in conditions if c.get("type") == "Ready"), {})
        wanted = "True" if self._ready[0] else "False"
        if ready.get("status") != wanted:
            log.info("node %s is Ready=%s in the API, %s here: posting status", self._settings.node_name,
                     ready.get("status"), wanted)
            return True
        return False


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _runtime_version(runtime: str) -> str:
    package = RUNTIME_PACKAGES[runtime][1]
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
