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
from nuvem.runtime.replica_state import ReplicaState


class Routable(Protocol):
    inflight: int  # the router's count of the calls it handed this replica

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> ReplicaState: ...

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
        # The meter the autoscaler samples: running totals, so no burst between two samples
        # is lost. `busy` is the slots taken, kept here because summing replicas costs more.
        self.busy = 0
        self.arrivals = 0
        self.completed = 0
        self.service_seconds = 0.0
        self.inflight_seconds = 0.0
        self.queued_seconds = 0.0
        self._metered_at = clock()
        # Called when a call starts waiting while no replica is ready (e.g. at zero replicas):
        # the controller scales up at once instead of at its next tick.
        self.on_starved: Callable[[], None] | None = None
        self.on_cold_call: Callable[[float], None] | None = None  # seconds a cold call took

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

    def meter(self) -> None:
        """Bring the time-integrals up to now; call before the load changes or is read."""
        now = self._clock()
        elapsed = now - self._metered_at
        if elapsed > 0:
            queued = len(self._waiters)
            self.inflight_seconds += self.busy * elapsed
            self.queued_seconds += queued * elapsed
            self._metered_at = now

    def has_ready(self) -> bool:
        return any(r.state is ReplicaState.READY for r in self.replicas)

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
            self.meter()
            self.busy += 1
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
        self.meter()
        self._waiters.append(waiter)
        if self.on_starved is not None and not self.has_ready():
            self.on_starved()
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
            self._forget(waiter)
            raise DeadlineExceeded(
                f"function {self.function!r}: no replica became free within the deadline "
                f"({self._clock() - waiter.enqueued_at:.2f}s waited in the queue)",
                "raise the function's timeout or scaling.max, or send fewer concurrent calls",
            ) from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())
            waiter.future.cancel()
            self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        # A waiter that gave up leaves the queue now, so the queue depth stays true.
        if waiter in self._waiters:
            self.meter()
            self._waiters.remove(waiter)

    def release(self, replica: Routable) -> None:
        self.meter()
        self.busy -= 1
        replica.inflight -= 1
        self._hand_out()

    def retry_after(self) -> float:
        per_slot = max(self.recent_service_time, 0.001)
        capacity = max(1, sum(1 for r in self.replicas if r.state is ReplicaState.READY))
        return max(1.0, per_slot * (len(self._waiters) + 1) / (capacity * self.max_inflight))

    def observe_service_time(self, seconds: float) -> None:
        self.recent_service_time += 0.1 * (seconds - self.recent_service_time)
        self.completed += 1
        self.service_seconds += seconds

    def _hand_out(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # timed out or cancelled while queued
                self.meter()
                self._waiters.popleft()
                continue
            replica = self._pick()
            if replica is None:
                return
            self.meter()
            self._waiters.popleft()
            self.busy += 1
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
        self.meter()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
