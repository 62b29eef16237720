"""Every metric nuvem exports. OpenFaaS names where one exists, `nuvem_` for our own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nuvem.metrics.node_gauges import NodeGauges, NodeSeen
from nuvem.metrics.scrape_gauge import Read, ScrapeGauge

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
# What a replica start that waits for room can be short of (runtime.replica.Pending.short).
PENDING_SHORTS = ("cpu", "gpu", "memory", "labels", "nodes", "busy")


@dataclass
class Metrics:
    """One registry per platform instance, so tests can run several side by side."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())

    def __post_init__(self) -> None:
        r = self.registry
        self.invocations = Counter(
            "gateway_function_invocation",
            "Function invocations by status code",
            ["function_name", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_functions_seconds",
            "Function invocation duration in seconds, queueing included",
            ["function_name", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.service_count = Gauge(
            "gateway_service_count", "Ready replicas per function", ["function_name"], registry=r
        )
        self.inflight = Gauge(
            "nuvem_function_inflight", "Calls running on replicas", ["function_name"], registry=r
        )
        self.queued = Gauge(
            "nuvem_function_queue_depth",
            "Calls waiting for a free replica",
            ["function_name"],
            registry=r,
        )
        # The alert rules compare with these: queue depth against its capacity, latency
        # against the call's deadline (metrics/alert_rules.py).
        self.queue_capacity = Gauge(
            "nuvem_function_queue_capacity",
            "Calls that may wait for a free replica before new ones are refused (max_queue)",
            ["function_name"],
            registry=r,
        )
        self.timeout = Gauge(
            "nuvem_function_timeout_seconds",
            "Deadline of one call, queueing included (the function's timeout)",
            ["function_name"],
            registry=r,
        )
        self.replicas = Gauge(
            "nuvem_replicas", "Replicas by state", ["function_name", "state"], registry=r
        )
        self.pending = Gauge(
            "nuvem_replicas_pending",
            "Replica starts that no node has room for yet, by what is short "
            "(cpu, gpu, memory, labels, nodes, busy)",
            ["function_name", "short"],
            registry=r,
        )
        self.desired = Gauge(
            "nuvem_replicas_desired", "Desired replicas", ["function_name"], registry=r
        )
        self.restarts = Counter(
            "nuvem_replica_restarts",
            "Replicas that died unexpectedly and were replaced",
            ["function_name", "cause"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "nuvem_controller_tick_seconds",
            "Duration of one controller reconcile step",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scaling_decisions = Counter(
            "nuvem_scaling_decisions",
            "Changes of a function's desired replicas, by who made them (autoscaled, scaled, "
            "alert) and direction",
            ["function_name", "kind", "direction"],
            registry=r,
        )
        self.cold_start = Histogram(
            "nuvem_cold_start_seconds",
            "Time from a call that found no replica ready (e.g. at zero) to its answer",
            ["function_name"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replica_start_seconds = Histogram(
            "nuvem_replica_start_seconds",
            "Time from starting a replica's process (its environment ready) until it serves",
            ["function_name"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Label lookups cost more than the increment itself; keep the children per call kind.
        self._call_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.environment_build_seconds = Histogram(
            "nuvem_environment_build_seconds",
            "Time to build a function's virtual environment",
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )

    def watch_jobs(self, read: Read) -> None:
        """Async jobs by (function_name, state), read from the job store at each scrape."""
        self.registry.register(
            ScrapeGauge(
                "nuvem_jobs",
                "Async jobs in the store by state (queued, running, succeeded, failed, "
                "cancelled, dead_letter); every gateway sharing the store reports the same",
                ["function_name", "state"],
                read,
            )
        )

    def watch_nodes(self, read: Callable[[], Sequence[NodeSeen]]) -> None:
        """`nuvem_nodes{state}` and `nuvem_nodes_lost`, read from the engine at each scrape."""
        self.registry.register(NodeGauges(read))

    def observe_call(self, function: str, code: int, seconds: float) -> None:
        children = self._call_children.get((function, code))
        if children is None:
            label = str(code)
            children = (
                self.invocations.labels(function, label),
                self.duration.labels(function, label),
            )
            self._call_children[(function, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def forget_function(self, function: str) -> None:
        for key in [k for k in self._call_children if k[0] == function]:
            del self._call_children[key]


@dataclass
class InfluxMetrics:
    """The InfluxDB export's own health, on the platform's registry while it runs."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.sent = Counter("nuvem_influxdb_points_sent", "Points InfluxDB accepted", registry=r)
        self.dropped = Counter(
            "nuvem_influxdb_points_dropped",
            "Points given up: buffer_full (the oldest, while InfluxDB was unreachable) or "
            "refused (InfluxDB rejected their batch as bad data)",
            ["reason"],
            registry=r,
        )
        self.buffered = Gauge(
            "nuvem_influxdb_points_buffered", "Points waiting to be written", registry=r
        )
        self.last_success = Gauge(
            "nuvem_influxdb_last_success_timestamp_seconds",
            "When InfluxDB last accepted a batch (Unix time; 0: never)",
            registry=r,
        )
        for reason in ("buffer_full", "refused"):
            self.dropped.labels(reason)  # both series exist from the start, at 0
