"""Notices when the whole machine stopped: this process was not scheduled for a while.

A virtual machine stopped by its host, or a host frozen by memory pressure elsewhere, stops
the load generator and the platform alike. Calls in flight then look like timeouts (one
CI run saw wrk's 5 s window last 55 s, with every connection timed out once on waking),
but they say nothing about the platform: a stalled gateway would not have stopped wrk's
own clock. A thread here ticks every `tick` seconds; a tick that comes more than `gap`
seconds late is a pause, and a measurement overlapping one is not comparable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType


class PauseWatch:
    def __init__(
        self,
        tick: float = 0.05,
        gap: float = 1.0,
        # The wall clock, as wrk's own: a stopped guest's monotonic clock may not advance.
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tick = tick
        self.gap = gap
        self.clock = clock
        self.pauses: list[tuple[float, float]] = []
        self._last: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        now = self.clock()
        if self._last is not None and now - self._last > self.gap:
            self.pauses.append((self._last, now))
        self._last = now

    def paused(self, start: float, end: float) -> float:
        """Seconds of pause within [start, end] of `clock`'s time."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.pauses)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.step()

    def __enter__(self) -> PauseWatch:
        self.step()
        self._thread = threading.Thread(target=self._run, name="pause-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
