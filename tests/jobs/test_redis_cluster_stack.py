"""`nuvem up` with a stack whose `stores:` name a Redis Cluster and PostgreSQL: async jobs
through /async-function/ for three functions whose keys live on three different masters
(CLUSTER KEYSLOT, and the node serving that slot), all run by the one gateway's runner."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nuvem.stores.redis_keys import FunctionKeys
from redis_cluster import LocalRedisCluster
from support import ADMIN_PASSWORD, Nuvem, app_folder, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 10  # per function
HANDLER = """
async def echo(req):
    return b"ran " + req.body
"""


def on_three_masters(cluster: LocalRedisCluster) -> dict[int, str]:
    """master port -> a function name whose keys that master serves, for three masters."""
    found: dict[int, str] = {}
    for i in itertools.count():
        name = f"fn-{i}"
        found.setdefault(cluster.owner_of(FunctionKeys.of(name).stream).port, name)
        if len(found) == 3:
            return found
    raise AssertionError("unreachable")


@pytest.fixture
def app_root(
    tmp_path: Path, clean_redis_cluster: LocalRedisCluster, postgres_url: str
) -> Iterator[Path]:
    functions = "".join(
        f"  {name}:\n    handler: functions:echo\n    jobs: {{concurrency: 2}}\n"
        for name in on_three_masters(clean_redis_cluster).values()
    )
    stack = (
        f"stores:\n  queue: {clean_redis_cluster.url}\n  records: {postgres_url}\n"
        f"functions:\n{functions}"
    )
    with app_folder(tmp_path, HANDLER, stack) as root:
        yield root


async def test_a_stack_on_a_cluster_runs_each_functions_jobs_on_its_master(
    app_root: Path, clean_redis_cluster: LocalRedisCluster
) -> None:
    cluster = clean_redis_cluster
    masters = on_three_masters(cluster)
    gateway = Nuvem(app_root)  # no NUVEM_QUEUE_URL: the stack's stores are used
    gateway.start("-f", "nuvem.yaml", "--log-level", "warning")
    try:
        for name in masters.values():
            await gateway.ready(name, 1)
        auth = ("admin", ADMIN_PASSWORD)
        async with httpx.AsyncClient(base_url=gateway.url, auth=auth, timeout=30) as client:
            ids: dict[str, tuple[str, str]] = {}
            for name, i in itertools.product(masters.values(), range(JOBS)):
                body = f"{name}-{i}"
                answer = await client.post(f"/async-function/{name}", content=body.encode())
                assert answer.status_code == 202, answer.text
                ids[answer.headers["x-call-id"]] = (name, body)
            listing: list[dict[str, Any]] = []

            async def all_done() -> bool:
                nonlocal listing
                listing = (await client.get("/system/jobs?limit=1000")).json()
                done: int = sum(j["state"] == "succeeded" for j in listing)
                return done == len(ids)

            await wait_until(all_done, within=60, what=lambda: f"{listing}\n{gateway.log()}")
            assert {j["id"]: j["function"] for j in listing} == {k: v[0] for k, v in ids.items()}
            for job_id, (_, body) in ids.items():
                result = await client.get(f"/system/jobs/{job_id}/result")
                assert result.content == f"ran {body}".encode()
        for port, name in masters.items():
            keys = FunctionKeys.of(name)
            # Asked directly (a plain client follows no redirection): the master that serves
            # the function's slot holds its stream, the others would answer MOVED.
            with cluster.node(port).client() as direct:
                slot = direct.execute_command("CLUSTER KEYSLOT", keys.stream)
                assert direct.execute_command("CLUSTER COUNTKEYSINSLOT", slot) >= 1
                assert direct.exists(keys.stream) == 1
                assert direct.xinfo_groups(keys.stream)[0]["name"] == b"nuvem"
    finally:
        gateway.stop()
