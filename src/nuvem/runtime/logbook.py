"""Recent log lines of every function's replicas, for `nuvem logs` and /system/logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

MAX_FILE_BYTES = 8 * 2**20  # per function; one older file is kept beside it


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
    """A bounded ring of lines per function, with live subscribers for `follow`.

    With a `directory`, lines are also appended to `<function>.log` (JSON lines, rotated
    at MAX_FILE_BYTES), and the newest of them are read back at start, so `nuvem logs`
    still shows what happened before a restart.
    """

    def __init__(self, per_function: int = 10_000, directory: Path | None = None) -> None:
        self._per_function = per_function
        self._lines: dict[str, deque[LogLine]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[LogLine | None]]] = {}
        self._closed = False
        self._directory = directory
        self._files: dict[str, TextIO] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(directory.glob("*.log")):
                self._lines[path.stem] = self._read_back(path)

    def _read_back(self, path: Path) -> deque[LogLine]:
        ring: deque[LogLine] = deque(maxlen=self._per_function)
        for source in (path.with_suffix(".log.1"), path):
            with contextlib.suppress(OSError), source.open(encoding="utf-8") as handle:
                for raw in handle:
                    try:
                        ring.append(LogLine(**json.loads(raw)))
                    except (ValueError, TypeError):
                        continue  # a line cut short by a crash: skip it
        return ring

    def _persist(self, line: LogLine) -> None:
        assert self._directory is not None
        handle = self._files.get(line.name)
        if handle is None:
            handle = (self._directory / f"{line.name}.log").open("a", encoding="utf-8")
            self._files[line.name] = handle
        handle.write(json.dumps(line.as_dict()) + "\n")
        handle.flush()
        if handle.tell() > MAX_FILE_BYTES:
            handle.close()
            del self._files[line.name]
            path = self._directory / f"{line.name}.log"
            path.replace(path.with_suffix(".log.1"))

    def write(self, name: str, instance: str, stream: str, text: str) -> None:
        line = LogLine(name, instance, stream, time.time(), text)
        ring = self._lines.get(name)
        if ring is None:
            ring = self._lines[name] = deque(maxlen=self._per_function)
        ring.append(line)
        if self._directory is not None:
            try:
                self._persist(line)
            except OSError:  # a full disk must not stop the function; memory still has it
                self._directory = None
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

    def tail_many(
        self, names: list[str], count: int | None = None, since: float | None = None
    ) -> list[LogLine]:
        """The last `count` lines of each function, merged in the order they were written."""
        lines = [line for name in names for line in self.tail(name, count, since)]
        lines.sort(key=lambda line: line.timestamp)  # stable: a function's own order stays
        return lines

    async def follow(self, *names: str) -> AsyncIterator[LogLine]:
        """New lines of these functions as they are written, in that order, until `close()`.

        One queue for all of them: lines of several functions arrive interleaved as they
        were written, with no task per function."""
        if self._closed:
            return
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        for name in names:
            self._subscribers.setdefault(name, set()).add(queue)
        try:
            while (line := await queue.get()) is not None:
                yield line
        finally:
            for name in names:
                self._subscribers[name].discard(queue)

    def close(self) -> None:
        """End every follower, so a shutdown is not held open by a log stream."""
        self._closed = True

    def close_files(self) -> None:
        """Stop writing log files (lines still reach memory); the last step of a shutdown."""
        self._directory = None
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        ended: set[int] = set()
        for queues in self._subscribers.values():
            for queue in queues:
                if id(queue) not in ended:  # a follower of several functions ends once
                    ended.add(id(queue))
                    queue.put_nowait(None)
