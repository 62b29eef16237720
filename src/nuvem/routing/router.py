"""Per-function routing: the ready replica with the fewest calls in flight, else a bounded
queue in which every call waits no longer than its deadline."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from nuvem.errors import DeadlineExceeded, Overloaded
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult
from nuvem.types import ReplicaState


class Routable(Protocol):
    id: str
    state: ReplicaState
    inflight: int

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]: ...


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[Routable]
    enqueued_at: float = field(default=0.0)


class Router:
    """Slots on replicas for one function. All methods run on the gateway's event loop."""

    def __init__(
        self,
        function: str,
        max_inflight: int,
        max_queue: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function = function
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.replicas: list[Routable] = []
        self._waiters: deque[_Waiter] = deque()
        self._clock = clock
        self.recent_service_time = 0.1  # seconds, smoothed; sizes the Retry-After hint

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def inflight(self) -> int:
        return sum(r.inflight for r in self.replicas)

    def configure(self, max_inflight: int, max_queue: int) -> None:
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self._hand_out()

    def _pick(self) -> Routable | None:
        best: Routable | None = None
        for replica in self.replicas:
            if (
                replica.state is ReplicaState.READY
                and replica.inflight < self.max_inflight
                and (best is None or replica.inflight < best.inflight)
            ):
                best = replica
                if best.inflight == 0:
                    break
        return best

    def try_acquire(self) -> Routable | None:
        """A free slot at once, or None; never overtakes calls already waiting."""
        if self._waiters:
            return None
        replica = self._pick()
        if replica is not None:
            replica.inflight += 1
        return replica

    async def acquire(self, deadline: float) -> Routable:
        """A slot on a replica; the caller must `release` it. Raises Overloaded or
        DeadlineExceeded."""
        replica = self.try_acquire()
        if replica is not None:
            return replica
        if len(self._waiters) >= self.max_queue:
            raise Overloaded(
                f"function {self.function!r} is at capacity: {self.inflight} calls in flight "
                f"and {len(self._waiters)} queued (max_queue {self.max_queue})",
                "retry after the time in the Retry-After header, or raise scaling.max/max_queue",
                retry_after=self.retry_after(),
            )
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self._clock())
        self._waiters.append(waiter)
        remaining = deadline - self._clock()
        try:
            # asyncio.timeout rather than wait_for: wait_for in 3.11 can swallow a
            # cancellation that races with the result.
            async with asyncio.timeout(max(remaining, 0.0)):
                return await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                # The slot arrived in the same instant the deadline passed: give it back.
                self.release(waiter.future.result())
            waiter.future.cancel()
            raise DeadlineExceeded(
                f"function {self.function!r}: no replica became free within the deadline "
                f"({self._clock() - waiter.enqueued_at:.2f}s waited in the queue)",
                "raise the function's timeout or scaling.max, or send fewer concurrent calls",
            ) from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())
            waiter.future.cancel()
            raise

    def release(self, replica: Routable) -> None:
        replica.inflight -= 1
        self._hand_out()

    def retry_after(self) -> float:
        per_slot = max(self.recent_service_time, 0.001)
        capacity = max(1, sum(1 for r in self.replicas if r.state is ReplicaState.READY))
        return max(1.0, per_slot * (len(self._waiters) + 1) / (capacity * self.max_inflight))

    def observe_service_time(self, seconds: float) -> None:
        self.recent_service_time += 0.1 * (seconds - self.recent_service_time)

    def _hand_out(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # timed out or cancelled while queued
                self._waiters.popleft()
                continue
            replica = self._pick()
            if replica is None:
                return
            self._waiters.popleft()
            replica.inflight += 1
            head.future.set_result(replica)

    def add(self, replica: Routable) -> None:
        self.replicas.append(replica)
        self._hand_out()

    def remove(self, replica: Routable) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)

    def changed(self) -> None:
        """A replica's state changed (e.g. became ready): waiting calls may proceed."""
        self._hand_out()

    def fail_waiters(self, error: Exception) -> None:
        """Nothing can serve this function: answer every queued call with `error` at once."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
