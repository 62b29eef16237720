"""`PointBuffer`: encoded lines waiting for InfluxDB, at most `limit` of them.

While InfluxDB is down the exporter keeps sampling; once the buffer is full the oldest lines
make room for the newest (recent numbers matter more to whoever looks after an outage), and
the buffer counts each line it dropped so the loss is visible, never silent.

The batch being written is taken out (`take`) and either finished (`done`: written, or
refused for good) or put back in front (`give_back`: the write failed). It counts against
the limit while in flight; rounds that arrive meanwhile push out the oldest lines still
waiting, never those in flight, so a line is either written or counted as dropped, not
both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import chain, islice


class PointBuffer:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a point buffer holds at least 1 point, not {limit}")
        self.limit = limit
        self.dropped = 0  # lines pushed out by newer ones, since the buffer was made
        self._waiting: deque[str] = deque()
        self._in_flight: list[str] = []

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    @property
    def waiting(self) -> int:
        """Lines not yet taken for a write."""
        return len(self._waiting)

    def add(self, lines: Iterable[str]) -> int:
        """Append `lines`, dropping the oldest waiting beyond the limit; how many dropped."""
        self._waiting.extend(lines)
        return self._trim()

    def take(self, count: int) -> list[str]:
        """The oldest `count` lines (fewer when fewer wait), now in flight."""
        if self._in_flight:
            raise RuntimeError("a batch is in flight already; finish it with done or give_back")
        count = min(count, self.limit, len(self._waiting))
        self._in_flight = [self._waiting.popleft() for _ in range(count)]
        return self._in_flight

    def done(self) -> None:
        """The batch in flight is finished with: written, or refused for good."""
        self._in_flight = []

    def give_back(self) -> None:
        """Put the batch in flight back in front: its write failed. It counted against the
        limit all along, so nothing needs to make room."""
        self._waiting.extendleft(reversed(self._in_flight))
        self._in_flight = []

    def peek(self, count: int) -> list[str]:
        """The oldest `count` lines, those in flight first, left where they are."""
        return list(islice(chain(self._in_flight, self._waiting), count))

    def _trim(self) -> int:
        # A batch in flight is at most `limit` lines, so the waiting ones always suffice.
        over = min(len(self) - self.limit, len(self._waiting))
        if over <= 0:
            return 0
        for _ in range(over):
            self._waiting.popleft()
        self.dropped += over
        return over
