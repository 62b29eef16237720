"""Recent log lines of every function's replicas, for `nuvem logs` and /system/logs."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class LogLine:
    name: str  # function
    instance: str  # replica id
    stream: str  # stdout | stderr | system
    timestamp: float
    text: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class LogBook:
    """A bounded ring of lines per function, with live subscribers for `follow`."""

    def __init__(self, per_function: int = 10_000) -> None:
        self._per_function = per_function
        self._lines: dict[str, deque[LogLine]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[LogLine | None]]] = {}
        self._closed = False

    def write(self, name: str, instance: str, stream: str, text: str) -> None:
        line = LogLine(name, instance, stream, time.time(), text)
        ring = self._lines.get(name)
        if ring is None:
            ring = self._lines[name] = deque(maxlen=self._per_function)
        ring.append(line)
        for queue in self._subscribers.get(name, ()):
            if queue.qsize() < 10_000:  # a stalled reader must not hold the gateway's memory
                queue.put_nowait(line)

    def tail(
        self, name: str, count: int | None = None, since: float | None = None
    ) -> list[LogLine]:
        lines = list(self._lines.get(name, ()))
        if since is not None:
            lines = [line for line in lines if line.timestamp >= since]
        if count is not None:
            lines = lines[-count:] if count > 0 else []
        return lines

    async def follow(self, name: str) -> AsyncIterator[LogLine]:
        """New lines as they are written, until `close()`."""
        if self._closed:
            return
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self._subscribers.setdefault(name, set()).add(queue)
        try:
            while (line := await queue.get()) is not None:
                yield line
        finally:
            self._subscribers[name].discard(queue)

    def close(self) -> None:
        """End every follower, so a shutdown is not held open by a log stream."""
        self._closed = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)
