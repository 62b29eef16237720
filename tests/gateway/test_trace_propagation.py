"""W3C traceparent through a real gateway and real workers: the handler sees the client's
trace with the gateway's span as its parent, the answer names the same trace, and async jobs
carry it into their record, every attempt and the callback."""

from __future__ import annotations

import json

import pytest

from nuvem.routing.trace_context import parse_traceparent
from support import Running, callback_receiver, wait_until

pytestmark = pytest.mark.anyio

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{CLIENT_SPAN}-01"


def fields(header: str) -> tuple[str, str, int]:
    parsed = parse_traceparent(header)
    assert parsed is not None, header
    return parsed


async def test_the_handler_sees_the_trace_with_the_gateways_span(gateway: Running) -> None:
    await gateway.deploy("functions: {describe: {handler: 'handlers:describe'}}")
    response = await gateway.invoke(
        "describe", headers={"traceparent": TRACEPARENT, "tracestate": "rojo=1,congo=2"}
    )
    assert response.status_code == 200
    seen = response.json()["headers"]
    trace_id, parent_id, flags = fields(seen["traceparent"])
    assert (trace_id, flags) == (TRACE, 1)
    assert parent_id != CLIENT_SPAN  # the gateway's own span, not the client's
    assert seen["tracestate"] == "rojo=1,congo=2"
    # The answer names the trace and the span the handler was called from.
    assert response.headers["traceparent"] == seen["traceparent"]
    assert response.headers["x-call-id"] == seen["x-call-id"]  # the call id works as before


@pytest.mark.parametrize(
    "sent",
    [
        None,
        "garbage",
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{CLIENT_SPAN}-01",
        f"ff-{TRACE}-{CLIENT_SPAN}-01",
    ],
)
async def test_a_missing_or_malformed_traceparent_starts_a_new_trace(
    gateway: Running, sent: str | None
) -> None:
    await gateway.deploy("functions: {describe: {handler: 'handlers:describe'}}")
    headers = {"tracestate": "rojo=1"}
    if sent is not None:
        headers["traceparent"] = sent
    response = await gateway.invoke("describe", headers=headers)
    assert response.status_code == 200
    seen = response.json()["headers"]
    trace_id, _, _ = fields(seen["traceparent"])
    assert trace_id != TRACE
    assert "tracestate" not in seen  # it belonged to the refused context
    assert response.headers["traceparent"] == seen["traceparent"]


async def test_two_calls_without_a_trace_get_two_traces(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    first, second = (await gateway.invoke("echo"), await gateway.invoke("echo"))
    assert fields(first.headers["traceparent"])[0] != fields(second.headers["traceparent"])[0]


async def test_errors_answer_with_the_trace_too(gateway: Running) -> None:
    await gateway.deploy("functions: {fail: {handler: 'handlers:fail'}}")
    failed = await gateway.invoke("fail", headers={"traceparent": TRACEPARENT})
    assert failed.status_code == 500
    assert fields(failed.headers["traceparent"])[0] == TRACE
    async with gateway.client({"traceparent": TRACEPARENT}) as anonymous:
        refused = await anonymous.post("/function/fail")
        assert refused.status_code == 401
        assert fields(refused.headers["traceparent"])[0] == TRACE
        # Without a key, a model that does not exist is refused like any other (401).
        for path in ("/v2/models/nothing/infer", "/predictions/nothing"):
            refused = await anonymous.post(path, content=b"{}")
            assert refused.status_code == 401
            assert fields(refused.headers["traceparent"])[0] == TRACE
    # The admin is told it does not exist (404), and the trace goes on there too.
    for path in ("/v2/models/nothing/infer", "/predictions/nothing"):
        missing = await gateway.admin.post(
            path, content=b"{}", headers={"traceparent": TRACEPARENT}
        )
        assert missing.status_code == 404
        assert fields(missing.headers["traceparent"])[0] == TRACE


async def test_a_handlers_own_traceparent_does_not_replace_the_gateways(gateway: Running) -> None:
    await gateway.deploy("functions: {respond: {handler: 'handlers:respond'}}")
    spec = {"status": 200, "headers": {"traceparent": f"00-{'1' * 32}-{'2' * 16}-00"}}
    response = await gateway.invoke(
        "respond", json.dumps(spec).encode(), headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    assert response.headers.get_list("traceparent") == [response.headers["traceparent"]]
    assert fields(response.headers["traceparent"])[0] == TRACE


async def test_an_async_job_carries_the_trace_to_its_record_handler_and_callback(
    gateway: Running,
) -> None:
    await gateway.deploy("functions: {describe: {handler: 'handlers:describe'}}")
    async with callback_receiver() as receiver:
        submitted = await gateway.admin.post(
            "/async-function/describe",
            content=b"x",
            headers={
                "traceparent": TRACEPARENT,
                "tracestate": "rojo=1",
                "X-Callback-Url": receiver.url + "/done",
            },
        )
        assert submitted.status_code == 202
        job_id = submitted.headers["x-call-id"]
        answered_trace, job_span, _ = fields(submitted.headers["traceparent"])
        assert answered_trace == TRACE
        assert job_span != CLIENT_SPAN
        await wait_until(lambda: len(receiver.received) == 1, within=30, what="the callback")
    record = (await gateway.admin.get(f"/system/jobs/{job_id}")).json()
    assert record["trace_id"] == TRACE
    assert record["traceparent"] == submitted.headers["traceparent"]
    result = await gateway.admin.get(f"/system/jobs/{job_id}/result")
    seen = result.json()["headers"]
    run_trace, run_parent, _ = fields(seen["traceparent"])
    assert run_trace == TRACE
    assert run_parent not in (CLIENT_SPAN, job_span)  # the attempt is a span of its own
    assert seen["tracestate"] == "rojo=1"
    (callback,) = receiver.received
    callback_trace, callback_parent, _ = fields(callback.headers["traceparent"])
    assert callback_trace == TRACE
    assert callback_parent not in (CLIENT_SPAN, job_span, run_parent)
    assert callback.headers["tracestate"] == "rojo=1"
    assert callback.headers["x-call-id"] == job_id
