"""What only the Redis Streams queue does: take over from dead consumers, keep live ones'
entries, re-enqueue jobs a crash left out of the stream, share work between gateways; on
one redis-server and on a Redis Cluster of three masters alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from nuvem.stores.job import Finish, JobRequest, JobResult, JobState, NewJob
from nuvem.stores.redis_jobs import RedisJobStore
from nuvem.stores.redis_keys import FunctionKeys
from nuvem.stores.sql_jobs import SqlJobStore
from support import wait_until

pytestmark = pytest.mark.anyio
RESULT = JobResult(200, (), b"ok", 0.1)
F = FunctionKeys.of("f")


def new(job_id: str) -> NewJob:
    return NewJob(job_id, "f", JobRequest("POST", "/", "", (), b""), max_attempts=5)


@pytest.fixture
def gateways(postgres_url: str, redis_queue: str) -> Iterator[tuple[RedisJobStore, RedisJobStore]]:
    a = RedisJobStore(SqlJobStore.postgres(postgres_url), redis_queue)
    b = RedisJobStore(SqlJobStore.postgres(postgres_url), redis_queue)
    yield a, b
    a.close()
    b.close()


async def test_dead_consumers_entries_are_taken_over(
    gateways: tuple[RedisJobStore, RedisJobStore],
) -> None:
    a, b = gateways
    a.submit(new("j1"))
    assert [j.id for j in a.claim("a", {"f": 1}, lease=0.3)] == ["j1"]
    # "a" dies here: it never renews. "b" takes the entry once it is idle past the lease.
    taken: list[str] = []

    def b_claims() -> bool:
        taken.extend(j.id for j in b.claim("b", {"f": 1}, lease=0.3))
        return bool(taken)

    await wait_until(b_claims, within=10, what="b takes over j1")
    job = b.get("j1")
    assert job is not None
    assert job.attempts == 2
    assert not a.finish("a", "j1", Finish(JobState.SUCCEEDED, RESULT))
    assert b.finish("b", "j1", Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))
    pending = b.redis.xpending(F.stream, "nuvem")
    assert pending["pending"] == 0


async def test_a_live_consumer_keeps_its_job(
    gateways: tuple[RedisJobStore, RedisJobStore],
) -> None:
    a, b = gateways
    a.submit(new("j1"))
    a.claim("a", {"f": 1}, lease=0.3)
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.2
    while loop.time() < until:  # four leases long: "a" renews, "b" must never get it
        assert a.renew("a", ["j1"], lease=0.3) == set()
        assert b.claim("b", {"f": 1}, lease=0.3) == []
        await asyncio.sleep(0.1)
    assert a.finish("a", "j1", Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))


def test_job_missing_from_the_stream_is_enqueued_again(postgres_url: str, redis_queue: str) -> None:
    now = [1000.0]
    records = SqlJobStore.postgres(postgres_url, clock=lambda: now[0])
    store = RedisJobStore(records, redis_queue, clock=lambda: now[0])
    try:
        records.submit(new("lost"))  # as if the gateway died between the SQL write and XADD
        assert store.claim("g", {"f": 1}, lease=1.0) == []
        now[0] += 5
        assert [j.id for j in store.claim("g", {"f": 1}, lease=1.0)] == ["lost"]
        # A job the stream still holds is not added twice.
        store.submit(new("held"))
        now[0] += 5
        store.claim("g", {"f": 0}, lease=1.0)
        assert store.redis.xlen(F.stream) == 2
    finally:
        store.close()


def test_two_gateways_share_the_work_without_overlap(
    gateways: tuple[RedisJobStore, RedisJobStore],
) -> None:
    a, b = gateways
    for i in range(40):
        (a if i % 2 else b).submit(new(f"j{i}"))
    seen: list[str] = []
    for _ in range(10):
        for owner, store in (("a", a), ("b", b)):
            for job in store.claim(owner, {"f": 3}, lease=30):
                seen.append(job.id)
                assert store.finish(owner, job.id, Finish(JobState.SUCCEEDED, RESULT))
    assert sorted(seen) == sorted(f"j{i}" for i in range(40))


def test_entries_read_without_a_free_slot_go_back_to_the_stream(
    gateways: tuple[RedisJobStore, RedisJobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = gateways
    for i in range(6):
        a.submit(new(f"j{i}"))
    first = a.claim("a", {"f": 3}, lease=30)
    assert len(first) == 3
    # b's estimate is stale, as when a claimed between b's look and b's claim: b reads
    # entries, finds no free slot under the claim turn, and must not sit on them.
    monkeypatch.setattr(b.records, "running", lambda function: 0)
    assert b.claim("b", {"f": 3}, lease=30) == []
    monkeypatch.undo()
    for job in first:
        assert a.finish("a", job.id, Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))
    # Back in the stream at once, not after a lease of 30 s (XAUTOCLAIM).
    assert sorted(j.id for j in b.claim("b", {"f": 3}, lease=30)) == ["j3", "j4", "j5"]


def test_gateways_claiming_at_once_keep_to_the_limit(postgres_url: str) -> None:
    stores = [SqlJobStore.postgres(postgres_url) for _ in range(4)]
    try:
        for i in range(20):
            stores[0].submit(new(f"j{i}"))
        start = threading.Barrier(len(stores))

        def claim(index: int) -> int:
            start.wait()
            return len(stores[index].claim(f"g{index}", {"f": 3}, lease=30))

        with ThreadPoolExecutor(len(stores)) as pool:
            assert sum(pool.map(claim, range(len(stores)))) == 3
    finally:
        for store in stores:
            store.close()


def test_finished_jobs_leave_nothing_behind_in_redis(
    gateways: tuple[RedisJobStore, RedisJobStore],
) -> None:
    a, _ = gateways
    for i in range(10):
        a.submit(new(f"j{i}"))
    assert a.redis.xlen(F.stream) == 10
    assert a.redis.hlen(F.enqueued) == 10
    for job in a.claim("a", {"f": 10}, lease=30):
        assert a.finish("a", job.id, Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))
    # Acked entries are deleted: a stream does not grow by one entry per job forever.
    assert a.redis.xlen(F.stream) == 0
    assert a.redis.hlen(F.enqueued) == 0


def test_a_long_backlog_is_not_enqueued_twice(postgres_url: str, redis_queue: str) -> None:
    now = [1000.0]
    store = RedisJobStore(
        SqlJobStore.postgres(postgres_url, clock=lambda: now[0]), redis_queue, clock=lambda: now[0]
    )
    try:
        for i in range(50):
            store.submit(new(f"j{i}"))
        now[0] += 60  # every job has waited far past two leases: the reaper looks at them all
        store.claim("g", {"f": 0}, lease=1.0)
        assert store.redis.xlen(F.stream) == 50
        # Redis lost its data (restarted without persistence): PostgreSQL brings it all back.
        store.redis.flushdb()
        now[0] += 60
        store.claim("g", {"f": 0}, lease=1.0)
        assert store.redis.xlen(F.stream) == 50
        assert len(store.claim("g", {"f": 50}, lease=30)) == 50
    finally:
        store.close()
