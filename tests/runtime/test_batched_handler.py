"""A user's class with predict(batch), batched by the worker as the stack declares."""

from __future__ import annotations

import asyncio

import pytest

from support import Running

pytestmark = pytest.mark.anyio


async def hold_the_batcher(gateway: Running, name: str) -> asyncio.Task[object]:
    """A call that keeps the replica's batch thread busy, so the next calls queue together."""
    task = asyncio.ensure_future(gateway.invoke(name, b"sleep:1.5"))
    await asyncio.sleep(0.5)
    return task


async def test_calls_arriving_together_share_one_predict(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          doubler:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 8, max_delay_ms: 1000}
        """
    )
    held = await hold_the_batcher(gateway, "doubler")
    responses = await asyncio.gather(
        *(gateway.invoke("doubler", str(n).encode()) for n in range(6))
    )
    await held
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
    held = await hold_the_batcher(gateway, "doubler")
    ok, boom, bad, fine = await asyncio.gather(
        *(gateway.invoke("doubler", body) for body in (b"1", b"boom", b"x", b"2"))
    )
    await held
    assert (ok.status_code, fine.status_code) == (200, 200)
    assert ok.json()["batch"] == 4  # they did run together
    assert boom.status_code == 500
    assert "ValueError: boom is not a number" in boom.json()["error"]
    assert bad.status_code == 400
    assert bad.json() == {"error": "'x' is not a number"}


async def test_a_batch_never_waits_for_calls_that_cannot_reach_it(gateway: Running) -> None:
    """A lone call, and calls queued behind a replica with no free slot, run at once: with
    max_delay_ms of 20 s, waiting would outlast the 10 s these calls are given."""
    await gateway.deploy(
        """
        functions:
          lone:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 8, max_delay_ms: 20000}
          narrow:
            handler: batch_handlers:Doubler
            batching: {max_batch_size: 8, max_delay_ms: 20000}
            max_inflight: 1
        """
    )
    async with asyncio.timeout(10):
        alone = await gateway.invoke("lone", b"3")
        held = await hold_the_batcher(gateway, "narrow")  # its one slot: the next calls queue
        queued = await asyncio.gather(*(gateway.invoke("narrow", b"%d" % n) for n in range(3)))
        await held
    assert alone.json()["double"] == 6
    assert [r.json()["double"] for r in queued] == [0, 2, 4]
    assert {r.json()["batch"] for r in queued} == {1}  # one slot: never more than one
