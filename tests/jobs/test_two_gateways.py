"""Two gateways sharing Redis and PostgreSQL both accept and complete jobs, within one
concurrency limit; when one dies (SIGKILL) the other finishes its jobs, and nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ADMIN_PASSWORD, Nuvem, app_folder, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 100
HANDLER = """
import asyncio
import os
import time


async def work(req):
    began = time.time()
    await asyncio.sleep(0.05)
    return req.body + f" by {os.getppid()} from {began} to {time.time()}".encode()
"""
STACK = """
functions:
  work:
    handler: functions:work
    max_inflight: 16  # one replica could run every job at once: the jobs limit must hold
    jobs: {concurrency: 4, retries: 5, backoff: 50ms, max_backoff: 200ms}
"""
CONCURRENCY = 4


def max_overlap(runs: list[tuple[float, float]]) -> int:
    """The most runs under way at one moment."""
    edges = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
    now = most = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def app_root(tmp_path: Path) -> Iterator[Path]:
    with app_folder(tmp_path, HANDLER, STACK) as root:
        yield root


async def test_two_gateways_share_jobs_and_survive_one_dying(
    app_root: Path, clean_redis: str, postgres_url: str
) -> None:
    env = {"NUVEM_QUEUE_URL": clean_redis, "NUVEM_RECORDS_URL": postgres_url}
    env["NUVEM_JOB_LEASE"] = "2"
    a = Nuvem(app_root, env, state="state-a")
    b = Nuvem(app_root, env, state="state-b")
    up = ("-f", "nuvem.yaml", "--log-level", "warning")
    a.start(*up)
    await a.ready("work", 1)  # the first one creates the schema and the admin
    b.start(*up)
    await b.ready("work", 1)
    try:
        ids: list[str] = []
        async with (
            httpx.AsyncClient(base_url=a.url, auth=("admin", ADMIN_PASSWORD)) as on_a,
            httpx.AsyncClient(base_url=b.url, auth=("admin", ADMIN_PASSWORD)) as on_b,
        ):
            for i in range(JOBS):
                client = on_a if i % 2 else on_b
                response = await client.post("/async-function/work", content=f"job-{i}".encode())
                assert response.status_code == 202
                ids.append(response.headers["x-call-id"])
                if i == JOBS // 2:
                    a.kill()  # mid-run, with jobs claimed by it
                    on_a = on_b  # its clients fail over to the survivor
            pids = {str(a.process.pid), str(b.process.pid)}
            listing: list[dict[str, Any]] = []

            async def all_done() -> bool:
                nonlocal listing
                listing = (await on_b.get("/system/jobs?limit=1000")).json()
                return len([j for j in listing if j["state"] == "succeeded"]) == JOBS

            await wait_until(
                all_done, within=60, what=lambda: str(sorted({j["state"] for j in listing}))
            )
            assert {j["id"] for j in listing} == set(ids)
            ran_by = set()
            runs: list[tuple[float, float]] = []
            for i, job_id in enumerate(ids):
                result = await on_b.get(f"/system/jobs/{job_id}/result")
                words = result.content.decode().split(" ")
                assert words[:2] == [f"job-{i}", "by"]
                ran_by.add(words[2])
                runs.append((float(words[4]), float(words[6])))
            assert ran_by == pids  # both gateways completed jobs
            # concurrency: 4 holds for both gateways together, not 4 on each.
            assert max_overlap(runs) <= CONCURRENCY
    finally:
        b.stop()
        a.stop()
