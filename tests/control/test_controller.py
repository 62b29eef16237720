"""The reconcile loop, stepped with `tick()` against an in-memory runtime."""

from __future__ import annotations

import pytest

from nuvem.control.controller import Controller
from nuvem.control.deployment import Deployment, start_backoff
from nuvem.errors import Conflict
from nuvem.metrics.registry import Metrics
from nuvem.runtime import fake
from nuvem.runtime.logbook import LogBook
from nuvem.stores.memory import MemoryRecordStore
from support import FakeClock, PlatformEnvironments, echo_runtime, settle, spec

pytestmark = pytest.mark.anyio


Parts = tuple[Controller, fake.FakeRuntime, FakeClock, MemoryRecordStore]


@pytest.fixture
def parts() -> Parts:
    runtime = echo_runtime()
    clock = FakeClock()
    records = MemoryRecordStore()
    controller = Controller(
        records, runtime, PlatformEnvironments(), LogBook(), Metrics(), clock=clock
    )
    return controller, runtime, clock, records


async def test_tick_starts_desired_replicas(parts: Parts) -> None:
    controller, _runtime, _, records = parts
    deployment = controller.deploy(spec(scaling={"min": 2, "max": 4}))
    await controller.tick()
    await settle(controller)
    assert len(deployment.ready()) == 2
    record = records.get_function("f")
    assert record is not None
    assert record.replicas == 2


async def test_scale_within_bounds_and_down(parts: Parts) -> None:
    controller, _, _, _ = parts
    deployment = controller.deploy(spec(scaling={"min": 1, "max": 3}))
    await controller.tick()
    await settle(controller)
    controller.scale("f", 3)
    await controller.tick()
    await settle(controller)
    assert len(deployment.ready()) == 3
    with pytest.raises(Conflict, match="min 1, max 3"):
        controller.scale("f", 4)
    controller.scale("f", 1)
    await controller.tick()
    await settle(controller)
    assert len(deployment.replicas) == 1
    kinds = [e.kind for e in controller.records.list_events("f")]
    assert kinds.count("scaled") == 2


async def test_dead_replica_is_replaced_and_counted(parts: Parts) -> None:
    controller, runtime, _, _ = parts
    deployment = controller.deploy(spec())
    await controller.tick()
    await settle(controller)
    victim = deployment.ready()[0]
    assert isinstance(victim, fake.FakeReplica)
    victim.crash()  # as if SIGKILLed
    await settle(controller)
    await controller.tick()
    await settle(controller)
    assert victim not in deployment.replicas
    assert len(deployment.ready()) == 1
    assert len(runtime.started) == 2
    died = [e for e in controller.records.list_events("f") if e.kind == "replica_died"]
    assert "killed by SIGKILL" in died[0].message


async def test_failed_starts_back_off_on_the_clock(parts: Parts) -> None:
    controller, runtime, clock, _ = parts
    runtime.fail_next = 2
    deployment = controller.deploy(spec())
    await controller.tick()
    await settle(controller)
    assert deployment.failures == 1
    assert deployment.unavailable_reason() is not None
    await controller.tick()  # within the back-off: no new attempt
    await settle(controller)
    assert deployment.failures == 1
    clock.now += start_backoff(1)
    await controller.tick()
    await settle(controller)
    assert deployment.failures == 2
    clock.now += start_backoff(2)
    await controller.tick()
    await settle(controller)
    assert deployment.failures == 0
    assert len(deployment.ready()) == 1


def test_backoff_grows_and_is_bounded() -> None:
    delays = [start_backoff(n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == 0.5
    assert max(delays) == 30.0


async def test_update_replaces_replicas_after_new_ones_are_ready(parts: Parts) -> None:
    controller, _runtime, _, _ = parts
    deployment = controller.deploy(spec())
    await controller.tick()
    await settle(controller)
    old = deployment.ready()[0]
    controller.deploy(spec(env={"V": "2"}))
    await controller.tick()
    await settle(controller)
    await controller.tick()
    await settle(controller)
    assert old not in deployment.replicas
    assert old.retired
    assert len(deployment.ready()) == 1
    assert deployment.ready()[0].fingerprint == deployment.spec.fingerprint()


async def test_one_failing_function_does_not_stop_others(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, _, _, _ = parts
    controller.deploy(spec(name="bad"))
    good = controller.deploy(spec(name="good"))
    original = controller._reconcile

    def reconcile(deployment: Deployment) -> None:
        if deployment.name == "bad":
            raise RuntimeError("boom")
        original(deployment)

    monkeypatch.setattr(controller, "_reconcile", reconcile)
    await controller.tick()
    await settle(controller)
    assert len(good.ready()) == 1


async def test_restart_restores_records(parts: Parts) -> None:
    controller, _runtime, clock, records = parts
    controller.deploy(spec(scaling={"min": 1, "max": 3}))
    controller.scale("f", 2)
    again = Controller(
        records, echo_runtime(), PlatformEnvironments(), LogBook(), Metrics(), clock=clock
    )
    await again.start()
    await settle(again)
    assert len(again.get("f").ready()) == 2
    await again.stop(grace=0.1)
