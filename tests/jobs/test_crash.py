"""No accepted job is lost: 500 jobs, the gateway SIGKILLed twice and a replica once.

Runs against the embedded SQLite queue and against Redis Streams + PostgreSQL. Clients
retry a submit that met a dead gateway with the same Idempotency-Key, as a real client
would, so a retried submit never makes a second job.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import (
    ADMIN_PASSWORD,
    Nuvem,
    app_folder,
    callback_receiver,
    wait_until,
    worker_pids,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 500
HANDLER = """
import time


def work(req):
    time.sleep(float(req.query.get("seconds", "0.05")))
    return req.body
"""
UP = ("-f", "nuvem.yaml", "--log-level", "warning")
STACK = """
functions:
  work:
    handler: functions:work
    scaling: {min: 2, max: 2}
    max_inflight: 8
    jobs: {concurrency: 16, retries: 10, backoff: 50ms, max_backoff: 500ms}
"""


@pytest.fixture(params=["embedded", "redis+postgres"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {
        "NUVEM_QUEUE_URL": request.getfixturevalue("clean_redis"),
        "NUVEM_RECORDS_URL": request.getfixturevalue("postgres_url"),
    }


@pytest.fixture
def app_root(tmp_path: Path) -> Iterator[Path]:
    with app_folder(tmp_path, HANDLER, STACK) as root:
        yield root


async def test_no_job_is_lost_when_gateway_and_replica_crash(
    app_root: Path, backend: dict[str, str]
) -> None:
    gateway = Nuvem(app_root, {**backend, "NUVEM_JOB_LEASE": "2"})
    gateway.start(*UP)
    try:
        await gateway.ready("work", 2)
        async with callback_receiver() as receiver:
            accepted = await _run_with_crashes(gateway, app_root, receiver.url)
            assert len(accepted) == JOBS
            await _all_succeeded(gateway, accepted)
            await wait_until(
                lambda: set(receiver.by_call_id()) >= set(accepted.values()),
                within=60,
                what="every callback",
            )
            for index, job_id in accepted.items():
                callback = receiver.by_call_id()[job_id]
                assert callback.body == f"job-{index}".encode()
                assert callback.headers["x-function-status"] == "200"
    finally:
        gateway.stop()
        print("".join(gateway.log(i) for i in range(len(gateway.logs)))[-3000:])


async def _run_with_crashes(gateway: Nuvem, root: Path, callback_url: str) -> dict[int, str]:
    accepted: dict[int, str] = {}
    pending = list(range(JOBS))

    async def submitter(http: httpx.AsyncClient) -> None:
        while pending:
            index = pending.pop(0)
            while True:
                try:
                    response = await http.post(
                        "/async-function/work?seconds=0.05",
                        content=f"job-{index}".encode(),
                        headers={
                            "X-Callback-Url": callback_url,
                            "Idempotency-Key": f"job-{index}",
                        },
                    )
                    if response.status_code == 202:
                        accepted[index] = response.headers["x-call-id"]
                        break
                    assert response.status_code >= 500, response.text
                except httpx.TransportError:
                    pass  # the gateway is down: retry, as a client would
                await asyncio.sleep(0.05)

    async def crasher() -> None:
        await wait_until(lambda: len(accepted) >= 120, within=60, what="120 accepted")
        gateway.kill()
        gateway.start(*UP)
        await gateway.ready("work", 2)
        await wait_until(lambda: len(accepted) >= 250, within=60, what="250 accepted")
        victim = worker_pids(root)[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: len(accepted) >= 380, within=60, what="380 accepted")
        gateway.kill()
        gateway.start(*UP)
        await gateway.ready("work", 2)

    async with httpx.AsyncClient(
        base_url=gateway.url, auth=("admin", ADMIN_PASSWORD), timeout=10
    ) as http:
        await asyncio.gather(crasher(), *(submitter(http) for _ in range(8)))
    return accepted


async def _all_succeeded(gateway: Nuvem, accepted: dict[int, str]) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, auth=("admin", ADMIN_PASSWORD), timeout=10
    ) as http:
        listing: list[dict[str, object]] = []

        async def all_done() -> bool:
            nonlocal listing
            listing = (await http.get("/system/jobs?limit=1000")).json()
            return sum(1 for j in listing if j["state"] == "succeeded") >= JOBS

        await wait_until(
            all_done,
            within=90,
            what=lambda: f"jobs all succeeded: {sorted({str(j['state']) for j in listing})}",
        )
        assert len(listing) == JOBS  # idempotent retries made no second job
        assert {j["id"] for j in listing} == set(accepted.values())
        reclaimed = [j for j in listing if int(str(j["attempts"])) > 1]
        print(f"{len(reclaimed)} jobs took more than one attempt")
        for index in (0, JOBS // 2, JOBS - 1):
            result = await http.get(f"/system/jobs/{accepted[index]}/result")
            assert result.content == f"job-{index}".encode()
