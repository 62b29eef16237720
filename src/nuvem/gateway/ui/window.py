"""Rates and latency quantiles of one function from cumulative counter readings: the math
behind the dashboard's numbers, kept pure so it is tested without a registry or a clock.

A `Reading` is what the Prometheus counters said at one moment (calls, errors and the
latency histogram's cumulative buckets, all codes summed). A `Window` keeps the readings of
the last `span` seconds; its `rates()` are the differences between its newest and oldest
reading, as Prometheus' `rate()` and `histogram_quantile()` would compute them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # seconds, any clock that only moves forward
    calls: float  # invocations so far
    errors: float  # of them, answered with a 5xx
    buckets: tuple[float, ...]  # cumulative count at or below each bound (le), +Inf last


@dataclass(frozen=True, slots=True)
class Rates:
    rps: float  # calls per second
    errors: float  # 5xx answers per second
    p50: float | None  # seconds; None when no call completed in the window
    p99: float | None


IDLE = Rates(rps=0.0, errors=0.0, p50=None, p99=None)


def quantile(q: float, bounds: tuple[float, ...], counts: tuple[float, ...]) -> float | None:
    """The `q` quantile of observations counted in cumulative `counts` per upper bound
    (+Inf last), interpolated linearly inside its bucket like `histogram_quantile`.

    An answer in the +Inf bucket is reported as the highest finite bound: the histogram
    cannot say more, and an infinite latency would break every chart.
    """
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    below, lower = 0.0, 0.0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        below, lower = count, bound
    return lower


def difference(newer: Reading, older: Reading) -> tuple[float, float, tuple[float, ...]]:
    """Calls, errors and buckets counted between two readings. A counter that went down was
    reset (the function was removed and deployed again): the newer reading counts from zero."""
    if newer.calls < older.calls or len(newer.buckets) != len(older.buckets):
        return newer.calls, newer.errors, newer.buckets
    buckets = tuple(max(0.0, n - o) for n, o in zip(newer.buckets, older.buckets, strict=True))
    return newer.calls - older.calls, max(0.0, newer.errors - older.errors), buckets


def rates(newer: Reading, older: Reading, bounds: tuple[float, ...]) -> Rates:
    elapsed = newer.at - older.at
    if elapsed <= 0:
        return IDLE
    calls, errors, buckets = difference(newer, older)
    return Rates(
        rps=calls / elapsed,
        errors=errors / elapsed,
        p50=quantile(0.5, bounds, buckets),
        p99=quantile(0.99, bounds, buckets),
    )


class Window:
    """The readings of one function over the last `span` seconds."""

    def __init__(self, bounds: tuple[float, ...], span: float = 10.0) -> None:
        self.bounds = bounds
        self.span = span
        self.readings: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        # Keep one reading at or before the window's start, so rates cover all of it.
        while len(self.readings) > 2 and self.readings[1].at <= reading.at - self.span:
            self.readings.popleft()

    def rates(self) -> Rates:
        if len(self.readings) < 2:
            return IDLE
        return rates(self.readings[-1], self.readings[0], self.bounds)
