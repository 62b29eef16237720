"""`drain`: how a replica that was asked to stop ends, whatever runs it.

Calls in flight get up to the grace period; then the replica is told to end (SIGTERM for
a worker, `podman stop` for a container) and given what is left of the grace, at least a
second; past that it is killed, with DRAIN_OVERRUN as its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nuvem.runtime.replica import DRAIN_OVERRUN


async def drain(
    idle: asyncio.Event,  # set while no call is in flight
    dead: asyncio.Event,  # set once the replica has ended
    grace: float,
    clock: Callable[[], float],
    terminate: Callable[[], Awaitable[None]],
    kill: Callable[[str], None],
) -> None:
    deadline = clock() + grace
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(idle.wait(), grace)
    await terminate()
    try:
        await asyncio.wait_for(dead.wait(), timeout=max(1.0, deadline - clock()))
    except TimeoutError:
        kill(DRAIN_OVERRUN)
        await dead.wait()
