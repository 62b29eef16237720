"""The shared snapshot: read from a real metrics registry and a controller on fakes."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.control.controller import Controller
from nuvem.gateway.ui.snapshot import Sampler, read_histogram
from nuvem.metrics.registry import LATENCY_BUCKETS, Metrics
from nuvem.runtime.logbook import LogBook
from nuvem.stores.memory import MemoryRecordStore
from support import FakeClock, PlatformEnvironments, echo_runtime, settle, spec

pytestmark = pytest.mark.anyio


async def _controller(*names: str) -> tuple[Controller, Metrics]:
    metrics = Metrics()
    records = MemoryRecordStore()
    controller = Controller(
        records, echo_runtime(), PlatformEnvironments(), LogBook(), metrics, clock=FakeClock()
    )
    for name in names:
        controller.deploy(spec(name=name, scaling={"min": 2, "max": 3}))
    await controller.tick()
    await settle(controller)
    return controller, metrics


async def test_rates_quantiles_and_replicas_per_function() -> None:
    controller, metrics = await _controller("a", "b")
    clock = FakeClock(1000.0)
    sampler = Sampler(metrics, lambda: controller.deployments, clock=clock)
    sampler.tick()
    for _ in range(20):
        metrics.observe_call("a", 200, 0.004)  # between the 2.5 ms and 5 ms bounds
    for _ in range(5):
        metrics.observe_call("a", 503, 0.2)
    clock.advance(5.0)
    snapshot = json.loads(sampler.tick())
    a, b = snapshot["functions"]
    assert (a["name"], b["name"]) == ("a", "b")
    assert a["rps"] == 5.0  # 25 calls in 5 s
    assert a["errors"] == 1.0
    assert 0.0025 < a["p50"] <= 0.005
    assert 0.1 < a["p99"] <= 0.25
    assert (a["ready"], a["desired"], a["status"]) == (2, 2, "ready")
    assert [r["state"] for r in a["replicas"]] == ["ready", "ready"]
    assert b["rps"] == 0.0
    assert b["p50"] is None
    assert [e["kind"] for e in snapshot["events"]] == []  # events come from run(), not tick()
    await controller.stop(grace=0.1)


async def test_history_and_removed_functions() -> None:
    controller, metrics = await _controller("a")
    clock = FakeClock(0.0)
    sampler = Sampler(metrics, lambda: controller.deployments, clock=clock, point_every=2.0)
    for _ in range(6):  # a point every other step
        sampler.tick()
        clock.advance(1.0)
    columns = sampler.history("a")
    assert columns["time"] == [0.0, 2.0, 4.0]
    assert columns["ready"] == [2.0, 2.0, 2.0]
    await controller.remove("a")
    sampler.tick()
    assert sampler.history("a") == {"time": []}
    await controller.stop(grace=0.1)


async def test_each_tick_wakes_every_waiting_reader() -> None:
    controller, metrics = await _controller("a")
    sampler = Sampler(metrics, lambda: controller.deployments, clock=FakeClock())
    readers = [asyncio.create_task(sampler.changed(sampler.version, 10.0)) for _ in range(10)]
    await asyncio.sleep(0)
    sampler.tick()
    assert await asyncio.gather(*readers) == [True] * 10
    assert not await sampler.changed(sampler.version, 0.01)  # nothing newer: times out
    await controller.stop(grace=0.1)


def _from_collect(metrics: Metrics) -> dict[str, tuple[float, float, list[float]]]:
    """The same numbers through prometheus_client's public collect()."""
    found: dict[str, tuple[float, float, list[float]]] = {}
    for family in metrics.duration.collect():
        for sample in family.samples:
            name = sample.labels["function_name"]
            calls, errors, buckets = found.get(name, (0.0, 0.0, []))
            if sample.name.endswith("_bucket"):
                bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
                if not buckets:
                    buckets = [0.0] * len(bounds)
                le = sample.labels["le"]
                slot = len(bounds) - 1 if le == "+Inf" else LATENCY_BUCKETS.index(float(le))
                buckets[slot] += sample.value
            elif sample.name.endswith("_count"):
                calls += sample.value
                errors += sample.value if sample.labels["code"].startswith("5") else 0.0
            found[name] = (calls, errors, buckets)
    return found


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([200, 404, 429, 500, 503]),
            st.floats(min_value=0.0, max_value=400.0),
        ),
        max_size=60,
    )
)
def test_reading_the_children_equals_collect(calls: list[tuple[str, int, float]]) -> None:
    metrics = Metrics()
    for name, code, seconds in calls:
        metrics.observe_call(name, code, seconds)
    fast = {n: (c.calls, c.errors, c.buckets) for n, c in read_histogram(metrics).items()}
    assert fast == _from_collect(metrics)
