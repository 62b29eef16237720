"""`RedisUrl`: the one place a Redis URL is read, for a single server or a Redis Cluster.

Pure: stores/redis_client.py opens the client a `RedisUrl` describes.

- `redis://[user:password@]host:port/db` (`rediss://` for TLS): one server, as redis-py
  reads it.
- `redis+cluster://[user:password@]host:port,host:port,...` (`rediss+cluster://` for TLS):
  a Redis Cluster; the hosts are where the client starts, it learns the rest of the cluster
  from them and follows MOVED and ASK redirections (redis-py's `RedisCluster`). A cluster
  has only database 0, so a path other than `/` or `/0` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SINGLE = ("redis://", "rediss://")
CLUSTER = ("redis+cluster://", "rediss+cluster://")
FORMS = "redis://host:6379/0, or redis+cluster://host:7000,host:7001,... for a Redis Cluster"


def is_redis_url(url: str) -> bool:
    return url.startswith(SINGLE + CLUSTER)


@dataclass(frozen=True, slots=True)
class RedisUrl:
    url: str
    cluster: bool
    tls: bool
    nodes: tuple[tuple[str, int], ...]  # where a cluster client starts; empty when single
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisUrl:
        """Raises ValueError naming what is wrong and the form to use."""
        if url.startswith(SINGLE):
            return cls(url, cluster=False, tls=url.startswith("rediss://"), nodes=())
        if not url.startswith(CLUSTER):
            raise ValueError(f"{url!r} is not a Redis URL: use {FORMS}")
        scheme, _, rest = url.partition("://")
        if "?" in rest or "#" in rest:
            raise ValueError(
                f"{url!r}: a redis+cluster:// URL takes no query or fragment; "
                "give the hosts only, as redis+cluster://host:7000,host:7001"
            )
        location, _, path = rest.partition("/")
        if path not in ("", "0"):
            raise ValueError(
                f"{url!r} names database {path!r}: a Redis Cluster has only database 0; "
                "leave the path out"
            )
        userinfo, _, hosts = location.rpartition("@")
        username = password = None
        if userinfo:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        return cls(
            url,
            cluster=True,
            tls=scheme == "rediss+cluster",
            nodes=tuple(_host_port(url, host) for host in hosts.split(",")),
            username=username,
            password=password,
        )


def _host_port(url: str, text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{url!r}: {text!r} is not host:port; list every start node as host:port, "
            "separated by commas (redis+cluster://10.0.0.1:7000,10.0.0.2:7000)"
        )
    return host.strip("[]"), int(port)
