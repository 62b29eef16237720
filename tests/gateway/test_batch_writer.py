"""The batch writer the access log queues its entries on: order, the bound and its count,
a broken sink, and that closing writes what is still queued."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence

import pytest

from nuvem.gateway.batch_writer import BatchWriter
from nuvem.gateway.line_sinks import MemorySink, StreamSink
from support import block_until

NEVER = 3600.0  # an interval no test waits out: only close() or flush() writes


class BrokenSink:
    def __init__(self) -> None:
        self.calls = 0

    def write_lines(self, lines: Sequence[str]) -> None:
        self.calls += 1
        raise OSError("the pipe is closed")


def test_closing_writes_every_queued_line_in_order() -> None:
    sink = MemorySink()
    writer: BatchWriter[int] = BatchWriter(str, sink, interval=NEVER)
    for n in range(1000):
        writer.add(n)
    assert sink.lines == []  # nothing is written on the caller's thread
    writer.close()
    assert sink.lines == [str(n) for n in range(1000)]
    assert (writer.written, writer.dropped) == (1000, 0)


def test_the_thread_writes_without_being_asked() -> None:
    sink = MemorySink()
    writer: BatchWriter[int] = BatchWriter(str, sink, interval=0.01)
    try:
        writer.add(1)
        writer.add(2)
        block_until(lambda: sink.lines == ["1", "2"], 10, what="the batch written")
    finally:
        writer.close()
    assert sink.lines == ["1", "2"]


def test_a_full_queue_drops_new_lines_and_says_how_many(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sink = MemorySink()
    writer: BatchWriter[int] = BatchWriter(str, sink, capacity=3, interval=NEVER, name="access log")
    for n in range(5):
        writer.add(n)
    assert writer.dropped == 2
    writer.close()
    assert sink.lines == ["0", "1", "2"]  # the oldest kept: the log is whole up to the stall
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "access log dropped 2 lines: the queue of 3 was full (the output is too slow)"
    ]
    writer.add(5)  # after close: written at once
    assert sink.lines[-1] == "5"


def test_a_broken_sink_counts_its_lines_as_lost_and_the_writer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = BrokenSink()
    writer: BatchWriter[int] = BatchWriter(str, broken, interval=NEVER)
    writer.add(1)
    writer.add(2)
    writer.flush()
    assert (broken.calls, writer.dropped, writer.written) == (1, 2, 0)
    assert "2 lines could not be written" in caplog.text
    assert "dropped" not in caplog.text  # told once, as lost, not again as dropped
    working = MemorySink()
    writer.sink = working
    writer.add(3)
    writer.close()
    assert working.lines == ["3"]


def test_a_stream_gets_one_line_each() -> None:
    stream = io.StringIO()
    writer: BatchWriter[str] = BatchWriter(str.upper, StreamSink(stream), interval=NEVER)
    for word in ("a", "b", "c"):
        writer.add(word)
    writer.close()
    assert stream.getvalue() == "A\nB\nC\n"


def test_refuses_an_empty_queue() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchWriter(str, MemorySink(), capacity=0)


def test_add_from_many_threads_loses_nothing() -> None:
    sink = MemorySink()
    writer: BatchWriter[int] = BatchWriter(str, sink, interval=0.001)

    def feed(base: int) -> None:
        for n in range(base, base + 2000):
            writer.add(n)

    threads = [threading.Thread(target=feed, args=(k * 2000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert sorted(int(line) for line in sink.lines) == list(range(8000))
