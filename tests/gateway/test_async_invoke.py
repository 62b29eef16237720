"""Async invocations through a real gateway: 202 at once, results, callbacks, retries."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from support import Running, callback_receiver, wait_until

pytestmark = pytest.mark.anyio


async def wait_state(
    gateway: Running, job_id: str, *states: str, within: float = 30, field: str = "state"
) -> dict[str, Any]:
    """The job as `/system/jobs/{id}` shows it, once its `field` is one of `states`."""
    seen: dict[str, Any] = {}

    async def reached() -> dict[str, Any] | None:
        nonlocal seen
        seen = (await gateway.admin.get(f"/system/jobs/{job_id}")).json()
        return seen if seen[field] in states else None

    # Annotated: a result with Any in its type makes wait_until's overloads answer Any.
    found: dict[str, Any] | None = await wait_until(
        reached,
        within,
        what=lambda: f"job {job_id} {field} {states}; it stayed {seen.get(field)!r}",
    )
    assert found is not None
    return found


async def test_submit_answers_202_then_result_is_collected(gateway: Running) -> None:
    await gateway.deploy("functions: {describe: {handler: 'handlers:describe'}}")
    response = await gateway.admin.post(
        "/async-function/describe/sub?x=1", content=b"payload", headers={"X-Custom": "yes"}
    )
    assert response.status_code == 202
    job_id = response.headers["x-call-id"]
    assert response.json() == {"id": job_id, "function": "describe", "state": "queued"}
    assert response.headers["location"] == f"/system/jobs/{job_id}"
    status = await wait_state(gateway, job_id, "succeeded")
    assert status["attempts"] == 1
    assert status["status"] == 200
    result = await gateway.admin.get(f"/system/jobs/{job_id}/result")
    assert result.status_code == 200
    assert result.headers["x-function-status"] == "200"
    seen = result.json()
    assert seen["body"] == "payload"
    assert seen["path"] == "/sub"
    assert seen["query"] == {"x": "1"}
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["x-call-id"] == job_id
    assert "authorization" not in seen["headers"]


async def test_callback_receives_the_result_with_openfaas_headers(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    async with callback_receiver() as receiver:
        response = await gateway.admin.post(
            "/async-function/echo",
            content=b"hello",
            headers={"X-Callback-Url": receiver.url + "/done"},
        )
        job_id = response.headers["x-call-id"]
        await wait_until(lambda: len(receiver.received) == 1, within=30, what="callback")
    (callback,) = receiver.received
    assert callback.path == "/done"
    assert callback.body == b"hello"
    assert callback.headers["x-call-id"] == job_id
    assert callback.headers["x-function-status"] == "200"
    assert callback.headers["x-function-name"] == "echo"
    assert float(callback.headers["x-duration-seconds"]) >= 0
    assert callback.headers["x-retry"] == "0"
    assert int(callback.headers["x-retry-max"]) >= 1
    # The receiver has answered; the runner then records the delivery: wait for that.
    status = await wait_state(gateway, job_id, "delivered", field="callback_state")
    assert status["state"] == "succeeded"
    assert status["callback_url"] == receiver.url + "/done"
    assert status["callback_attempts"] == 1


async def test_callback_is_retried_until_delivered(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    gateway.platform.jobs.runner.options = type(gateway.platform.jobs.runner.options)(
        callback_backoff=0.05, callback_max_backoff=0.1
    )
    async with callback_receiver() as receiver:
        receiver.fail_next = 2
        response = await gateway.admin.post(
            "/async-function/echo", content=b"x", headers={"X-Callback-Url": receiver.url}
        )
        await wait_until(lambda: len(receiver.received) == 1, within=30, what="callback")
    assert receiver.received[0].headers["x-retry"] == "2"
    # Read the job once the runner has recorded the delivery, not as the receiver answers.
    job_id = response.headers["x-call-id"]
    job = await wait_state(gateway, job_id, "delivered", field="callback_state")
    assert job["callback_attempts"] == 3


async def test_a_callback_host_that_does_not_resolve_is_retried(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    gateway.platform.jobs.runner.options = type(gateway.platform.jobs.runner.options)(
        callback_attempts=3, callback_backoff=0.05, callback_max_backoff=0.1
    )
    response = await gateway.admin.post(
        "/async-function/echo",
        content=b"x",
        headers={"X-Callback-Url": "http://no-such-host.invalid/done"},
    )
    job = await wait_state(gateway, response.headers["x-call-id"], "failed", field="callback_state")
    assert job["callback_attempts"] == 3  # retried like a receiver that is down
    assert "'no-such-host.invalid' does not resolve" in job["callback_error"]
    assert "NUVEM_CALLBACK_ALLOW_HOSTS" not in job["callback_error"]


async def test_failing_function_fails_without_retry(gateway: Running) -> None:
    await gateway.deploy("functions: {fail: {handler: 'handlers:fail'}}")
    response = await gateway.admin.post("/async-function/fail", content=b"x")
    status = await wait_state(gateway, response.headers["x-call-id"], "failed")
    assert status["attempts"] == 1
    assert status["status"] == 500
    result = await gateway.admin.get(f"/system/jobs/{status['id']}/result")
    assert result.status_code == 500
    assert "not acceptable" in result.text


async def test_retried_status_ends_in_dead_letter(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          respond:
            handler: 'handlers:respond'
            jobs: {retries: 2, backoff: 10ms, max_backoff: 20ms}
        """
    )
    spec = json.dumps({"status": 503, "body": "busy"}).encode()
    response = await gateway.admin.post("/async-function/respond", content=spec)
    status = await wait_state(gateway, response.headers["x-call-id"], "dead_letter")
    assert status["attempts"] == 3
    assert status["status"] == 503
    assert "after 3 attempts" in status["error"]


async def test_idempotency_key_gives_back_the_same_job(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    headers = {"Idempotency-Key": "order-42"}
    first = await gateway.admin.post("/async-function/echo", content=b"1", headers=headers)
    second = await gateway.admin.post("/async-function/echo", content=b"2", headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.headers["x-call-id"] == second.headers["x-call-id"]
    assert second.headers["idempotent-replayed"] == "true"
    await wait_state(gateway, first.headers["x-call-id"], "succeeded")
    result = await gateway.admin.get(f"/system/jobs/{first.headers['x-call-id']}/result")
    assert result.content == b"1"


async def test_cancel_a_queued_job(gateway: Running) -> None:
    await gateway.deploy("functions: {sleep: {handler: 'handlers:sleep', jobs: {concurrency: 1}}}")
    first = await gateway.admin.post("/async-function/sleep?seconds=1")
    second = await gateway.admin.post("/async-function/sleep?seconds=1")
    job_id = second.headers["x-call-id"]
    cancelled = await gateway.admin.post(f"/system/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    await wait_state(gateway, first.headers["x-call-id"], "succeeded")
    status = (await gateway.admin.get(f"/system/jobs/{job_id}")).json()
    assert status["state"] == "cancelled"
    assert status["attempts"] == 0
    never = await gateway.admin.get(f"/system/jobs/{job_id}/result")
    assert never.status_code == 409
    # A final state: no "yet", no Retry-After that would keep a client polling.
    assert "retry-after" not in never.headers
    assert never.headers["x-job-state"] == "cancelled"
    assert "yet" not in never.json()["error"]
    assert "cancelled" in never.json()["error"]


async def test_result_of_an_unfinished_job_says_retry(gateway: Running) -> None:
    await gateway.deploy("functions: {sleep: {handler: 'handlers:sleep', jobs: {concurrency: 1}}}")
    running = await gateway.admin.post("/async-function/sleep?seconds=1")
    early = await gateway.admin.get(f"/system/jobs/{running.headers['x-call-id']}/result")
    assert early.status_code == 409
    assert early.headers["retry-after"] == "1"
    assert "yet" in early.json()["error"]


async def test_list_filters_by_function_and_state(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    ids = [
        (await gateway.admin.post("/async-function/echo", content=b"x")).headers["x-call-id"]
        for _ in range(3)
    ]
    for job_id in ids:
        await wait_state(gateway, job_id, "succeeded")
    listed = (await gateway.admin.get("/system/jobs?function=echo&state=succeeded")).json()
    assert [j["id"] for j in listed] == ids[::-1]
    bad = await gateway.admin.get("/system/jobs?state=nope")
    assert bad.status_code == 400
    assert "'queued', 'running'" in bad.json()["error"]  # names the states it takes


async def test_api_keys_scope_submit_and_collect(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          echo: {handler: 'handlers:echo'}
          describe: {handler: 'handlers:describe'}
        """
    )
    created = (
        await gateway.admin.post("/system/keys", json={"name": "k", "functions": ["echo"]})
    ).json()
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {created['key']}"}
    ) as client:
        assert (await client.post("/async-function/echo", content=b"x")).status_code == 202
        denied = await client.post("/async-function/describe", content=b"x")
        assert denied.status_code == 403
        other = await gateway.admin.post("/async-function/describe", content=b"x")
        hidden = await client.get(f"/system/jobs/{other.headers['x-call-id']}")
        assert hidden.status_code == 403
        assert (await client.get("/system/jobs")).status_code == 401
        assert (await client.get("/system/jobs?function=echo")).status_code == 200
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.post("/async-function/echo")).status_code == 401


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http or https"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("not a url", "http or https"),
        ("", "X-Callback-Url is empty"),
    ],
)
async def test_bad_callback_urls_are_refused(gateway: Running, url: str, problem: str) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    response = await gateway.admin.post("/async-function/echo", headers={"X-Callback-Url": url})
    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert (await gateway.admin.get("/system/jobs")).json() == []


async def test_unknown_function_is_404(gateway: Running) -> None:
    response = await gateway.admin.post("/async-function/nope")
    assert response.status_code == 404
    assert "not deployed" in response.json()["error"]


async def test_openapi_describes_async_routes_and_jobs_api(gateway: Running) -> None:
    schema = (await gateway.admin.get("/openapi.json")).json()
    submit = schema["paths"]["/async-function/{name}"]["post"]
    assert "202" in submit["responses"]
    assert {p["name"] for p in submit["parameters"]} >= {"X-Callback-Url", "Idempotency-Key"}
    assert "/system/jobs/{job_id}/result" in schema["paths"]
    assert "/system/jobs/{job_id}/cancel" in schema["paths"]


async def test_jobs_timeout_outlasts_the_call_timeout(gateway: Running) -> None:
    await gateway.deploy(
        "functions: {sleep: {handler: 'handlers:sleep', timeout: 0.5s, jobs: {timeout: 10s}}}"
    )
    assert (await gateway.admin.post("/function/sleep?seconds=1.5")).status_code == 504
    response = await gateway.admin.post("/async-function/sleep?seconds=1.5")
    status = await wait_state(gateway, response.headers["x-call-id"], "succeeded", "failed")
    assert status["state"] == "succeeded"
