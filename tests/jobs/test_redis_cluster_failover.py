"""A master of the Redis Cluster dies (SIGKILL, by PID) while `nuvem up` runs a stream of
async jobs on it: its replica is promoted, submits and runs carry on through the pause, and
no job is lost. Every job succeeds, having run at least once and at most as many times as
its record counts attempts (each run appends a line to a file, so runs are counted). The
shared rate limiter lets calls through while its bucket's master is gone, and enforces the
limit again from the promoted replica."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nuvem.gateway.rate_limit import KEY_PREFIX, RedisRateLimiter
from nuvem.stores.redis_keys import FunctionKeys
from redis_cluster import LocalRedisCluster
from support import ADMIN_PASSWORD, Nuvem, app_folder, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 120
RATE = 0.01  # calls/s of the rate-limited key: its bucket stays empty through the test
KILL_AT = 40  # jobs submitted before the master dies
HANDLER = """
import asyncio
import os
import time
from pathlib import Path

RUNS = Path(__file__).with_name("runs.log")


async def work(req):
    began = time.time()
    with RUNS.open("a") as runs:  # one short line per write: appends do not interleave
        runs.write(f"{req.body.decode()} {began}\\n")
    await asyncio.sleep(0.02)
    return req.body + f" by {os.getpid()}".encode()
"""
STACK = """
functions:
  work:
    handler: functions:work
    jobs: {concurrency: 4, retries: 5, backoff: 50ms, max_backoff: 200ms}
"""


@pytest.fixture
def app_root(tmp_path: Path) -> Iterator[Path]:
    with app_folder(tmp_path, HANDLER, STACK) as root:
        yield root


def on(cluster: LocalRedisCluster, key: str) -> int:
    """The port of the master holding API key `key`'s rate-limit bucket."""
    return cluster.owner_of(KEY_PREFIX + key).port


async def test_jobs_survive_a_masters_death(
    app_root: Path, own_redis_cluster: LocalRedisCluster, postgres_url: str
) -> None:
    cluster = own_redis_cluster
    env = {
        "NUVEM_QUEUE_URL": cluster.url,
        "NUVEM_RECORDS_URL": postgres_url,
        "NUVEM_JOB_LEASE": "2",
    }
    gateway = Nuvem(app_root, env)
    gateway.start("-f", "nuvem.yaml", "--log-level", "warning")
    try:
        await gateway.ready("work", 1)
        stream = FunctionKeys.of("work").stream
        master = cluster.owner_of(stream)
        replica = cluster.replica_of(master)
        limiter = RedisRateLimiter(cluster.url)
        key = next(k for k in map(str, itertools.count()) if on(cluster, k) == master.port)
        assert limiter.take(key, RATE, 1) == 0.0
        assert limiter.take(key, RATE, 1) > 0  # its one token is spent
        ids: list[str] = []
        auth = ("admin", ADMIN_PASSWORD)
        async with httpx.AsyncClient(base_url=gateway.url, auth=auth, timeout=60) as client:
            for i in range(JOBS):
                if i == KILL_AT:
                    cluster.kill(master)
                    # The bucket's master is gone: the limit is let go, not a 500, no stall.
                    assert limiter.take(key, RATE, 1) == 0.0
                answer = await client.post("/async-function/work", content=f"job-{i}".encode())
                # Submits made while the slot has no master wait it out; none is refused.
                assert answer.status_code == 202, f"{answer.text}\n{gateway.log()[-4000:]}"
                ids.append(answer.headers["x-call-id"])
                await asyncio.sleep(0.02)
            cluster.wait_promoted(master, replica)
            listing: list[dict[str, Any]] = []

            async def all_done() -> bool:
                nonlocal listing
                listing = (await client.get("/system/jobs?limit=1000")).json()
                done: int = sum(j["state"] == "succeeded" for j in listing)
                return done == JOBS

            await wait_until(
                all_done,
                within=90,
                what=lambda: (
                    f"{collections.Counter(j['state'] for j in listing)}; "
                    f"nuvem up printed:\n{gateway.log()[-3000:]}"
                ),
            )
            assert {j["id"] for j in listing} == set(ids)
            runs = collections.Counter(
                line.split(" ")[0] for line in (app_root / "runs.log").read_text().splitlines()
            )
            by_id = {j["id"]: j for j in listing}
            for i, job_id in enumerate(ids):
                assert 1 <= runs[f"job-{i}"] <= by_id[job_id]["attempts"], (i, by_id[job_id])
                result = await client.get(f"/system/jobs/{job_id}/result")
                assert result.content.startswith(f"job-{i} by ".encode())
        # The promoted replica serves the function's slot now, and holds its stream.
        assert cluster.owner_of(stream).port == replica.port
        with replica.client() as direct:
            assert direct.exists(stream) == 1
        assert limiter.take(key, RATE, 1) > 0  # enforced again, from the replica's copy
        limiter.redis.close()
    finally:
        gateway.stop()
