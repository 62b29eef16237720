"""`drain`: how a replica that was asked to stop ends, whatever runs it; `Draining`, the
stop half of a replica that ends by `_terminate` (asked) or `kill` (forced).

Calls in flight get up to the grace period; then the replica is told to end (SIGTERM for
a worker, `podman stop` for a container) and given what is left of the grace, at least a
second; past that it is killed, with DRAIN_OVERRUN as its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nuvem.runtime.replica import DRAIN_OVERRUN
from nuvem.runtime.replica_state import ReplicaState


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


class Draining:
    """`wait_dead` and `drain_and_stop` for a replica class that keeps `_idle` (set while no
    call is in flight), `_dead` (set once it has ended) and `_clock`, and defines how it is
    asked to end (`_terminate`) and made to (`kill`)."""

    state: ReplicaState
    retired: bool
    _idle: asyncio.Event
    _dead: asyncio.Event
    _clock: Callable[[], float]

    async def _terminate(self) -> None:
        raise NotImplementedError

    def kill(self, reason: str) -> None:
        raise NotImplementedError

    async def wait_dead(self) -> None:
        await self._dead.wait()

    async def drain_and_stop(self, grace: float) -> None:
        """Stop taking calls, let those in flight finish (up to `grace` s), then end."""
        if self.state is ReplicaState.DEAD:
            return
        self.retired = True
        self.state = ReplicaState.DRAINING
        await drain(self._idle, self._dead, grace, self._clock, self._terminate, self.kill)
