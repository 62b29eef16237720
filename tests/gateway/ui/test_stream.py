"""The server-sent events of one tab."""

from __future__ import annotations

import pytest

from nuvem.gateway.ui.snapshot import Sampler
from nuvem.gateway.ui.stream import messages
from nuvem.metrics.registry import Metrics
from support import FakeClock

pytestmark = pytest.mark.anyio


async def test_each_snapshot_once_then_the_end_when_closed() -> None:
    sampler = Sampler(Metrics(), dict, clock=FakeClock(5.0))
    sampler.tick()
    stream = messages(sampler, keepalive=0.01)
    assert await anext(stream) == b"retry: 2000\n\n"
    first = await anext(stream)
    assert first.startswith(b"event: snapshot\ndata: {")
    assert first.endswith(b"\n\n")
    assert b'"time":5.0' in first
    assert await anext(stream) == b": keepalive\n\n"  # nothing new within the keepalive
    sampler.tick()
    assert (await anext(stream)).startswith(b"event: snapshot")
    sampler.close()  # the gateway stops: an open tab must not hold the drain
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
