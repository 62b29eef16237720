"""`MetricsExport`: a deployment's gauges, set once per tick, and forgotten on removal."""

from __future__ import annotations

import contextlib

from nuvem.control.deployment import PENDING, Deployment
from nuvem.metrics.registry import PENDING_SHORTS, Metrics
from nuvem.runtime.replica_state import ReplicaState


class MetricsExport:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._shown: dict[str, set[str]] = {}  # function -> pending reasons it has a series of

    def export(self, deployment: Deployment) -> None:
        name = deployment.name
        m = self.metrics
        m.service_count.labels(name).set(len(deployment.ready()))
        m.desired.labels(name).set(deployment.desired)
        m.inflight.labels(name).set(deployment.router.inflight)
        m.queued.labels(name).set(deployment.router.queued)
        m.queue_capacity.labels(name).set(deployment.router.max_queue)
        m.timeout.labels(name).set(deployment.spec.timeout)
        for state, count in deployment.state_counts().items():
            m.replicas.labels(name, state).set(count)
        # Every kind, zeros included: a dashboard panel on what is short has a series on a
        # platform where nothing ever waits (one machine) too.
        short = {kind: 0 for kind in (*PENDING_SHORTS, *self._shown.get(name, set()))}
        for pending in deployment.pending:
            short[pending.short] = short.get(pending.short, 0) + 1
        for kind, count in short.items():
            m.pending.labels(name, kind).set(count)
        self._shown[name] = set(short)

    def forget(self, name: str) -> None:
        """Drop every series of a removed function, so none lingers at its last value."""
        m = self.metrics
        m.forget_function(name)
        per_function = (
            m.service_count,
            m.desired,
            m.inflight,
            m.queued,
            m.queue_capacity,
            m.timeout,
        )
        for metric in (*per_function, m.cold_start, m.replica_start_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(name)
        for state in (*(s.value for s in ReplicaState), PENDING):
            with contextlib.suppress(KeyError):
                m.replicas.remove(name, state)
        for kind in self._shown.pop(name, set()):
            with contextlib.suppress(KeyError):
                m.pending.remove(name, kind)
