"""Redis URLs, read in one place: one server as redis-py reads it, or a cluster's start nodes."""

from __future__ import annotations

import pytest

from nuvem.stack.redis_url import RedisUrl, is_redis_url


def test_a_single_server_url_is_left_to_redis_py() -> None:
    target = RedisUrl.parse("rediss://u:p@cache:6380/2")
    assert not target.cluster
    assert target.tls
    assert target.nodes == ()


def test_a_cluster_url_lists_its_start_nodes() -> None:
    target = RedisUrl.parse(
        "redis+cluster://nuvem:s%40cret@10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002/0"
    )
    assert target.cluster
    assert not target.tls
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (target.username, target.password) == ("nuvem", "s@cret")
    assert RedisUrl.parse("rediss+cluster://h:1").tls
    assert RedisUrl.parse("redis+cluster://h:1").username is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://h:7000,h", "'h' is not host:port"),
        ("redis+cluster://h:7000,", "'' is not host:port"),
        ("redis+cluster://h:99999", "not host:port"),
        ("redis+cluster://h:7000?timeout=1", "no query"),
        ("amqp://h", "not a Redis URL"),
    ],
)
def test_a_bad_url_is_refused_with_the_form_to_use(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        RedisUrl.parse(url)
    assert "redis" in str(caught.value)


def test_which_urls_are_redis() -> None:
    assert is_redis_url("redis://h/0")
    assert is_redis_url("rediss+cluster://h:1")
    assert not is_redis_url("postgresql://h/db")
    assert not is_redis_url("")
