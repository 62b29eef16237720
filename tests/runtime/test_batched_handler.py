"""A user's class with predict(batch), batched by the worker as the stack declares."""

from __future__ import annotations

import asyncio

import pytest

from support import Running

pytestmark = pytest.mark.anyio


async def test_calls_arriving_together_share_one_predict(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          doubler:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 8, max_delay_ms: 1000}
        """
    )
    responses = await asyncio.gather(
        *(gateway.invoke("doubler", str(n).encode()) for n in range(6))
    )
    assert [r.json()["double"] for r in responses] == [0, 2, 4, 6, 8, 10]
    assert max(r.json()["batch"] for r in responses) > 1
    assert len({r.json()["pid"] for r in responses}) == 1


async def test_a_failing_item_fails_only_its_own_call(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          doubler:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 4, max_delay_ms: 1000}
        """
    )
    ok, boom, bad, fine = await asyncio.gather(
        *(gateway.invoke("doubler", body) for body in (b"1", b"boom", b"x", b"2"))
    )
    assert (ok.status_code, fine.status_code) == (200, 200)
    assert ok.json()["batch"] == 4  # they did run together
    assert boom.status_code == 500
    assert "ValueError: boom is not a number" in boom.json()["error"]
    assert bad.status_code == 400
    assert bad.json() == {"error": "'x' is not a number"}
