"""The router alone, with in-memory replicas and a fake clock: no processes, no sleeping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.errors import DeadlineExceeded, Overloaded
from nuvem.routing.router import Router
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult
from nuvem.runtime.replica_state import ReplicaState
from support import FakeClock

pytestmark = pytest.mark.anyio


@dataclass(eq=False)
class FakeReplica:
    id: str
    state: ReplicaState = ReplicaState.READY
    inflight: int = 0
    calls: list[bytes] = field(default_factory=list)

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        self.calls.append(body)
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        future.set_result(CallResult(200, [], body))
        return future


async def test_picks_ready_replica_with_fewest_inflight() -> None:
    router = Router("f", max_inflight=4, max_queue=10, clock=FakeClock(100.0))
    a, b, c = FakeReplica("a", inflight=2), FakeReplica("b", inflight=1), FakeReplica("c")
    c.state = ReplicaState.DRAINING
    for replica in (a, b, c):
        router.add(replica)
    chosen = await router.acquire(deadline=1e9)
    assert chosen is b
    assert b.inflight == 2


async def test_full_queue_refuses_at_once_with_retry_hint() -> None:
    router = Router("f", max_inflight=1, max_queue=1, clock=FakeClock(100.0))
    router.add(FakeReplica("a"))
    await router.acquire(1e9)
    waiting = asyncio.create_task(router.acquire(1e9))
    await asyncio.sleep(0)
    assert router.queued == 1
    with pytest.raises(Overloaded) as refused:
        await router.acquire(1e9)
    assert refused.value.retry_after is not None
    assert refused.value.retry_after >= 1
    waiting.cancel()


async def test_release_hands_slot_to_the_oldest_waiter() -> None:
    router = Router("f", max_inflight=1, max_queue=5, clock=FakeClock(100.0))
    replica = FakeReplica("a")
    router.add(replica)
    await router.acquire(1e9)
    first = asyncio.create_task(router.acquire(1e9))
    second = asyncio.create_task(router.acquire(1e9))
    await asyncio.sleep(0)
    router.release(replica)
    assert await first is replica
    assert not second.done()
    assert replica.inflight == 1
    second.cancel()


async def test_waiter_times_out_at_its_deadline() -> None:
    router = Router("f", max_inflight=1, max_queue=5)
    replica = FakeReplica("a")
    router.add(replica)
    await router.acquire(1e12)
    with pytest.raises(DeadlineExceeded):
        await router.acquire(deadline=router._clock() + 0.05)
    # the expired waiter does not take the next free slot
    router.release(replica)
    assert replica.inflight == 0
    assert router.queued == 0


async def test_new_replica_serves_waiting_calls() -> None:
    router = Router("f", max_inflight=1, max_queue=5, clock=FakeClock(100.0))
    waiting = asyncio.create_task(router.acquire(1e9))
    await asyncio.sleep(0)
    assert router.queued == 1
    replica = FakeReplica("late")
    router.add(replica)
    assert await waiting is replica


async def test_fail_waiters_answers_everyone() -> None:
    router = Router("f", max_inflight=1, max_queue=5, clock=FakeClock(100.0))
    waiting = [asyncio.create_task(router.acquire(1e9)) for _ in range(3)]
    await asyncio.sleep(0)
    router.fail_waiters(DeadlineExceeded("gone"))
    for task in waiting:
        with pytest.raises(DeadlineExceeded):
            await task


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=40),
)
def test_never_exceeds_max_inflight(loads: list[int], max_inflight: int, calls: int) -> None:
    async def scenario() -> None:
        router = Router("f", max_inflight=max_inflight, max_queue=1000, clock=FakeClock(100.0))
        replicas = [FakeReplica(str(i), inflight=min(n, max_inflight)) for i, n in enumerate(loads)]
        for replica in replicas:
            router.add(replica)
        free = sum(max_inflight - r.inflight for r in replicas)
        granted = 0
        for _ in range(min(calls, free)):
            before = {replica.id: replica.inflight for replica in replicas}
            chosen = await router.acquire(1e9)
            granted += 1
            assert all(r.inflight <= max_inflight for r in replicas)
            # least outstanding: no ready replica with a free slot has fewer than the chosen
            open_slots = [n for n in before.values() if n < max_inflight]
            assert before[chosen.id] == min(open_slots), (before, chosen.id)
            assert chosen.inflight == before[chosen.id] + 1
        assert granted == min(calls, free)
        assert (
            sum(r.inflight for r in replicas) == sum(min(n, max_inflight) for n in loads) + granted
        )
        spread = [r.inflight for r in replicas]
        if granted == free:
            assert spread == [max_inflight] * len(replicas)

    asyncio.run(scenario())
