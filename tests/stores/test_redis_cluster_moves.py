"""A function's slot moves to another master of a real Redis Cluster while its jobs wait:
mid-move (keys migrated, slot still MIGRATING/IMPORTING) the store's commands and scripts
are answered ASK and follow it; after the move, MOVED. Every job is claimed and finished."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from nuvem.stores.job import Finish, JobRequest, JobResult, JobState, NewJob
from nuvem.stores.redis_jobs import RedisJobStore
from nuvem.stores.redis_keys import FunctionKeys
from nuvem.stores.sql_jobs import SqlJobStore
from redis_cluster import ClusterNode, LocalRedisCluster

RESULT = JobResult(200, (), b"ok", 0.1)
F = FunctionKeys.of("f")


def node_id(node: ClusterNode) -> str:
    with node.client() as client:
        answer: bytes = client.execute_command("CLUSTER MYID")
    return answer.decode()


def migrate_keys(slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """The first half of a resharding step: the slot is MIGRATING on `source` and IMPORTING
    on `target`, and its keys are on `target` (asked for there, `source` answers ASK)."""
    with target.client() as on_target, source.client() as on_source:
        on_target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", node_id(source))
        on_source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", node_id(target))
        keys = on_source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        assert keys
        on_source.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)


def assign(cluster: LocalRedisCluster, slot: int, target: ClusterNode) -> None:
    """The second half: every master records `target` as the slot's owner (MOVED from now)."""
    owner = node_id(target)
    for master in cluster.masters():
        with master.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", owner)


@pytest.fixture
def store(postgres_url: str, clean_redis_cluster: LocalRedisCluster) -> Iterator[RedisJobStore]:
    found = RedisJobStore(SqlJobStore.postgres(postgres_url), clean_redis_cluster.url)
    yield found
    found.close()


def test_a_functions_slot_moves_under_its_jobs(
    store: RedisJobStore, clean_redis_cluster: LocalRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = clean_redis_cluster
    caplog.set_level(logging.DEBUG, logger="redis.cluster")  # where redis-py notes redirections
    for i in range(3):
        store.submit(NewJob(f"j{i}", "f", JobRequest("POST", "/", "", (), b""), max_attempts=3))
    slot = key_slot(F.stream.encode())
    source = cluster.owner_of(F.stream)
    target = next(m for m in cluster.masters() if m.port != source.port)
    done: list[str] = []

    def run_one() -> None:
        (job,) = store.claim("g", {"f": 1}, lease=30)
        assert store.finish("g", job.id, Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))
        done.append(job.id)

    run_one()
    migrate_keys(slot, source, target)
    run_one()  # XAUTOCLAIM, XREADGROUP and the ack script: ASK, followed to `target`
    assert "ASK error received for command EVALSHA" in caplog.text
    assign(cluster, slot, target)
    run_one()  # the client's map still names `source`: MOVED, followed
    assert "MOVED error received" in caplog.text
    assert sorted(done) == ["j0", "j1", "j2"]
    assert cluster.owner_of(F.stream).port == target.port
    with target.client() as direct:
        assert direct.exists(F.stream, F.enqueued) == 1  # the stream; the count hash is empty
        assert direct.xlen(F.stream) == 0
