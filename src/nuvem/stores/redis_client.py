"""`connect`: the redis-py client a `RedisUrl` describes, for one server or a cluster."""

from __future__ import annotations

from typing import Any

from nuvem.stack.redis_url import RedisUrl


def connect(target: RedisUrl) -> Any:
    """`Redis` for one server, `RedisCluster` for a cluster (it learns the other nodes from
    the ones listed and follows MOVED and ASK redirections). Typed as Any: redis-py's
    answers are unions of every shape a command can take (bytes or str, RESP2 or RESP3),
    which callers read in the one shape they use."""
    import redis  # loads only when a Redis store is configured
    from redis.cluster import ClusterNode, RedisCluster

    if not target.cluster:
        return redis.Redis.from_url(target.url)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=nodes,
        username=target.username,
        password=target.password,
        ssl=target.tls,
    )
