"""Rate limits per API key: a token bucket here, or shared by gateways through Redis."""

from __future__ import annotations

import httpx
import pytest

from conftest import Running
from nuvem.gateway.rate_limit import MemoryRateLimiter, RedisRateLimiter

pytestmark = pytest.mark.anyio


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0


def test_gateways_share_one_bucket_through_redis(clean_redis: str) -> None:
    one = RedisRateLimiter(clean_redis, rate=0.5, burst=3)
    two = RedisRateLimiter(clean_redis, rate=0.5, burst=3)
    taken = [one.take("k"), two.take("k"), one.take("k")]
    assert taken == [0.0, 0.0, 0.0]
    assert two.take("k") > 1.0  # the third token went to the other gateway
    assert one.take("other") == 0.0
    one.redis.close()
    two.redis.close()


async def test_over_the_limit_answers_429_with_retry_after(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    gateway.platform.auth.limiter = MemoryRateLimiter(rate=0.1, burst=2)
    key = (await gateway.admin.post("/system/keys", json={"name": "k"})).json()["key"]
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert (await client.post("/function/echo", content=b"1")).status_code == 200
        assert (await client.post("/async-function/echo", content=b"2")).status_code == 202
        limited = await client.post("/function/echo", content=b"3")
        assert limited.status_code == 429
        assert "rate limit" in limited.json()["error"]
        assert int(limited.headers["retry-after"]) >= 1
        limited_async = await client.post("/async-function/echo", content=b"4")
        assert limited_async.status_code == 429
    # The admin is not limited.
    assert (await gateway.invoke("echo", b"5")).status_code == 200
