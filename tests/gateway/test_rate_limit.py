"""Rate limits per API key: a token bucket here, or shared by gateways through Redis."""

from __future__ import annotations

import httpx
import pytest

from nuvem.gateway.rate_limit import KEY_PREFIX, MemoryRateLimiter, RedisRateLimiter, key_limit
from nuvem.stores.records import ApiKeyRecord
from redis_cluster import LocalRedisCluster
from support import FakeClock, Running

pytestmark = pytest.mark.anyio


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    assert [limiter.take("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", 2.0, 3) == pytest.approx(0.5)
    assert limiter.take("other", 2.0, 3) == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.take("k", 2.0, 3) == 0.0
    assert limiter.take("k", 2.0, 3) > 0


def test_forgotten_buckets_are_the_refilled_ones() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    limiter.take("old", 1.0, 2)
    clock.now += 5
    limiter.take("new", 1.0, 2)
    limiter.forget(2.0)  # 2 tokens at 1/s: untouched for 2 s means full again
    assert len(limiter) == 1
    assert [limiter.take("new", 1.0, 2), limiter.take("new", 1.0, 2)] == [0.0, pytest.approx(1.0)]


def key(rate: float | None = None, burst: int | None = None) -> ApiKeyRecord:
    return ApiKeyRecord("0123456789ab", "k", "hash", None, 0.0, rate=rate, burst=burst)


def test_a_keys_own_limit_wins_over_the_default() -> None:
    assert key_limit(key(), default_rate=0.0, default_burst=0) == (0.0, 1)  # 0: no limit
    assert key_limit(key(), default_rate=10.0, default_burst=0) == (10.0, 10)
    assert key_limit(key(), default_rate=10.0, default_burst=30) == (10.0, 30)
    assert key_limit(key(rate=2.0), default_rate=10.0, default_burst=30) == (2.0, 2)
    assert key_limit(key(rate=2.0, burst=5), default_rate=10.0, default_burst=30) == (2.0, 5)
    assert key_limit(key(rate=0.0), default_rate=10.0, default_burst=30)[0] == 0.0
    assert key_limit(key(burst=50), default_rate=10.0, default_burst=30) == (10.0, 50)


def test_gateways_share_one_bucket_through_redis(redis_queue: str) -> None:
    one = RedisRateLimiter(redis_queue)
    two = RedisRateLimiter(redis_queue)
    taken = [one.take("k", 0.5, 3), two.take("k", 0.5, 3), one.take("k", 0.5, 3)]
    assert taken == [0.0, 0.0, 0.0]
    assert two.take("k", 0.5, 3) > 1.0  # the third token went to the other gateway
    assert one.take("other", 0.5, 3) == 0.0
    one.redis.close()
    two.redis.close()


def test_buckets_of_many_keys_spread_over_the_cluster_masters(
    clean_redis_cluster: LocalRedisCluster,
) -> None:
    cluster = clean_redis_cluster
    limiter = RedisRateLimiter(cluster.url)
    try:
        keys = [f"key-{i}" for i in range(30)]
        assert {limiter.take(k, 1.0, 1) for k in keys} == {0.0}
        assert {limiter.take(k, 1.0, 1) > 0 for k in keys} == {True}  # each bucket is empty
    finally:
        limiter.redis.close()
    owners = {cluster.owner_of(KEY_PREFIX + k).port for k in keys}
    assert len(owners) == 3
    for k in keys:
        # Each bucket is on the master serving its slot: the script ran there, no CROSSSLOT.
        with cluster.owner_of(KEY_PREFIX + k).client() as direct:
            assert direct.hget(KEY_PREFIX + k, "tokens") is not None


async def test_over_the_limit_answers_429_with_retry_after(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    created = await gateway.admin.post("/system/keys", json={"rate": 0.1, "burst": 2})
    assert created.status_code == 201
    assert (created.json()["rate"], created.json()["burst"]) == (0.1, 2)
    key = created.json()["key"]
    unlimited = (await gateway.admin.post("/system/keys", json={})).json()["key"]
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert (await client.post("/function/echo", content=b"1")).status_code == 200
        assert (await client.post("/async-function/echo", content=b"2")).status_code == 202
        limited = await client.post("/function/echo", content=b"3")
        assert limited.status_code == 429
        assert "rate limit (0.1 calls/s, 2 at once)" in limited.json()["error"]
        assert int(limited.headers["retry-after"]) >= 1
        limited_async = await client.post("/async-function/echo", content=b"4")
        assert limited_async.status_code == 429
        # Other keys have their own buckets (and here, no limit: none is set by default).
        for _ in range(5):
            answer = await client.post(
                "/function/echo", content=b"5", headers={"Authorization": f"Bearer {unlimited}"}
            )
            assert answer.status_code == 200
    # The admin is not limited.
    assert (await gateway.invoke("echo", b"6")).status_code == 200


async def test_a_keys_limit_changes_at_once(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    created = (await gateway.admin.post("/system/keys", json={"rate": 0.01, "burst": 1})).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
        assert (await client.post("/function/echo")).status_code == 200
        assert (await client.post("/function/echo")).status_code == 429
        raised = await gateway.admin.put(
            f"/system/keys/{created['id']}/limits", json={"rate": 1000, "burst": 100}
        )
        assert raised.status_code == 200
        assert (raised.json()["rate"], raised.json()["burst"]) == (1000, 100)
        assert (await client.post("/function/echo")).status_code == 200
        back = await gateway.admin.put(f"/system/keys/{created['id']}/limits", json={"rate": None})
        assert back.json()["rate"] is None
        listed = (await gateway.admin.get("/system/keys")).json()
        assert [(k["id"], k["rate"]) for k in listed] == [(created["id"], None)]


async def test_bad_limits_are_refused_with_the_reason(gateway: Running) -> None:
    negative = await gateway.admin.post("/system/keys", json={"rate": -1})
    assert negative.status_code in (400, 422)
    assert "rate" in negative.json()["error"]
    typo = await gateway.admin.post("/system/keys", json={"rat": 5})
    assert typo.status_code in (400, 422)
    assert "rat" in typo.json()["error"]
    missing = await gateway.admin.put("/system/keys/0123456789ab/limits", json={"rate": 1})
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["error"]
    async with httpx.AsyncClient(base_url=gateway.url) as stranger:
        anonymous = await stranger.put("/system/keys/0123456789ab/limits", json={"rate": 1})
    assert anonymous.status_code == 401
