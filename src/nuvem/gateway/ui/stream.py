"""`/ui/stream`: the live feed of one tab, as server-sent events.

Each tab holds one stream; every message is the shared snapshot the sampler serialized
once, so a tab costs a write per second and nothing else. A comment line goes out when
nothing new came for a while, so proxies keep the connection and a closed tab is noticed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from nuvem.gateway.ui.snapshot import Sampler

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000  # how soon the browser reconnects after the gateway went away


async def messages(sampler: Sampler, keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    """Server-sent events: the latest snapshot at once, then each new one as it comes,
    until the sampler is closed."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    version = -1
    while not sampler.closed:
        if await sampler.changed(version, keepalive):
            version = sampler.version
            yield b"event: snapshot\ndata: " + sampler.latest + b"\n\n"
        elif not sampler.closed:
            yield b": keepalive\n\n"


def stream(sampler: Sampler) -> StreamingResponse:
    return StreamingResponse(
        messages(sampler),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
