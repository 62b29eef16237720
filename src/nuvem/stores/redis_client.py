"""`connect`: the redis-py client a `RedisUrl` describes, for one server or a cluster."""

from __future__ import annotations

from typing import Any

from nuvem.stack.redis_url import RedisUrl

# A node that stops answering (rather than refusing) must fail the command, so that the
# client re-reads the slot map, instead of blocking its caller forever.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 10.0


def connect(target: RedisUrl, *, wait_out_failover: bool = True) -> Any:
    """`Redis` for one server, a `RedisCluster` for a cluster (it learns the other nodes
    from the ones listed and follows MOVED and ASK redirections). With `wait_out_failover`,
    a cluster command retries with backoff through a master's failover (redis_failover.py);
    without, it fails within milliseconds, for callers on the event loop that must not
    block. Typed as Any: redis-py's answers are unions of every shape a command can take
    (bytes or str, RESP2 or RESP3), which callers read in the one shape they use."""
    import redis  # loads only when a Redis store is configured
    from redis.cluster import ClusterNode

    from nuvem.stores.redis_failover import FAILOVER_RETRIES, FailoverCluster

    if not target.cluster:
        return redis.Redis.from_url(target.url)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
    return FailoverCluster(
        startup_nodes=nodes,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        failover_retries=FAILOVER_RETRIES if wait_out_failover else 0,
    )
