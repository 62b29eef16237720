"""`Sampler`: the one snapshot of the platform every dashboard tab is fed from.

Once a step (a second) it reads the latency histogram from the metrics registry (calls,
5xx answers and latency buckets per function, every status code summed), the deployments'
replica and queue counts (plain attribute reads: the router is never locked or awaited),
and the events added since the last step. It turns them into per-function rates and
quantiles over a short window, appends a chart point to each function's 15-minute series,
and serializes the whole snapshot once, so ten open tabs cost one snapshot, not ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nuvem.cluster.engine import Engine
from nuvem.cluster.membership import NodeState
from nuvem.control.deployment import Deployment
from nuvem.gateway.schemas import function_status
from nuvem.gateway.ui.series import Series
from nuvem.gateway.ui.window import Rates, Reading, Window
from nuvem.metrics.registry import LATENCY_BUCKETS, Metrics
from nuvem.runtime.replica import Replica
from nuvem.stores.records import EventRecord, RecordStore

log = logging.getLogger(__name__)

HISTORY_SECONDS = 15 * 60.0
POINT_EVERY = 2.0  # seconds between two points of a function's history
RATE_WINDOW = 10.0  # seconds the rates and quantiles are computed over
EVENTS_KEPT = 30
NODES_EVERY = 5  # steps between two readings of the nodes (a cluster call, off the loop)
MEMORY_EVERY = 5  # steps between two readings of a replica's memory (a /proc read each)


@dataclass
class _Counts:
    calls: float = 0.0
    errors: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))


def read_histogram(metrics: Metrics) -> dict[str, _Counts]:
    """Per function: calls, 5xx answers and cumulative latency buckets, codes summed.

    Read from the histogram's children, not `collect()`: collect builds a sample tuple
    and formats a label for each of the ~20 series of every (function, code) child, some
    6,000 objects a second at 100 functions (130 ms here). The children's bucket values
    are the same numbers, one lock-free `get()` each. prometheus_client is pinned; a test
    holds this reading equal to collect()'s, so an upgrade that changes them fails it.
    """
    counts: dict[str, _Counts] = {}
    children: Mapping[Sequence[str], Any] = metrics.duration._metrics
    for labels, child in list(children.items()):
        name, code = labels
        entry = counts.get(name)
        if entry is None:
            entry = counts[name] = _Counts()
        total = entry.buckets
        running = 0.0
        for slot, value in enumerate(child._buckets):
            running += value.get()
            total[slot] += running
        entry.calls += running
        if code.startswith("5"):
            entry.errors += running
    return counts


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


class Sampler:
    """Samples the platform once a `step`; `latest` is the serialized snapshot."""

    def __init__(
        self,
        metrics: Metrics,
        deployments: Callable[[], Mapping[str, Deployment]],
        clock: Callable[[], float] = time.time,
        step: float = 1.0,
        history: float = HISTORY_SECONDS,
        point_every: float = POINT_EVERY,
        window: float = RATE_WINDOW,
    ) -> None:
        self.metrics = metrics
        self.deployments = deployments
        self.clock = clock
        self.step = step
        self.point_every = point_every
        self.window = window
        self.capacity = max(1, math.ceil(history / point_every))
        self._windows: dict[str, Window] = {}
        self._series: dict[str, Series] = {}
        self._last_point: dict[str, float] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.last_event_id = 0
        self.nodes: dict[str, int] = {}
        self.version = 0
        self._memory: dict[str, int | None] = {}  # by replica id, read every MEMORY_EVERY
        self.latest = b"{}"
        self.seconds = 0.0  # what the last tick cost, for /ui/stream's readers and the bench
        self.closed = False  # the gateway is stopping: streams end so they do not hold it
        self._changed = asyncio.Event()

    # -- one step --------------------------------------------------------------------------

    def tick(self, events: Iterable[EventRecord] = ()) -> bytes:
        started = time.perf_counter()
        now = self.clock()
        for event in events:
            self.last_event_id = max(self.last_event_id, event.id)
            self.events.appendleft(_event(event))
        counts = read_histogram(self.metrics)
        deployments = self.deployments()
        if self.version % MEMORY_EVERY == 0:
            self._memory.clear()
        functions = [
            self._function(d, counts.get(d.name), now)
            for d in sorted(deployments.values(), key=lambda d: d.name)
        ]
        for gone in set(self._windows) - set(deployments):
            self._windows.pop(gone, None)
            self._series.pop(gone, None)
            self._last_point.pop(gone, None)
        snapshot = {
            "time": now,
            "functions": functions,
            "events": list(self.events),
            "nodes": self.nodes,
        }
        self.latest = json.dumps(snapshot, separators=(",", ":")).encode()
        self.version += 1
        self._wake()
        self.seconds = time.perf_counter() - started
        return self.latest

    def _function(
        self, deployment: Deployment, counts: _Counts | None, now: float
    ) -> dict[str, Any]:
        name = deployment.name
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = Window(LATENCY_BUCKETS, self.window)
        if counts is not None:
            window.add(Reading(now, counts.calls, counts.errors, tuple(counts.buckets)))
        else:
            window.add(Reading(now, 0.0, 0.0, (0.0,) * (len(LATENCY_BUCKETS) + 1)))
        rates = window.rates()
        ready = len(deployment.ready())
        router = deployment.router
        values = _values(rates, router.queued, router.inflight, ready, deployment.desired)
        if now - self._last_point.get(name, -math.inf) >= self.point_every:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = Series(self.capacity)
            series.add(now, values)
            self._last_point[name] = now
        scaling = deployment.spec.scaling
        decision = deployment.decision
        return {
            "name": name,
            "status": function_status(deployment, ready),
            "calls": counts.calls if counts is not None else 0.0,
            "min": scaling.min,
            "max": scaling.max,
            "starting": deployment.starting,
            "error": deployment.last_error,
            "decision": decision.reason if decision is not None else None,
            "replicas": [
                {
                    "id": r.id,
                    "state": r.state.value,
                    "node": r.node,
                    "pid": r.pid,
                    "inflight": r.inflight,
                    "memory": self._memory_of(r),
                }
                for r in deployment.replicas
            ],
            **{key: _round(value) for key, value in values.items()},
        }

    def _memory_of(self, replica: Replica) -> int | None:
        if replica.id not in self._memory:
            self._memory[replica.id] = replica.memory()
        return self._memory[replica.id]

    def history(self, name: str, since: float = -math.inf) -> dict[str, list[float | None]]:
        series = self._series.get(name)
        if series is None:
            return {"time": []}
        return series.columns(since)

    async def run(self, records: RecordStore, engine: Engine) -> None:
        """Tick once a step until cancelled; the records and the engine are read in a
        thread, since a PostgreSQL store or a Ray cluster answers over the network."""
        steps = 0
        while True:
            try:
                if self.last_event_id:
                    found = records.list_events
                    events = await asyncio.to_thread(found, None, self.last_event_id, 100)
                else:
                    events = await asyncio.to_thread(records.list_events, None, 0, EVENTS_KEPT)
                if steps % NODES_EVERY == 0:
                    nodes = await asyncio.to_thread(engine.nodes)
                    alive = sum(1 for n in nodes if n.state is NodeState.ALIVE)
                    self.nodes = {"alive": alive, "total": len(nodes)}
                self.tick(events)
            except Exception:  # the dashboard must not take the gateway down with it
                log.exception("the dashboard's snapshot failed; trying again next step")
            steps += 1
            await asyncio.sleep(self.step)  # the beat of the feed, not a wait for a condition

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """End every stream (the gateway is stopping; an open tab must not hold the drain)."""
        self.closed = True
        self._wake()

    async def changed(self, version: int, within: float) -> bool:
        """Wait until a snapshot newer than `version` is out (True), or `within` seconds
        (False), or the sampler is closed (False)."""
        if self.version != version or self.closed:
            return self.version != version
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)
        return self.version != version


def _values(rates: Rates, queued: int, inflight: int, ready: int, desired: int) -> dict[str, Any]:
    return {
        "rps": rates.rps,
        "errors": rates.errors,
        "p50": rates.p50,
        "p99": rates.p99,
        "queued": float(queued),
        "inflight": float(inflight),
        "ready": float(ready),
        "desired": float(desired),
    }


def _event(event: EventRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time,
        "kind": event.kind,
        "function": event.function,
        "message": event.message,
    }
