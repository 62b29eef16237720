"""Every way in calls a function alike (routing/invocation.py): `/function`, model protocols
and async jobs are counted, their answers checked and their metrics observed the same way."""

from __future__ import annotations

import json

import pytest

from support import Running, wait_until

pytestmark = pytest.mark.anyio

STACK = """
functions:
  echo: {handler: 'handlers:echo'}
  respond: {handler: 'handlers:respond', jobs: {retries: 0}}
"""


async def test_async_job_calls_count_in_invocations_with_their_status(gateway: Running) -> None:
    await gateway.deploy(STACK)
    store = gateway.platform.jobs.store
    ok = await gateway.admin.post("/async-function/echo", content=b"x")
    # A status HTTP does not have: the job's call is checked like a /function call.
    bad = await gateway.admin.post("/async-function/respond", content=b'{"status": 1000}')
    assert (ok.status_code, bad.status_code) == (202, 202)
    jobs = [ok.headers["x-call-id"], bad.headers["x-call-id"]]

    def finished() -> bool:
        return all((job := store.get(job_id)) is not None and job.state.finished for job_id in jobs)

    await wait_until(finished, within=30, what="both jobs finished")
    failed = (await gateway.admin.get(f"/system/jobs/{jobs[1]}")).json()
    assert (failed["state"], failed["status"]) == ("failed", 500)
    assert "status 1000" in failed["error"]

    metrics = (await gateway.admin.get("/metrics")).text
    for code, name in (("200", "echo"), ("500", "respond")):
        for metric in ("gateway_function_invocation_total", "gateway_functions_seconds_count"):
            assert f'{metric}{{code="{code}",function_name="{name}"}} 1.0' in metrics
    for name in ("echo", "respond"):
        info = (await gateway.admin.get(f"/system/function/{name}")).json()
        assert info["invocationCount"] == 1, name

    # A synchronous call of the same function adds to the same counts.
    assert (await gateway.invoke("echo", b"y")).status_code == 200
    assert (await gateway.admin.get("/system/function/echo")).json()["invocationCount"] == 2
    metrics = (await gateway.admin.get("/metrics")).text
    assert 'gateway_function_invocation_total{code="200",function_name="echo"} 2.0' in metrics


async def test_job_results_keep_checked_headers(gateway: Running) -> None:
    await gateway.deploy(STACK)
    spec = {"status": 201, "body": "made", "headers": {"X-Made": "yes", "Connection": "close"}}
    submitted = await gateway.admin.post("/async-function/respond", content=json.dumps(spec))
    job_id = submitted.headers["x-call-id"]
    store = gateway.platform.jobs.store

    def finished() -> bool:
        job = store.get(job_id)
        return job is not None and job.state.finished

    await wait_until(finished, within=30, what="job finished")
    result = await gateway.admin.get(f"/system/jobs/{job_id}/result")
    assert (result.status_code, result.text) == (201, "made")
    assert result.headers["x-made"] == "yes"
    assert result.headers.get("connection") != "close"  # hop-by-hop: the gateway's own
