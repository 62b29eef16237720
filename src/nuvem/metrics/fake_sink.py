"""`FakeSink`: an InfluxDB in memory, for tests of the exporter and for trying it out."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nuvem.metrics.influx_sink import Outcome, WriteResult


@dataclass
class FakeSink:
    """Stores what it is sent, unless told to answer otherwise (`answer_next`)."""

    batches: list[list[str]] = field(default_factory=list)  # every batch tried, in order
    written: list[str] = field(default_factory=list)  # the lines it stored
    closed: bool = False
    _answers: deque[WriteResult] = field(default_factory=deque)

    def answer_next(self, *outcomes: Outcome) -> None:
        """The next writes end in `outcomes`, one each, before it stores again."""
        self._answers.extend(WriteResult(o, f"told to answer {o.value}") for o in outcomes)

    def heal(self) -> None:
        """Forget the answers still to give: store every write from now on."""
        self._answers.clear()

    async def write(self, body: bytes) -> WriteResult:
        if not body.endswith(b"\n"):
            raise AssertionError("a batch is whole lines, each ending in a newline")
        lines = body.decode().splitlines()
        self.batches.append(lines)
        result = self._answers.popleft() if self._answers else WriteResult(Outcome.WRITTEN)
        if result.outcome is Outcome.WRITTEN:
            self.written.extend(lines)
        return result

    async def close(self) -> None:
        self.closed = True
