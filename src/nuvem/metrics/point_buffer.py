"""`PointBuffer`: encoded lines waiting for InfluxDB, at most `limit` of them.

While InfluxDB is down the exporter keeps sampling; once the buffer is full the oldest lines
make room for the newest (recent numbers matter more to whoever looks after an outage), and
the buffer counts each line it dropped so the loss is visible, never silent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import islice


class PointBuffer:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a point buffer holds at least 1 point, not {limit}")
        self.limit = limit
        self.dropped = 0  # lines pushed out by newer ones, since the buffer was made
        self._lines: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, lines: Iterable[str]) -> int:
        """Append `lines`, dropping the oldest beyond the limit; how many were dropped."""
        self._lines.extend(lines)
        over = len(self._lines) - self.limit
        if over <= 0:
            return 0
        for _ in range(over):
            self._lines.popleft()
        self.dropped += over
        return over

    def peek(self, count: int) -> list[str]:
        """The oldest `count` lines (fewer when fewer wait), left in the buffer."""
        return list(islice(self._lines, count))

    def discard(self, count: int) -> None:
        """Remove the oldest `count` lines: they were written, or refused for good."""
        for _ in range(min(count, len(self._lines))):
            self._lines.popleft()
