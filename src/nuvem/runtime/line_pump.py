"""Reading a worker's output line by line, for its function's logs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def pump_lines(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    """Hand every line of `stream` (without its newline) to `on_line` until it ends."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's limit: take it in pieces
            line = await stream.read(65536)
        if not line:
            return
        on_line(line.decode("utf-8", "replace").rstrip("\n"))
