"""The autoscaler inside the reconcile loop, stepped with `tick()` on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from nuvem.control.controller import Controller
from nuvem.control.deployment import Deployment
from nuvem.metrics.registry import Metrics
from nuvem.routing.router import Routable
from nuvem.runtime.fake import FakeRuntime
from nuvem.runtime.logbook import LogBook
from nuvem.stores.memory import MemoryRecordStore
from support import FakeClock, PlatformEnvironments, echo_runtime, settle, spec

pytestmark = pytest.mark.anyio

SCALING = {
    "min": 1,
    "max": 6,
    "mode": "concurrency",
    "panic_window_s": 2,
    "stable_window_s": 20,
    "scale_down_delay_s": 10,
    "zero_after_s": 5,
}


Parts = tuple[Controller, FakeClock, MemoryRecordStore, Metrics]


@pytest.fixture
def parts() -> Parts:
    clock = FakeClock()
    records = MemoryRecordStore()
    metrics = Metrics()
    controller = Controller(
        records, echo_runtime(), PlatformEnvironments(), LogBook(), metrics, clock=clock
    )
    return controller, clock, records, metrics


async def step(controller: Controller, clock: FakeClock, seconds: float = 1.0) -> None:
    clock.now += seconds
    await controller.tick()
    await settle(controller)


class Load:
    """Calls holding slots on a function's router, as the gateway's dispatch would."""

    def __init__(self, deployment: Deployment) -> None:
        self.router = deployment.router
        self.held: list[Routable] = []
        self.waiting: list[asyncio.Task[Routable]] = []

    def add(self, calls: int) -> None:
        for _ in range(calls):
            self.router.arrivals += 1
            self.waiting.append(asyncio.create_task(self.router.acquire(deadline=1e9)))

    async def collect(self) -> None:
        await asyncio.sleep(0)
        for task in [t for t in self.waiting if t.done()]:
            self.held.append(task.result())
            self.waiting.remove(task)

    def finish(self) -> None:
        for replica in self.held:
            self.router.release(replica)
        self.held.clear()


async def test_a_burst_is_met_in_one_step_held_steady_then_released_slowly(parts: Parts) -> None:
    controller, clock, records, metrics = parts
    deployment = controller.deploy(spec(max_inflight=1, scaling=SCALING))
    await step(controller, clock)
    assert len(deployment.ready()) == 1
    load = Load(deployment)
    load.add(4)
    await load.collect()
    assert (len(load.held), len(load.waiting)) == (1, 3)

    await step(controller, clock)  # the first tick after the burst sizes for all of it
    assert deployment.desired == 4
    await load.collect()
    assert (len(deployment.ready()), len(load.held), len(load.waiting)) == (4, 4, 0)
    event = [e for e in records.list_events("f") if e.kind == "autoscaled"][-1]
    assert "scale up 1 -> 4" in event.message
    assert event.data == {"from": 1, "to": 4, "reason": event.message.removeprefix("f: ")}

    for _ in range(40):  # constant load: not one change
        await step(controller, clock)
        assert deployment.desired == 4

    load.finish()
    history = []
    for _ in range(40):
        await step(controller, clock)
        history.append(deployment.desired)
    assert history[:9] == [4] * 9  # scale_down_delay_s holds the count after the burst ends
    assert history == sorted(history, reverse=True)  # then down only, step by step
    assert history[-1] == 1  # to min, never below
    assert len(deployment.replicas) == 1
    decisions = metrics.scaling_decisions.labels("f", "autoscaled", "down")._value.get()
    assert decisions >= 2


async def test_idle_function_goes_to_zero_and_a_call_wakes_it_at_once(parts: Parts) -> None:
    controller, clock, _, _ = parts
    deployment = controller.deploy(spec(scaling={**SCALING, "min": 0}))
    await step(controller, clock)
    assert deployment.desired == 1  # a deploy proves the handler loads, even with min 0
    for _ in range(4):
        await step(controller, clock)
    assert deployment.desired == 1
    await step(controller, clock)  # idle for zero_after_s
    assert deployment.desired == 0
    assert deployment.replicas == []
    assert deployment.unavailable_reason() is None  # calls wait instead of failing

    controller._wake.clear()
    load = Load(deployment)
    load.add(1)
    await load.collect()
    assert controller._wake.is_set()  # the waiting call woke the loop: no wait for a tick
    await controller.tick()  # the woken tick, at the same instant
    await settle(controller)
    await load.collect()
    assert deployment.desired == 1
    assert len(load.held) == 1


async def test_manual_scale_is_a_nudge_the_autoscaler_takes_over(parts: Parts) -> None:
    controller, clock, records, _ = parts
    deployment = controller.deploy(spec(scaling=SCALING))
    await step(controller, clock)
    controller.scale("f", 5)
    await step(controller, clock, 0)
    assert len(deployment.ready()) == 5
    for _ in range(9):
        await step(controller, clock)
    assert deployment.desired == 5  # held for scale_down_delay_s after the manual change
    for _ in range(5):
        await step(controller, clock)
    assert deployment.desired == 1
    kinds = [e.kind for e in records.list_events("f")]
    assert kinds.count("scaled") == 1
    assert "autoscaled" in kinds


async def test_without_a_mode_nothing_is_autoscaled(parts: Parts) -> None:
    controller, clock, _, _ = parts
    deployment = controller.deploy(spec(max_inflight=1, scaling={"min": 1, "max": 4}))
    await step(controller, clock)
    load = Load(deployment)
    load.add(5)
    for _ in range(5):
        await step(controller, clock)
    assert deployment.desired == 1
    assert deployment.decision is None


async def test_back_to_back_ticks_start_each_missing_replica_once(parts: Parts) -> None:
    controller, clock, _, _ = parts
    runtime = controller.runtime
    assert isinstance(runtime, FakeRuntime)
    deployment = controller.deploy(spec(scaling={"min": 1, "max": 6}))
    await step(controller, clock)
    controller.scale("f", 5)
    # A woken loop ticks again before the start tasks of the first tick have run.
    await controller.tick()
    await controller.tick()
    await settle(controller)
    assert len(runtime.started) == 5
    assert len(deployment.ready()) == 5
    assert all(not r.retired for r in runtime.started)
