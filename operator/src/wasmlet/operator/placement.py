"""Where new replicas go: filter the wasm nodes a Pod fits on, then pick the best one.

Pure. The filters are the ones a kubelet would otherwise refuse the Pod for: the node is a
Ready wasmlet agent offering the runtime, not cordoned, matches the nodeSelector, has no taint
the Pod does not tolerate, holds none of the Pod's ports already (wasm Pods share their node's
network: kube-scheduler's NodePorts), and has room: `allocatable.pods`, and `allocatable.memory`
when the Pod requests memory (what kube-scheduler's NodeResourcesFit checks). Among the fitting
nodes a replica goes to the one with the fewest replicas of this workload (when spreading), then
the least loaded, then the first by name (so equal inputs give equal answers).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmlet.api import keys
from wasmlet.operator import objects

Json = dict[str, Any]

# Taint effects that keep a new Pod off a node (PreferNoSchedule is only a preference).
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# kube-scheduler's NodePorts reason, word for word.
PORTS_IN_USE = "node(s) didn't have free ports for the requested pod ports"


@dataclass(frozen=True)
class PlacementResult:
    """One node name per placed replica, and why the rest could not be placed."""

    nodes: tuple[str, ...]
    unplaced: int = 0
    message: str = ""
    rejections: Mapping[str, int] = field(default_factory=dict)


def rejection(pod_spec: Mapping[str, Any], node: Mapping[str, Any], load: int, memory_used: float = 0.0,
              ports_used: Collection[int] = ()) -> str | None:
    """Why the Pod cannot go to `node` (a kube-scheduler style phrase), or None if it fits.

    `load` counts the Pods occupying the node, `memory_used` the memory they request, `ports_used`
    the ports they hold (`objects.pod_ports`).
    """
    labels = objects.node_labels(node)
    if labels.get(keys.LABEL_AGENT) != "true":
        return "node(s) are not wasmlet agents"
    if not objects.node_ready(node):
        return "node(s) were not ready"
    if objects.is_unschedulable(node):
        return "node(s) were unschedulable"
    runtime = pod_spec.get("runtimeClassName") or keys.DEFAULT_RUNTIME
    if labels.get(keys.runtime_label(runtime)) != "true":
        return f"node(s) did not offer runtime {runtime}"
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return "node(s) didn't match Pod's node selector"
    tolerations = pod_spec.get("tolerations") or []
    for taint in objects.node_taints(node):
        if taint.get("effect") in BLOCKING_EFFECTS and not any(objects.tolerates(t, taint) for t in tolerations):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    if not objects.pod_ports(pod_spec).isdisjoint(ports_used):
        return PORTS_IN_USE
    capacity = objects.node_pod_capacity(node)
    if capacity is not None and load >= capacity:
        return "node(s) had too many pods"
    wanted = objects.pod_memory_request(pod_spec)
    allocatable = objects.node_allocatable_memory(node)
    if wanted and allocatable is not None and memory_used + wanted > allocatable:
        return "node(s) had insufficient memory"
    return None


def place(count: int, pod_spec: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], *,
          load: Mapping[str, int], replicas_on: Mapping[str, int], spread: bool = True,
          memory: Mapping[str, float] | None = None,
          ports: Mapping[str, Collection[int]] | None = None) -> PlacementResult:
    """Choose nodes for `count` new replicas.

    `load` counts the Pods (of any workload) bound to each node and still occupying it, `memory`
    the memory those Pods request, `ports` the ports they hold; `replicas_on` counts this
    workload's active replicas per node. All grow as replicas are placed, so one call places a
    batch as it would place replicas one at a time (two replicas that need a port never share a node).
    """
    load = Counter(load)
    used: defaultdict[str, float] = defaultdict(float, memory or {})
    wanted = objects.pod_memory_request(pod_spec)
    held = {name: set(taken) for name, taken in (ports or {}).items()}
    needed = objects.pod_ports(pod_spec)
    mine = Counter(replicas_on)
    chosen: list[str] = []
    for _ in range(count):
        fitting: list[Mapping[str, Any]] = []
        reasons: Counter[str] = Counter()
        for node in nodes:
            name = objects.node_name(node)
            why = rejection(pod_spec, node, load[name], used[name], held.get(name, ()))
            if why is None:
                fitting.append(node)
            else:
                reasons[why] += 1
        if not fitting:
            unplaced = count - len(chosen)
            return PlacementResult(tuple(chosen), unplaced, unschedulable_message(len(nodes), reasons), reasons)
        best = min(fitting, key=lambda node: _score(node, load, mine, spread))
        name = objects.node_name(best)
        chosen.append(name)
        load[name] += 1
        used[name] += wanted
        held.setdefault(name, set()).update(needed)
        mine[name] += 1
    return PlacementResult(tuple(chosen))


def unschedulable_message(total: int, reasons: Mapping[str, int]) -> str:
    """`0/3 nodes are available: 1 node(s) were not ready, 2 node(s) ...` as kube-scheduler says it."""
    if total == 0:
        return f"0/0 nodes are available: no wasm nodes ({keys.LABEL_AGENT}=true) are registered."
    parts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
    return f"0/{total} nodes are available: {parts}."


def _score(node: Mapping[str, Any], load: Mapping[str, int], mine: Mapping[str, int],
           spread: bool) -> tuple[int, float, int, str]:
    name = objects.node_name(node)
    capacity = objects.node_pod_capacity(node)
    fullness = load[name] / capacity if capacity else 0.0
    return (mine[name] if spread else 0, fullness, load[name], name)
