"""The operator's Prometheus metrics, on a registry of its own (no process-global collectors).

Served at `OperatorSettings.metrics_endpoint` (e.g. http://0.0.0.0:9090/metrics) by the
composition root; every layer that counts something gets the one `OperatorMetrics` instance.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Reconcile durations: a pass over cached state takes milliseconds; API writes add round trips.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class OperatorMetrics:
    """Counters, gauges and histograms of the operator (names under `wasmlet_operator_`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "wasmlet_operator_reconciles", "Reconcile passes, by result (success, retry, error).",
            ["result"], registry=r)
        self.errors = Counter(
            "wasmlet_operator_reconcile_errors", "Failed reconcile passes, by kind (retryable, permanent, crash).",
            ["kind"], registry=r)
        self.duration = Histogram(
            "wasmlet_operator_reconcile_duration_seconds", "Time of one reconcile pass.",
            buckets=DURATION_BUCKETS, registry=r)
        self.placements = Counter(
            "wasmlet_operator_placements", "Replicas placed on a node (one Pod created each).", registry=r)
        self.deletions = Counter(
            "wasmlet_operator_pod_deletions", "Pods deleted, by cause (scale, update, failed, lost-node).",
            ["cause"], registry=r)
        self.unschedulable = Gauge(
            "wasmlet_operator_unschedulable_workloads", "Workloads with replicas that no node fits.", registry=r)
        self.workloads = Gauge(
            "wasmlet_operator_workloads", "WasmWorkloads the operator knows.", registry=r)
        self.queue_depth = Gauge(
            "wasmlet_operator_queue_depth", "Workloads waiting for a reconcile.", registry=r)
        self.active = Gauge(
            "wasmlet_operator_active", "1 while this replica is the active one (peering), else 0.", registry=r)
        self.api_writes = Counter(
            "wasmlet_operator_api_writes", "Write requests to the API server, by verb and resource.",
            ["verb", "resource"], registry=r)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return bytes(generate_latest(self.registry))
