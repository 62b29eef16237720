"""`FailoverCluster`: redis-py's `RedisCluster`, patient enough to outlast a failover.

When a master dies, its slots are unreachable until the other masters have marked it
failed (`cluster-node-timeout`, 15 s by default) and its replica has won the election (about
a second more); meanwhile every node answers CLUSTERDOWN. `RedisCluster` follows MOVED and
ASK and re-reads the slot map after a connection error, but retries without waiting
(`retry` only sets how many times; as of redis-py 8 its backoff is unused), so its ten
retries are spent within milliseconds of the master's death. This class retries each
command again with exponential backoff for up to `FAILOVER_SECONDS` of sleep, through
`redis.retry.Retry`, while redis-py's own retries still refresh the slot map.

Retrying is safe for the job queue: every script is either idempotent (ack, promote) or
its duplicates are harmless (a second stream entry for a job: the claim in SQL runs each
job once at a time, and the reaper re-enqueues whatever a lost write left out).
"""

from __future__ import annotations

import functools
from typing import Any

from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

# Sleep between tries: 0.1 s, doubling up to 1 s. 45 tries sleep about 42 s in all: a
# failover with the default cluster-node-timeout of 15 s took 22 s to promote the replica
# here, and a submit waited 24.9 s (bench/redis_failover.py --node-timeout-ms 15000), too
# close to the 27 s that 30 tries gave.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
FAILOVER_RETRIES = 45


class FailoverCluster(RedisCluster):
    def __init__(self, *args: Any, failover_retries: int = FAILOVER_RETRIES, **kwargs: Any):
        # Before redis-py's constructor, which sends commands already.
        self.failover_retry = Retry(
            ExponentialBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE),
            failover_retries,
            supported_errors=RedisCluster.ERRORS_ALLOW_RETRY,
        )
        super().__init__(*args, **kwargs)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        once = functools.partial(super().execute_command, *args, **kwargs)
        return self.failover_retry.call_with_retry(once, lambda _error: None)
