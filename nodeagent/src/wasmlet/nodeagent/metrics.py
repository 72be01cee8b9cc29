"""The agent's Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Start latency is milliseconds for a warm module: buckets resolve 1 ms to 10 s.
START_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
