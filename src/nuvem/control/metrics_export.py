"""`MetricsExport`: a deployment's gauges, set once per tick, and forgotten on removal."""

from __future__ import annotations

import contextlib

from nuvem.control.deployment import Deployment
from nuvem.metrics.registry import Metrics
from nuvem.runtime.replica_state import ReplicaState


class MetricsExport:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def export(self, deployment: Deployment) -> None:
        name = deployment.name
        m = self.metrics
        m.service_count.labels(name).set(len(deployment.ready()))
        m.desired.labels(name).set(deployment.desired)
        m.inflight.labels(name).set(deployment.router.inflight)
        m.queued.labels(name).set(deployment.router.queued)
        for state, count in deployment.state_counts().items():
            m.replicas.labels(name, state).set(count)

    def forget(self, name: str) -> None:
        """Drop every series of a removed function, so none lingers at its last value."""
        m = self.metrics
        m.forget_function(name)
        per_function = (m.service_count, m.desired, m.inflight, m.queued)
        for metric in (*per_function, m.cold_start, m.replica_start_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(name)
        for state in ReplicaState:
            with contextlib.suppress(KeyError):
                m.replicas.remove(name, state.value)
