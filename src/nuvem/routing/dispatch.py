"""One call, end to end on the data plane: a slot, the call, failover, the deadline."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Protocol

from nuvem.errors import DeadlineExceeded, ReplicaDied, Unavailable
from nuvem.routing.router import Routable, Router
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult

MAX_FAILOVERS = 3


class Target(Protocol):
    """What dispatching needs to know of a deployed function."""

    @property
    def name(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def idempotent(self) -> bool: ...
    @property
    def router(self) -> Router: ...
    @property
    def removed(self) -> bool: ...
    def unavailable_reason(self) -> str | None: ...
    def unavailable_error(self) -> Unavailable | None: ...


async def dispatch(
    target: Target,
    meta: CallMeta,
    body: bytes,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
) -> CallResult:
    """Run one call on the least busy replica within the function's deadline.

    A replica that dies mid-call fails the call with 502, unless the function is idempotent:
    then the call runs again on another replica, up to MAX_FAILOVERS times.
    """
    router = target.router
    arrived = clock()
    if deadline is None:
        deadline = arrived + target.timeout
    router.arrivals += 1
    failovers = 0
    cold = False
    while True:
        replica = router.try_acquire()
        if replica is None:
            refusal = target.unavailable_error()
            if refusal is not None:
                raise refusal
            # No replica ready at all (e.g. scaled to zero): the call waits for a cold start.
            cold = cold or not router.has_ready()
            replica = await router.acquire(deadline)
        began = clock()
        # What can still reach this replica: a batch that waits for calls its full slots
        # keep at the gateway would wait out its whole max_delay for nothing.
        meta.behind = min(router.queued, router.max_inflight - replica.inflight)
        meta.replica = replica.id
        future = replica.submit(meta, body)
        if not future.done():
            await _wait(future, deadline - began, router, replica, target)
        try:
            result = future.result()
        except ReplicaDied:
            router.release(replica)
            refusal = target.unavailable_error() if target.removed else None
            if refusal is not None:
                # Killed because the function or the whole platform went away (a forced
                # stop): that is the answer, not the replica's death.
                raise refusal from None
            if target.idempotent and failovers < MAX_FAILOVERS and clock() < deadline:
                failovers += 1
                continue
            raise
        except BaseException:
            router.release(replica)
            raise
        router.release(replica)
        finished = clock()
        router.observe_service_time(finished - began)
        if cold and router.on_cold_call is not None:
            router.on_cold_call(finished - arrived)
        return result


async def _wait(
    future: asyncio.Future[CallResult],
    remaining: float,
    router: Router,
    replica: Routable,
    target: Target,
) -> None:
    """Wait for the call's answer or its deadline, whichever comes first.

    One timer and one waiter future per call: cheaper than wait_for(shield(...)), which
    creates a task per call on the hottest path of the gateway.
    """
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    future.add_done_callback(wake)
    timer = loop.call_later(max(remaining, 0.0), wake)
    try:
        await woken
    except asyncio.CancelledError:
        # The caller went away: the replica still runs the call; free its slot when done.
        future.remove_done_callback(wake)
        future.add_done_callback(functools.partial(_release_late, router, replica))
        raise
    finally:
        timer.cancel()
    if not future.done():
        future.remove_done_callback(wake)
        # The replica is still busy with this call: its slot frees only when it answers.
        future.add_done_callback(functools.partial(_release_late, router, replica))
        raise DeadlineExceeded(
            f"function {target.name!r} did not answer within its timeout of {target.timeout:g}s",
            "raise `timeout` in the stack file, or make the handler faster",
        )


def _release_late(router: Router, replica: Routable, future: asyncio.Future[CallResult]) -> None:
    if not future.cancelled():
        future.exception()  # mark retrieved: a late failure is expected, not an error to log
    router.release(replica)
