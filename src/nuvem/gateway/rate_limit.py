"""Rate limits per API key: a token bucket, in this process or shared through Redis.

Every key may make `rate` calls per second on average and `burst` at once: its own limit
when it has one (`nuvem keys create --rate`), else the gateway's default (NUVEM_RATE_LIMIT,
NUVEM_RATE_BURST). With a Redis queue configured, the bucket lives in Redis, updated by one
atomic script that reads Redis's own clock, so every gateway draws from the same bucket.
The script touches the one key of its bucket, so on a Redis Cluster it runs on whichever
master holds that key, and the buckets of many keys spread over the masters.

While Redis cannot answer (restarting, or a cluster electing a new master) the limit is
not enforced: a call is let through, with a warning logged, rather than refused or held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from nuvem.config import Settings
from nuvem.stack.redis_url import RedisUrl, is_redis_url
from nuvem.stores.records import ApiKeyRecord
from nuvem.stores.redis_client import connect

KEY_PREFIX = "nuvem:rate:"
log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def take(self, key: str, rate: float, burst: int) -> float:
        """Take one token from key's bucket (refilled at `rate` per second, holding at most
        `burst`); 0.0 when allowed, else the seconds until a token is free."""
        ...


def key_limit(key: ApiKeyRecord, default_rate: float, default_burst: int) -> tuple[float, int]:
    """(rate, burst) for `key`; a rate of 0 means no limit."""
    if key.rate is not None:
        rate, burst = key.rate, key.burst
    else:
        rate, burst = default_rate, key.burst or default_burst
    return rate, burst or max(1, round(rate))


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, rate: float, burst: int) -> float:
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate

    def forget(self, idle: float) -> None:
        """Drop buckets untouched for `idle` seconds: refilled by now, they are as if new."""
        horizon = self.clock() - idle
        self._buckets = {k: v for k, v in self._buckets.items() if v[1] >= horizon}

    def __len__(self) -> int:
        return len(self._buckets)


_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    def __init__(self, url: str, client: Any = None) -> None:
        # Called on the event loop: during a cluster failover a take gives up at once
        # rather than stalling every call of the gateway while the cluster elects a master.
        self.redis: Any = client or connect(RedisUrl.parse(url), wait_out_failover=False)
        self._script = self.redis.register_script(_SCRIPT)
        self._unchecked = False  # the last take found Redis not answering

    def take(self, key: str, rate: float, burst: int) -> float:
        import redis

        try:
            wait = float(self._script(keys=[KEY_PREFIX + key], args=[rate, burst]))
        except redis.RedisError as exc:
            if not self._unchecked:  # once per outage, not once per call
                log.warning("rate limits not checked until Redis answers again: %s", exc)
            self._unchecked = True
            return 0.0
        if self._unchecked:
            log.warning("rate limits checked again: Redis answers")
            self._unchecked = False
        return wait


def open_rate_limiter(settings: Settings) -> RateLimiter:
    return shared_rate_limiter(settings) or MemoryRateLimiter()


def shared_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter every gateway of this platform draws from (Redis), or None when there is
    no Redis for them to share."""
    if is_redis_url(settings.queue_url):
        return RedisRateLimiter(settings.queue_url)
    return None
