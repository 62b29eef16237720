"""`Series`: the last few minutes of one function's chart points, in fixed-size columns.

One point per sample (every second or two) for 15 minutes is 450-900 points per function;
at 100 functions a list of point objects would cost tens of megabytes, so each column is a
ring of C doubles (8 bytes a value) and a point is one slot across the columns.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

COLUMNS = ("rps", "errors", "p50", "p99", "queued", "inflight", "ready", "desired")


class Series:
    """A ring of `capacity` points: a time and one value per column (NaN: no value)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._times = array("d", bytes(8 * capacity))
        self._columns = {name: array("d", bytes(8 * capacity)) for name in COLUMNS}
        self._next = 0  # the slot the next point goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, at: float, values: Mapping[str, float | None]) -> None:
        slot = self._next
        self._times[slot] = at
        for name, column in self._columns.items():
            value = values.get(name)
            column[slot] = math.nan if value is None else value
        self._next = (slot + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def _order(self) -> list[int]:
        start = (self._next - self._size) % self.capacity
        return [(start + i) % self.capacity for i in range(self._size)]

    def columns(self, since: float = -math.inf) -> dict[str, list[float | None]]:
        """Oldest first: `time` and every column, NaN given as None (JSON has no NaN)."""
        slots = [s for s in self._order() if self._times[s] >= since]
        out: dict[str, list[float | None]] = {"time": [self._times[s] for s in slots]}
        for name, column in self._columns.items():
            out[name] = [None if math.isnan(column[s]) else column[s] for s in slots]
        return out
