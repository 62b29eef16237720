"""Parse failures and on-purpose refusals of handlers reach the caller as 4xx (real workers)."""

from __future__ import annotations

import asyncio

import pytest

from support import Running

pytestmark = pytest.mark.anyio

STACK = """
functions:
  parses-json: {handler: 'handlers:parses_json'}
  parses-text: {handler: 'handlers:parses_text', threads: 4}
  refuses: {handler: 'handlers:refuses'}
"""


async def test_unparseable_bodies_are_the_callers_400(gateway: Running) -> None:
    await gateway.deploy(STACK)
    good = await gateway.invoke("parses-json", b'{"a": 1}')
    assert (good.status_code, good.json()) == (200, {"parsed": {"a": 1}})
    for body, named in (
        (b"{not json", "not valid JSON: Expecting property name"),
        (b"", "request body is empty"),
        (b'"\xff"', "not UTF-8"),
    ):
        response = await gateway.invoke("parses-json", body)
        assert response.status_code == 400, (body, response.text)
        assert named in response.json()["error"]
    text = await gateway.invoke("parses-text", b"\xc3\x28")
    assert text.status_code == 400
    assert "not UTF-8 text: invalid continuation byte at byte 0" in text.json()["error"]
    assert (await gateway.invoke("parses-text", b"ok")).text == "OK"


async def test_http_error_answers_its_status_and_message(gateway: Running) -> None:
    await gateway.deploy(STACK)
    refused = await gateway.admin.post("/function/refuses?who=stranger")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json() == {"error": "only friends may call; add ?who=friend"}
    # The replica is not harmed by answering 4xx: the next call is served by the same one.
    welcome = await gateway.admin.post("/function/refuses?who=friend")
    assert (welcome.status_code, welcome.text) == (200, "welcome")
    assert len(gateway.platform.controller.get("refuses").ready()) == 1


async def test_http_error_from_one_item_of_a_batch(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          doubler:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 4, max_delay_ms: 200}
        """
    )
    ok, forbidden = await asyncio.gather(
        gateway.invoke("doubler", b"3"), gateway.invoke("doubler", b"forbidden")
    )
    assert (ok.status_code, ok.json()["double"]) == (200, 6)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": "forbidden is refused on purpose"}
