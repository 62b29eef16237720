"""`LogBuffer`: a node's log lines of one replica, kept until the gateway collects them.

The gateway polls each replica's actor about once a second; lines beyond what the buffer
holds are counted as dropped, so the gateway can say how many were lost.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

MAX_LOG_LINES = 2000  # kept until the gateway collects them; older ones are dropped


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float
    stream: str  # "stdout", "stderr" or "system"
    text: str


class LogBuffer:
    def __init__(self, limit: int = MAX_LOG_LINES) -> None:
        self.lines: deque[LogLine] = deque(maxlen=limit)
        self.dropped = 0  # lines lost because the gateway did not collect them in time

    def keep(self, stream: str, text: str) -> None:
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(LogLine(time.time(), stream, text))

    def write(self, name: str, instance: str, stream: str, text: str) -> None:
        """A LineSink: the function and replica are the buffer's own."""
        self.keep(stream, text)

    def collect(self) -> tuple[list[LogLine], int]:
        """The lines since the last collection, and how many were dropped meanwhile."""
        lines, dropped = list(self.lines), self.dropped
        self.lines.clear()
        self.dropped = 0
        return lines, dropped
