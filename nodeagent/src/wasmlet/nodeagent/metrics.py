"""The agent's Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Start latency is milliseconds for a warm module: buckets resolve 1 ms to 10 s.
START_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# An HTTP request to a wasm handler takes about a millisecond; timeouts go up to minutes.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_LABELS = ("namespace", "pod", "container")


class HttpMetrics:
    """Per-Pod request metrics of HTTP handler containers (docs/http.md); a Pod's series go with it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("wasmlet_http_requests", "HTTP requests answered, by status code.",
                                [*HTTP_LABELS, "code"], registry=registry)
        self.errors = Counter("wasmlet_http_request_errors",
                              "HTTP requests the agent answered for the module, by reason (X-Wasmlet-Error).",
                              [*HTTP_LABELS, "reason"], registry=registry)
        self.duration = Histogram("wasmlet_http_request_duration_seconds",
                                  "From a request's arrival to its response.", HTTP_LABELS,
                                  buckets=REQUEST_BUCKETS, registry=registry)
        self.in_flight = Gauge("wasmlet_http_instances_in_flight", "Instances running for HTTP requests now.",
                               HTTP_LABELS, registry=registry)
        self._series: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}
        self._children: dict[tuple[tuple[str, str, str], int, str], tuple[Any, Any, Any]] = {}

    def observe(self, labels: tuple[str, str, str], code: int, reason: str, seconds: float) -> None:
        # Once per request: the labelled children are looked up (and registered for `forget`) once.
        children = self._children.get((labels, code, reason))
        if children is None:
            series = self._series.setdefault(labels[:2], set())
            series.update({(self.requests, (*labels, str(code))), (self.duration, labels)})
            errors = None
            if reason:
                errors = self.errors.labels(*labels, reason)
                series.add((self.errors, (*labels, reason)))
            children = self._children[(labels, code, reason)] = (
                self.requests.labels(*labels, str(code)), errors, self.duration.labels(*labels))
        requests, errors, duration = children
        requests.inc()
        if errors is not None:
            errors.inc()
        duration.observe(seconds)

    def track(self, labels: tuple[str, str, str]) -> None:
        """Start the in-flight gauge of a handler at 0, so that it is there before the first request."""
        self.in_flight.labels(*labels).set(0)
        self._series.setdefault(labels[:2], set()).add((self.in_flight, labels))

    def forget(self, namespace: str, pod: str) -> None:
        """Drop every series of the Pod (it is gone): /metrics does not grow with Pod churn."""
        self._children = {key: value for key, value in self._children.items() if key[0][:2] != (namespace, pod)}
        for metric, labels in self._series.pop((namespace, pod), set()):
            try:
                metric.remove(*labels)
            except KeyError:
                pass


class AgentMetrics:
    """Counters and gauges the controllers update; served on the kubelet API's /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.running = Gauge("wasmlet_running_instances", "Module instances running now, by runtime.",
                             ["runtime"], registry=self.registry)
        self.starts = Counter("wasmlet_container_starts", "Containers started, by runtime.",
                              ["runtime"], registry=self.registry)
        self.start_seconds = Histogram("wasmlet_container_start_seconds",
                                       "From the start request to a running instance.", ["runtime"],
                                       buckets=START_BUCKETS, registry=self.registry)
        self.restarts = Counter("wasmlet_container_restarts", "Containers restarted after they ended.",
                                registry=self.registry)
        self.pulls = Counter("wasmlet_module_pulls", "Module fetches, by result (ok, error).",
                             ["result"], registry=self.registry)
        self.pods = Gauge("wasmlet_pods", "Pods the agent is running now.", registry=self.registry)
        # The kubelet's rest_client_requests_total: what the agent costs the API server, by verb and resource.
        self.api_requests = Counter("wasmlet_agent_api_requests", "Requests the agent sent to the API server, "
                                    "by verb, resource and HTTP code.", ["verb", "resource", "code"],
                                    registry=self.registry)
        # A Pod's start path, step by step: its first status (the worker began) → the status saying
        # Running is handed to the reporter ("run") → that status is written ("report").
        self.start_steps = Histogram("wasmlet_pod_start_step_seconds", "A Pod's start, by step (run, report).",
                                     ["step"], buckets=START_BUCKETS, registry=self.registry)
        self.http = HttpMetrics(self.registry)
        # The kubelet's prober_probe_total, by its label values (Startup/Liveness/Readiness; successful/failed).
        self.probes = Counter("wasmlet_probe_results", "Probe attempts, by probe type and result.",
                              ["probe_type", "result"], registry=self.registry)
        # The agent's own health: memory, CPU and open files (process_*), its threads (the runtimes'
        # native ones included) and its asyncio tasks, so a leak shows on a dashboard (bench/soak.py).
        ProcessCollector(registry=self.registry)
        Gauge("wasmlet_agent_threads", "Threads of the agent process, native ones included.",
              registry=self.registry).set_function(_threads)
        Gauge("wasmlet_agent_asyncio_tasks", "asyncio tasks of the agent's event loop.",
              registry=self.registry).set_function(_tasks)


def _threads() -> float:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return float("nan")


def _tasks() -> float:
    """Tasks of the loop that serves /metrics (scrapes run on it)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop in this thread
        return float("nan")
