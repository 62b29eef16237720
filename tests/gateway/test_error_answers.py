"""One renderer (gateway/asgi.py) answers every NuvemError, on raw-ASGI and FastAPI routes:
the same JSON body, Retry-After whenever the error carries one, one realm for every 401."""

from __future__ import annotations

import json

import httpx
import pytest

from nuvem.errors import NotFound, Overloaded, Unauthorized
from nuvem.gateway.asgi import AUTHENTICATE, render_error
from support import Running

pytestmark = pytest.mark.anyio


def test_rendered_errors() -> None:
    status, headers, body = render_error(Overloaded("full", "wait", retry_after=2.4))
    assert status == 429
    assert dict(headers) == {b"content-type": b"application/json", b"retry-after": b"2"}
    assert json.loads(body) == {"error": "full (wait)"}
    assert dict(render_error(Overloaded("full", retry_after=0.1))[1])[b"retry-after"] == b"1"
    assert dict(render_error(Unauthorized("who?"))[1])[b"www-authenticate"] == AUTHENTICATE
    assert dict(render_error(NotFound("gone"))[1]) == {b"content-type": b"application/json"}


async def test_every_401_names_the_same_realm(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    async with gateway.client() as anonymous:
        answers = [
            await anonymous.get("/system/functions"),  # FastAPI
            await anonymous.post("/function/echo"),  # raw ASGI
            await anonymous.post("/async-function/echo"),
            await anonymous.get("/system/jobs"),
        ]
    for answer in answers:
        assert answer.status_code == 401, answer.request.url
        assert answer.headers["www-authenticate"] == AUTHENTICATE.decode(), answer.request.url
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]


async def test_rate_limited_job_reads_answer_429_with_retry_after(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    key = (await gateway.admin.post("/system/keys", json={"rate": 0.1, "burst": 1})).json()["key"]
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        listed = await client.get("/system/jobs", params={"function": "echo"})
        assert listed.status_code == 200
        limited = await client.get("/system/jobs", params={"function": "echo"})
    assert limited.status_code == 429
    assert "rate limit" in limited.json()["error"]
    assert int(limited.headers["retry-after"]) >= 1
