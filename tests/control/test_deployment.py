"""`Deployment`'s transitions: the back-off after failed starts and when it is forgotten."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.control.deployment import Deployment, start_backoff
from nuvem.control.replica_plan import plan
from nuvem.errors import NotFound, RequirementsUnresolvable
from nuvem.routing.router import Router
from nuvem.runtime.fake import FakeReplica, FakeRuntime
from nuvem.runtime.loader import LoadedHandler
from nuvem.runtime.replica import SetupFailed
from support import PLATFORM_PYTHON, spec

pytestmark = pytest.mark.anyio


def deployment(desired: int = 1) -> Deployment:
    return Deployment(spec(), desired, Router("f", 4, 4))


def replica(number: int = 1) -> FakeReplica:
    return FakeReplica(f"f-{number}", spec(), LoadedHandler(lambda r: r.body, False), number)


@given(st.lists(st.booleans(), max_size=30), st.floats(0, 1e6))
def test_back_off_grows_with_consecutive_failures_and_resets_after_a_start(
    outcomes: list[bool], now: float
) -> None:
    d = deployment()
    failed_in_a_row = 0
    for number, ok in enumerate(outcomes):
        d.start_requested()
        if ok:
            assert d.started(replica(number))
            failed_in_a_row = 0
            assert (d.failures, d.last_error) == (0, None)
        else:
            d.start_failed(SetupFailed(f"attempt {number} failed"), now)
            failed_in_a_row += 1
            assert d.failures == failed_in_a_row
            assert d.retry_at == now + start_backoff(failed_in_a_row)
            assert d.last_error == f"attempt {number} failed"
        assert d.starting == 0


def test_a_changed_spec_forgets_past_failures_and_the_same_one_does_not() -> None:
    d = deployment()
    d.start_requested()
    d.start_failed(SetupFailed("broken"), now=10.0)
    d.respec(spec(), 1)
    assert (d.failures, d.last_error) == (1, "broken")
    d.respec(spec(env={"FIX": "1"}), 2)
    assert (d.failures, d.retry_at, d.last_error, d.desired) == (0, 0.0, None, 2)


def test_requirements_that_cannot_resolve_are_not_retried_until_a_deploy() -> None:
    d = deployment()
    d.start_requested()
    d.start_failed(RequirementsUnresolvable("nosuch==1 is not on the index"), now=10.0)
    assert d.retry_at == math.inf
    assert plan(d.view(1e9)).start == 0  # however long it waits
    d.respec(spec(), 1)  # the same spec deployed again: the user asks to try once more
    assert (d.failures, d.retry_at, d.last_error) == (0, 0.0, None)
    assert plan(d.view(10.0)).start == 1


async def test_a_failed_start_fails_waiting_calls_only_when_nothing_can_serve() -> None:
    d = deployment()
    waiting = asyncio.ensure_future(d.router.acquire(deadline=1e9))
    await asyncio.sleep(0)
    d.start_requested()
    d.start_requested()
    d.start_failed(SetupFailed("first"), now=0.0)  # another start is under way
    await asyncio.sleep(0)
    assert not waiting.done()
    d.start_failed(SetupFailed("second"), now=0.0)
    with pytest.raises(SetupFailed, match="second"):
        await waiting
    assert d.unavailable_reason() == "second"


async def test_a_replica_that_dies_unasked_is_a_failure_a_retired_one_is_not() -> None:
    d = deployment(2)
    runtime = FakeRuntime(handler=lambda r: r.body)
    crashed, retired = [await runtime.start(spec(), PLATFORM_PYTHON, f"f-{n}") for n in (1, 2)]
    for r in (crashed, retired):
        d.start_requested()
        assert d.started(r)
    assert d.view(now=0.0).replicas[1].id == retired.id
    assert d.retire(retired.id) is retired
    assert [r.id for r in d.view(now=0.0).replicas] == [crashed.id]  # no longer planned on
    await retired.drain_and_stop(1.0)
    crashed.crash()
    assert d.replica_exited(crashed)
    assert not d.replica_exited(retired)
    assert d.replicas == []
    assert d.router.replicas == []


async def test_removed_refuses_calls_and_late_starts() -> None:
    d = deployment()
    waiting = asyncio.ensure_future(d.router.acquire(deadline=1e9))
    await asyncio.sleep(0)
    d.start_requested()
    d.remove(NotFound("function 'f' was removed"))
    with pytest.raises(NotFound):
        await waiting
    assert not d.started(replica())
    assert d.replicas == []
    assert d.unavailable_reason() == "function 'f' was removed"


def test_counts_calls() -> None:
    d = deployment()
    d.count_call()
    d.count_call()
    assert d.invocations == 2


def test_no_one_else_writes_its_fields() -> None:
    d = deployment()
    for field in ("desired", "failures", "retry_at", "last_error", "starting", "removed"):
        with pytest.raises(AttributeError):
            setattr(d, field, 1)
