"""Where desired Pods come from: the API server (Pods bound to this node) or a manifest folder.

Static manifests (standalone mode): every `*.yaml`/`*.yml`/`*.json` file in the
folder may hold Pods, WasmWorkloads (expanded into their replicas' Pods with the same builder
the operator uses), ConfigMaps and Secrets. As the kubelet does for static Pods, a Pod's name
gets the node name appended and its UID is a hash of its manifest, so an edited file is a new
Pod and an unchanged one keeps running across rescans.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wasmlet.api import keys
from wasmlet.kube import KubeClient
from wasmlet.kube.reflector import Reflector
from wasmlet.kube.resources import PODS
from wasmlet.nodeagent.cacheguard import CacheGuard
from wasmlet.nodeagent.mirror import is_mirror
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.podfields import unknown_fields
from wasmlet.nodeagent.pods import PodController, PodRef, Reporter
from wasmlet.nodeagent.podstore import PodStore
from wasmlet.nodeagent.validation import check_object

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_MANIFEST_BYTES = 1024 * 1024


class ApiPods:
    """Feeds the controller the Pods bound to this node, from a list+watch of the API.

    With a `CacheGuard` (the API endpoint is KubeEdge's MetaServer) the Pods are listed and
    watched without a field selector, which MetaServer does not apply to Pods, and filtered
    here; a LIST then only adds and updates Pods, and stale copies are ignored (cacheguard.py).
    """

    def __init__(self, api: KubeClient, node_name: str, controller: PodController, store: PodStore,
                 reporter: Reporter, guard: CacheGuard | None = None) -> None:
        selector = None if guard is not None else f"spec.nodeName={node_name}"
        self.reflector = Reflector(api, PODS, field_selector=selector)
        self._node = node_name
        self._controller = controller
        self._store = store
        self._reporter = reporter  # told when the API deletes a Pod: nothing more is written for it
        self._guard = guard
        self._stored: dict[str, tuple[Any, ...]] = {}  # uid → what the stored copy says that matters

    async def run(self) -> None:
        if self._guard is None:
            await self.reflector.run(self)
            return
        async with asyncio.TaskGroup() as group:
            group.create_task(self._guard.run())
            group.create_task(self.reflector.run(self))

    def _ours(self, pod: Obj) -> bool:
        """Bound to this node and not a mirror (mirrors show static Pods: already ours)."""
        return (pod.get("spec") or {}).get("nodeName") == self._node and not is_mirror(pod)

    def _remember(self, pod: Obj) -> None:
        """Store the Pod for a restart without the API, unless only its status changed (most events
        are the agent's own status writes coming back): the spec is what the store is for."""
        meta = pod["metadata"]
        facts = (meta.get("generation"), meta.get("deletionTimestamp"), str(meta.get("labels")),
                 str(meta.get("annotations")), meta.get("resourceVersion") if meta.get("generation") is None else None)
        if self._stored.get(meta["uid"]) != facts:
            self._stored[meta["uid"]] = facts
            self._store.put_pod(pod)

    async def replace(self, objects: list[Obj]) -> None:
        pods = [pod for pod in objects if self._ours(pod)]
        guard = self._guard
        if guard is not None:
            pods = [pod for pod in pods if not guard.stale(pod)]
        self._stored = {}
        for pod in pods:
            self._remember(pod)
        if guard is None:
            await self._controller.replace(pods)
            return
        listed = {pod["metadata"]["uid"] for pod in pods}
        guard.omitted([pod for pod in self._controller.desired("api") if pod["metadata"]["uid"] not in listed])
        for pod in pods:
            guard.seen(pod)
            self._controller.sync(pod)

    async def apply(self, event_type: str, obj: Obj) -> None:
        if not self._ours(obj):
            return
        uid = obj["metadata"]["uid"]
        if event_type == "DELETED":
            meta = obj["metadata"]
            self._stored.pop(uid, None)
            self._reporter.gone(PodRef(meta.get("namespace") or "default", meta["name"], uid))
            if self._guard is not None:
                self._guard.deleted(uid)  # remembered against replays, then stopped
            else:
                self._controller.remove(uid)
            return
        if self._guard is not None:
            if self._guard.stale(obj):
                log.debug("ignoring a stale copy of pod %s/%s (%s)", obj["metadata"].get("namespace"),
                          obj["metadata"].get("name"), event_type)
                return
            self._guard.seen(obj)
        self._remember(obj)
        self._controller.sync(obj)


@dataclass(frozen=True)
class ManifestProblem:
    """A file (or document in it) that could not be used, and why; or, as a `warning`, a document
    that is used but has something wrong the kubelet would silently ignore (an unknown field)."""

    path: Path
    message: str
    warning: bool = False


class StaticPods:
    """Rescans a manifest folder and feeds the controller its Pods."""

    def __init__(self, folder: Path, node_name: str, controller: PodController, objects: StaticObjects,
                 interval: float = 2.0, on_scan: Callable[[list[Obj]], Awaitable[None]] | None = None) -> None:
        self.folder = folder
        self._node = node_name
        self._controller = controller
        self._objects = objects
        self._interval = interval
        self.problems: list[ManifestProblem] = []
        self.synced = asyncio.Event()
        self._on_scan = on_scan

    async def run(self) -> None:
        while True:
            await self.scan()
            await asyncio.sleep(self._interval)

    async def scan(self) -> list[Obj]:
        pods, objects, sources, problems = load_manifests(self.folder, self._node)
        for problem in problems:
            if problem not in self.problems:
                log.log(logging.WARNING if problem.warning else logging.ERROR, "manifest %s: %s",
                        problem.path, problem.message)
        self.problems = problems
        self._objects.replace(objects)
        await self._controller.replace(pods, sources, source="file")
        if self._on_scan is not None:
            await self._on_scan(pods)
        self.synced.set()
        return pods


def load_manifests(folder: Path, node_name: str) -> tuple[list[Obj], list[Obj], dict[str, Path], list[ManifestProblem]]:
    """Read every manifest: (pods, configmaps+secrets, {pod uid: its folder}, problems)."""
    pods: list[Obj] = []
    objects: list[Obj] = []
    sources: dict[str, Path] = {}
    problems: list[ManifestProblem] = []
    files = [folder] if folder.is_file() else sorted(folder.iterdir())
    for path in (p for p in files if p.suffix in MANIFEST_SUFFIXES and p.is_file()):
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
            text = path.read_text()
            docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            problems.append(ManifestProblem(path, f"cannot parse: {_parse_error(exc)}"))
            continue
        for index, doc in enumerate(d for d in docs if d):
            try:
                for pod in _pods_of(doc, node_name, objects):
                    sources[pod["metadata"]["uid"]] = path.parent
                    pods.append(pod)
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(ManifestProblem(path, f"document {index}: {exc}"))
                continue
            if doc.get("kind") == "Pod":
                problems.extend(ManifestProblem(path, f'document {index}: Pod {doc["metadata"]["name"]}: '
                                                      f'unknown field "{field}"', warning=True)
                                for field in unknown_fields(doc))
    return pods, objects, sources, problems


def _parse_error(exc: Exception) -> str:
    """A YAML error as `line L, column C: problem`, without PyYAML's `in "<unicode string>"` lines."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f"{exc.context} (line {exc.context_mark.line + 1}); " if exc.context and exc.context_mark else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {context}{exc.problem}"
    return str(exc)


def _pods_of(doc: Obj, node_name: str, objects: list[Obj]) -> list[Obj]:
    if not isinstance(doc, dict):
        raise ValueError("not a Kubernetes object")
    kind = doc.get("kind")
    if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
        raise ValueError(f"{kind or 'object'} without metadata.name")
    if kind in ("ConfigMap", "Secret"):
        check_object(doc)
        objects.append(doc)
        return []
    if kind == "Pod":
        check_object(doc)
        return [_checked(_static_pod(doc, node_name))]
    if kind == keys.WORKLOAD_KIND:
        return [_checked(_static_pod(p, node_name)) for p in _workload_pods(doc, node_name)]
    raise ValueError(f"kind {kind!r} is not supported in a manifest folder (Pod, WasmWorkload, ConfigMap, Secret)")


def _checked(pod: Obj) -> Obj:
    """The Pod as it will run (its name carries the node's), checked as the API server would."""
    check_object(pod)
    return pod


def _workload_pods(doc: Obj, node_name: str) -> list[Obj]:
    from wasmlet.api.podtemplate import build_pod
    from wasmlet.api.workload import InvalidWorkload, parse_workload

    try:
        workload = parse_workload(doc)
    except InvalidWorkload as exc:
        raise ValueError(str(exc)) from exc
    name = doc["metadata"]["name"]
    replicas = workload.spec.replicas
    return [build_pod(workload, name=name if replicas == 1 else f"{name}-{i}", node_name=node_name)
            for i in range(replicas)]


def _static_pod(pod: Obj, node_name: str) -> Obj:
    pod = json.loads(json.dumps(pod))  # never mutate the parsed document
    meta = pod.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    digest = hashlib.sha256(json.dumps(pod, sort_keys=True).encode()).hexdigest()
    meta["name"] = f"{meta['name']}-{node_name}"
    meta["uid"] = digest[:32]
    meta.setdefault("annotations", {})["kubernetes.io/config.source"] = "file"
    meta["annotations"]["kubernetes.io/config.hash"] = digest[:32]
    pod.setdefault("spec", {})["nodeName"] = node_name
    return pod
