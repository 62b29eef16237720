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
    def unavailable_reason(self) -> str | None: ...


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
    start = clock()
    if deadline is None:
        deadline = start + target.timeout
    failovers = 0
    while True:
        reason = target.unavailable_reason()
        if reason is not None:
            raise Unavailable(
                reason, f"fix the function and deploy it again: nuvem logs {target.name}"
            )
        replica = await router.acquire(deadline)
        began = clock()
        future = replica.submit(meta, body)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), max(deadline - clock(), 0.0))
        except TimeoutError:
            # The replica is still busy with this call: its slot frees only when it answers.
            future.add_done_callback(functools.partial(_release_late, router, replica))
            raise DeadlineExceeded(
                f"function {target.name!r} did not answer within its timeout "
                f"of {target.timeout:g}s",
                "raise `timeout` in the stack file, or make the handler faster",
            ) from None
        except ReplicaDied:
            router.release(replica)
            if target.idempotent and failovers < MAX_FAILOVERS and clock() < deadline:
                failovers += 1
                continue
            raise
        except BaseException:
            router.release(replica)
            raise
        router.release(replica)
        router.observe_service_time(clock() - began)
        return result


def _release_late(router: Router, replica: Routable, future: asyncio.Future[CallResult]) -> None:
    if not future.cancelled():
        future.exception()  # mark retrieved: a late failure is expected, not an error to log
    router.release(replica)
