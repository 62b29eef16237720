"""No accepted job is lost: 500 jobs, the gateway SIGKILLed twice and a replica once.

Runs against the embedded SQLite queue and against Redis Streams + PostgreSQL. Clients
retry a submit that met a dead gateway with the same Idempotency-Key, as a real client
would, so a retried submit never makes a second job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callback_receiver import callback_receiver
from gateway_process import ADMIN_PASSWORD, GatewayProcess, kill_workers, worker_pids
from support import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 500
HANDLER = """
import time


def work(req):
    time.sleep(float(req.query.get("seconds", "0.05")))
    return req.body
"""
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
    (tmp_path / "functions.py").write_text(textwrap.dedent(HANDLER))
    (tmp_path / "nuvem.yaml").write_text(textwrap.dedent(STACK))
    yield tmp_path
    kill_workers(tmp_path)


async def test_no_job_is_lost_when_gateway_and_replica_crash(
    app_root: Path, backend: dict[str, str]
) -> None:
    env = {**backend, "NUVEM_JOB_LEASE": "2"}
    gateway = GatewayProcess(app_root, app_root / "nuvem.yaml", env)
    gateway.start()
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
        log = gateway.log.read_text() if gateway.log.exists() else ""
        print(log[-3000:])


async def _run_with_crashes(
    gateway: GatewayProcess, root: Path, callback_url: str
) -> dict[int, str]:
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
        gateway.start()
        await gateway.ready("work", 2)
        await wait_until(lambda: len(accepted) >= 250, within=60, what="250 accepted")
        victim = worker_pids(root)[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: len(accepted) >= 380, within=60, what="380 accepted")
        gateway.kill()
        gateway.start()
        await gateway.ready("work", 2)

    async with httpx.AsyncClient(
        base_url=gateway.url, auth=("admin", ADMIN_PASSWORD), timeout=10
    ) as http:
        await asyncio.gather(crasher(), *(submitter(http) for _ in range(8)))
    return accepted


async def _all_succeeded(gateway: GatewayProcess, accepted: dict[int, str]) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, auth=("admin", ADMIN_PASSWORD), timeout=10
    ) as http:
        listing: list[dict[str, object]] = []

        async def poll() -> bool:
            nonlocal listing
            listing = (await http.get("/system/jobs?limit=1000")).json()
            return sum(1 for j in listing if j["state"] == "succeeded") >= JOBS

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while not await poll():
            states = sorted({str(j["state"]) for j in listing})
            assert loop.time() < deadline, f"jobs not all succeeded: {states}"
            await asyncio.sleep(0.2)
        assert len(listing) == JOBS  # idempotent retries made no second job
        assert {j["id"] for j in listing} == set(accepted.values())
        reclaimed = [j for j in listing if int(str(j["attempts"])) > 1]
        print(f"{len(reclaimed)} jobs took more than one attempt")
        for index in (0, JOBS // 2, JOBS - 1):
            result = await http.get(f"/system/jobs/{accepted[index]}/result")
            assert result.content == f"job-{index}".encode()
