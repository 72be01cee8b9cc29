"""`wasmlet status`: the workloads, the wasm nodes and their Pods, in three tables.

What `kubectl get ww`, `kubectl get nodes -l wasmlet.dev/agent=true` and `kubectl get pods`
would print, in one view and with the columns a wasmlet user asks about (runtimes, module,
which workload a Pod belongs to). Read-only: three list requests, no watch.

The table building is pure (`render_status` over plain objects); only `gather` talks to the API.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlet.api import keys
from wasmlet.kube import ApiError, ApiUnavailable, ClusterConfig, KubeClient, NotFound, load_config
from wasmlet.kube.config import ConfigError
from wasmlet.kube.resources import NODES, PODS, WASM_WORKLOADS

Obj = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What the tables are built from. `workloads` is None when the CRD is not installed."""

    workloads: list[Obj] | None
    nodes: list[Obj]
    pods: list[Obj]


def add_parser(sub: Any) -> None:
    """Register `wasmlet status` on the CLI's subparsers."""
    status = sub.add_parser("status", help="show WasmWorkloads, wasm nodes and their Pods from the cluster",
                            description="List the WasmWorkloads, the wasm Nodes (labelled wasmlet.dev/agent=true) "
                                        "and the Pods that run on them, like kubectl get, in one view.")
    status.add_argument("--kubeconfig", help="kubeconfig path or API URL (default: $KUBECONFIG, in-cluster, "
                                             "~/.kube/config)")
    status.add_argument("--context", help="kubeconfig context to use (default: its current-context)")
    scope = status.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", help="only this namespace (default: the kubeconfig's namespace)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")


def status_command(args: argparse.Namespace) -> int:
    """Print the tables; exit 1 when the API cannot be read, 2 on unusable credentials."""
    try:
        config = load_config(args.kubeconfig, args.context)
    except ConfigError as exc:
        print(f"wasmlet status: {exc}", file=sys.stderr)
        return 2
    namespace = None if args.all_namespaces else (args.namespace or config.namespace)
    try:
        snapshot = asyncio.run(gather(config, namespace))
    except ApiUnavailable:
        print(f"wasmlet status: the API server at {config.server} does not answer", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"wasmlet status: cannot read the cluster at {config.server}: {exc}", file=sys.stderr)
        return 1
    print(render_status(snapshot, namespace, dt.datetime.now(dt.UTC)), end="")
    return 0


async def gather(config: ClusterConfig, namespace: str | None) -> Snapshot:
    """List workloads, wasm nodes and Pods (the namespace's, or all when `namespace` is None)."""
    async with KubeClient(config, user_agent="wasmlet-status") as api:
        try:
            workloads: list[Obj] | None = (await api.list(WASM_WORKLOADS, namespace)).get("items") or []
        except NotFound:
            workloads = None  # the API has no such resource: the CRD is not installed
        nodes = (await api.list(NODES, label_selector=f"{keys.LABEL_AGENT}=true")).get("items") or []
        pods = (await api.list(PODS, namespace)).get("items") or []
    return Snapshot(workloads, nodes, pods)


def render_status(snapshot: Snapshot, namespace: str | None, now: dt.datetime) -> str:
    """The three tables as text."""
    node_names = {n["metadata"]["name"] for n in snapshot.nodes}
    pods = [p for p in snapshot.pods if _is_wasm_pod(p, node_names)]
    scope = "all namespaces" if namespace is None else f"namespace {namespace}"
    parts = [f"WasmWorkloads ({scope})"]
    if snapshot.workloads is None:
        parts.append("  the WasmWorkload CRD is not installed (kubectl apply -f crds/)")
    else:
        parts.append(table(["NAMESPACE", "NAME", "READY", "RUNTIME", "MODULE", "REASON", "AGE"],
                           [workload_row(w, now) for w in snapshot.workloads], "no WasmWorkloads"))
    parts.append("\nWasm nodes")
    parts.append(table(["NAME", "STATUS", "RUNTIMES", "PODS", "VERSION", "AGE"],
                       [node_row(n, snapshot.pods, now) for n in snapshot.nodes],
                       "no wasm nodes (is the agent running? kubectl get pods -A -l app.kubernetes.io/component=agent)"))
    parts.append(f"\nWasm Pods ({scope})")
    parts.append(table(["NAMESPACE", "NAME", "WORKLOAD", "NODE", "STATUS", "RESTARTS", "AGE"],
                       [pod_row(p, now) for p in pods], "no wasm Pods"))
    return "\n".join(parts) + "\n"


def workload_row(workload: Obj, now: dt.datetime) -> list[str]:
    meta, spec, status = workload["metadata"], workload.get("spec") or {}, workload.get("status") or {}
    ready: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return [meta.get("namespace", ""), meta["name"], status.get("readyText") or f"0/{spec.get('replicas', 1)}",
            spec.get("runtime") or keys.DEFAULT_RUNTIME, status.get("module") or "<pending>",
            ready.get("reason") or "<pending>", age(meta.get("creationTimestamp"), now)]


def node_row(node: Obj, pods: Iterable[Obj], now: dt.datetime) -> list[str]:
    meta, status = node["metadata"], node.get("status") or {}
    name = meta["name"]
    ready: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    state = "Ready" if ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    runtimes = sorted(key.removeprefix(keys.LABEL_RUNTIME_PREFIX) for key, value in (meta.get("labels") or {}).items()
                      if key.startswith(keys.LABEL_RUNTIME_PREFIX) and value == "true")
    running = sum(1 for p in pods if (p.get("spec") or {}).get("nodeName") == name
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    capacity = (status.get("allocatable") or {}).get("pods", "?")
    return [name, state, ",".join(runtimes) or "<none>", f"{running}/{capacity}",
            (status.get("nodeInfo") or {}).get("kubeletVersion", ""), age(meta.get("creationTimestamp"), now)]


def pod_row(pod: Obj, now: dt.datetime) -> list[str]:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return [meta.get("namespace", ""), meta["name"], (meta.get("labels") or {}).get(keys.LABEL_WORKLOAD, "-"),
            spec.get("nodeName") or "<none>", pod_status(pod), str(sum(c.get("restartCount", 0) for c in containers)),
            age(meta.get("creationTimestamp"), now)]


def pod_status(pod: Obj) -> str:
    """The STATUS column as kubectl prints it: a container's reason where there is one, else the phase."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    reason = status.get("reason")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        detail = (state.get("waiting") or {}).get("reason") or (state.get("terminated") or {}).get("reason")
        if detail and detail != "Completed":
            reason = detail
    return str(reason or status.get("phase") or "Pending")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """Left-aligned columns, three spaces apart, as kubectl's printer lays them out."""
    if not rows:
        return f"  {empty}"
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in (headers, *rows)]
    return "\n".join(lines)


def age(timestamp: str | None, now: dt.datetime) -> str:
    """kubectl's human duration (`45s`, `5m30s`, `3h`, `2d4h`, `400d`) since `timestamp`."""
    if not timestamp:
        return "<unknown>"
    then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 365 * 8 and days % 365 else f"{days // 365}y"


def _is_wasm_pod(pod: Obj, wasm_nodes: set[str]) -> bool:
    spec = pod.get("spec") or {}
    return spec.get("nodeName") in wasm_nodes or spec.get("runtimeClassName") in keys.RUNTIMES
