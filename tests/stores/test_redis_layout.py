"""A single Redis that an older nuvem used (keys without hash tags) is moved to the layout
of one hash tag per function when a gateway starts: queued entries, entries an old gateway
had read, and waiting retries all carry on without waiting for the reaper."""

from __future__ import annotations

import redis

from nuvem.stores.job import Finish, JobRequest, JobState, NewJob
from nuvem.stores.redis_jobs import GROUP, RedisJobStore
from nuvem.stores.redis_keys import FUNCTIONS, LAYOUT, FunctionKeys
from nuvem.stores.redis_layout import OLD_DELAYED, OLD_ENQUEUED, migrate_layout
from nuvem.stores.sql_jobs import SqlJobStore


def new(job_id: str, function: str = "f") -> NewJob:
    return NewJob(job_id, function, JobRequest("POST", "/", "", (), b""), max_attempts=5)


def write_old_layout(client: redis.Redis, retry_due: float) -> None:
    """What the nuvem before hash tags left in Redis, command for command."""
    for function, job_ids in (("f", ["j1", "j2"]), ("g", ["k1"])):
        client.xgroup_create(f"nuvem:jobs:{function}", GROUP, id="0", mkstream=True)
        for job_id in job_ids:
            client.xadd(f"nuvem:jobs:{function}", {"id": job_id})
            client.hincrby(OLD_ENQUEUED, job_id, 1)
    # An old gateway had read j1's entry (pending, unacked) when it was stopped.
    client.xreadgroup(GROUP, "old-gateway", {"nuvem:jobs:f": ">"}, count=1)
    client.zadd(OLD_DELAYED, {"f|j3": retry_due})


def test_old_keys_move_to_the_tagged_layout(postgres_url: str, clean_redis: str) -> None:
    now = [1000.0]
    records = SqlJobStore.postgres(postgres_url, clock=lambda: now[0])
    for job in (new("j1"), new("j2"), new("j3"), new("k1", "g")):
        records.submit(job)
    # j3 ran once and waits for its retry at 1030.
    assert [j.id for j in records.claim_ids("old-gateway", "f", ["j3"], 30, 10)] == ["j3"]
    assert records.finish("old-gateway", "j3", Finish(JobState.QUEUED, retry_at=1030.0))
    client = redis.Redis.from_url(clean_redis)
    write_old_layout(client, retry_due=1030.0)

    store = RedisJobStore(records, clean_redis, clock=lambda: now[0])
    try:
        f, g = FunctionKeys.of("f"), FunctionKeys.of("g")
        assert client.keys("nuvem:jobs:f") == client.keys("nuvem:jobs:g") == []
        assert not client.exists(OLD_DELAYED, OLD_ENQUEUED)
        assert client.xlen(f.stream) == 2
        assert client.xlen(g.stream) == 1
        assert client.hgetall(f.enqueued) == {b"j1": b"1", b"j2": b"1"}
        assert client.zscore(f.delayed, "j3") == 1030.0
        assert client.smembers(FUNCTIONS) == {b"f"}
        assert client.get(LAYOUT) == b"2"
        # A second gateway starting at the same time moves nothing twice.
        client.delete(LAYOUT)
        assert migrate_layout(client, lambda function: None) == 0
        assert client.xlen(f.stream) == 2

        # Long before two leases have passed (the reaper's fallback), the jobs are claimed.
        lease = 60.0
        got = store.claim("new-gateway", {"f": 10, "g": 10}, lease)
        assert sorted(j.id for j in got) == ["j1", "j2", "k1"]
        assert store.claim("new-gateway", {"f": 10}, lease) == []
        now[0] = 1031.0
        store._reaped_at = 0.0  # the reaper's next step is due
        assert [j.id for j in store.claim("new-gateway", {"f": 10}, lease)] == ["j3"]
    finally:
        store.close()
        client.close()


def test_a_redis_without_old_keys_is_only_marked(postgres_url: str, clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    try:
        assert migrate_layout(client, lambda function: None) == 0
        assert client.keys("*") == [LAYOUT.encode()]
    finally:
        client.close()
