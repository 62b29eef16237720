"""The access log's lines (pure formatting and who a call's credentials name), and a real
gateway writing them as text on the `nuvem.access` logger for every invoke route."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest

from nuvem.errors import BadRequest
from nuvem.gateway.access_log import (
    LOGGER,
    AccessEntry,
    AccessFormat,
    access_format,
    access_log,
    format_entry,
    key_id,
)
from nuvem.security import new_api_key
from support import serving, wait_until

ENTRY = AccessEntry(
    time=1_764_000_000.25,
    function="echo",
    version=None,
    status=200,
    duration_ms=1.23456,
    call_id="abc",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    key_id="k1",
    replica="echo-1",
    method="POST",
    path="/function/echo",
)


def test_json_lines_carry_every_field() -> None:
    line = json.loads(format_entry(ENTRY, AccessFormat.JSON))
    assert line == {
        "time": "2025-11-24T16:00:00.250Z",
        "function": "echo",
        "version": None,
        "status": 200,
        "duration_ms": 1.235,
        "call_id": "abc",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "key_id": "k1",
        "replica": "echo-1",
        "method": "POST",
        "path": "/function/echo",
    }


def test_text_lines_are_key_value_pairs_quoted_where_needed() -> None:
    line = format_entry(ENTRY, AccessFormat.TEXT)
    assert line.startswith("time=2025-11-24T16:00:00.250Z function=echo version=- status=200 ")
    odd = ENTRY._replace(path='/function/a b="c"')
    pairs = dict(token.split("=", 1) for token in shlex.split(format_entry(odd, AccessFormat.TEXT)))
    assert pairs["path"] == '/function/a b="c"'
    assert pairs["duration_ms"] == "1.235"


@pytest.mark.parametrize(
    "odd",
    ['/function/a b="c"', "/function/back\\slash", "/function/new\nline", "/function/é€🙂", ""],
)
def test_any_value_reads_back_as_it_was(odd: str) -> None:
    entry = ENTRY._replace(path=odd, call_id=odd, function=odd, version="v=1")
    line = json.loads(format_entry(entry, AccessFormat.JSON))
    assert (line["path"], line["call_id"], line["function"], line["version"]) == (
        odd,
        odd,
        odd,
        "v=1",
    )
    text = format_entry(entry, AccessFormat.TEXT)
    assert "\n" not in text  # one line, whatever the values
    pairs = dict(token.split("=", 1) for token in shlex.split(text))
    if odd.isprintable():  # shlex reads JSON's escapes of control characters as they are
        assert (pairs["path"], pairs["call_id"], pairs["version"]) == (odd, odd, "v=1")


def test_key_ids_never_the_key() -> None:
    record_id, _, full = new_api_key()
    assert key_id(f"Bearer {full}", None) == record_id
    assert key_id(None, full) == record_id
    assert key_id("Basic YWRtaW46eA==", None) == "admin"
    assert key_id(None, None) is None
    assert key_id("Bearer not-a-key", None) == "malformed"


def test_formats_are_checked_and_off_costs_nothing() -> None:
    assert access_format("JSON") is AccessFormat.JSON
    assert access_format("") is AccessFormat.OFF
    assert access_log(AccessFormat.OFF) is None
    with pytest.raises(BadRequest, match="off, text, json"):
        access_format("yaml")
    for flush in (0.0, -1.0, float("nan")):
        with pytest.raises(BadRequest, match="NUVEM_ACCESS_LOG_FLUSH"):
            access_log(AccessFormat.JSON, flush=flush)


@pytest.mark.anyio
async def test_a_gateway_logs_every_invoke_route_as_text(
    tmp_path: Path, handlers_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serving(handlers_dir, tmp_path / "state", access_log="text") as gateway:
        await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
        answers = [
            await gateway.invoke("echo", b"hi"),
            await gateway.admin.post("/async-function/echo", content=b"hi"),
            await gateway.admin.post("/v2/models/nothing/infer", content=b"{}"),
            await gateway.admin.post("/predictions/nothing", content=b"x"),
        ]
        health = await gateway.admin.get("/v2/health/live")
        assert health.status_code == 200
        call_ids = [a.headers.get("x-call-id") for a in answers[:2]]

        def lines() -> list[dict[str, str]]:
            found = [r.getMessage() for r in caplog.records if r.name == LOGGER]
            return [dict(t.split("=", 1) for t in shlex.split(line)) for line in found]

        await wait_until(lambda: len(lines()) >= 4, 10, what="four access lines")
    logged = lines()
    assert len(logged) == 4  # the health check is not a call
    by_path = {line["path"]: line for line in logged}
    assert by_path["/function/echo"]["status"] == "200"
    assert by_path["/function/echo"]["call_id"] == call_ids[0]
    assert by_path["/function/echo"]["key_id"] == "admin"
    assert by_path["/function/echo"]["replica"].startswith("echo")
    assert by_path["/async-function/echo"]["status"] == "202"
    assert by_path["/async-function/echo"]["call_id"] == call_ids[1]
    assert by_path["/v2/models/nothing/infer"]["status"] == "404"
    assert by_path["/v2/models/nothing/infer"]["function"] == "nothing"
    assert by_path["/predictions/nothing"]["status"] == "404"
    for line, answer in zip(
        [by_path[p] for p in ("/function/echo", "/async-function/echo")], answers[:2], strict=True
    ):
        assert line["trace_id"] == answer.headers["traceparent"].split("-")[1]
