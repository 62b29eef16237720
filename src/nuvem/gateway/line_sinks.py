"""Where finished log lines go, a batch at a time: a stream (one write and one flush a
batch, what `nuvem up` does with stderr) or a logger (a record a line, for a process that
embeds the gateway and routes its logging itself)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, TextIO


class LineSink(Protocol):
    def write_lines(self, lines: Sequence[str]) -> None:
        """Write `lines`, in order; may block (the caller is a writer thread)."""


class StreamSink:
    """Lines on a text stream, one write and one flush a batch."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write_lines(self, lines: Sequence[str]) -> None:
        self.stream.write("".join(f"{line}\n" for line in lines))
        self.stream.flush()


class LoggerSink:
    """Lines as INFO records of `logger`, one a line: its handlers decide where they go."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write_lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.logger.info(line)


class MemorySink:
    """Lines kept in memory, for tests and for whoever reads them back in-process."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_lines(self, lines: Sequence[str]) -> None:
        self.lines.extend(lines)
