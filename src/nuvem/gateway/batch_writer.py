"""`BatchWriter`: items queued by the event loop, formatted and written by a thread of its
own, a batch every `interval` seconds.

`add` is all a caller pays: a length test and a deque append (both atomic under the GIL, so
the two threads share the deque without a lock). The queue holds at most `capacity` items;
beyond that, while the sink is stuck, new items are dropped and counted, and the next batch
that gets through is followed by a warning saying how many. `close` stops the thread and
writes whatever is still queued, so a clean stop loses nothing. The thread starts with the
first item: a writer that is never used costs no thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from nuvem.gateway.line_sinks import LineSink

log = logging.getLogger(__name__)

Item = TypeVar("Item")

INTERVAL = 0.25  # seconds between batches: a line shows up this late at the most
CAPACITY = 100_000  # items queued at the most: 25 s of 4,000 calls/s with the sink stuck


class BatchWriter(Generic[Item]):
    def __init__(
        self,
        form: Callable[[Item], str],
        sink: LineSink,
        *,
        capacity: int = CAPACITY,
        interval: float = INTERVAL,
        name: str = "batch-writer",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"a batch writer queues at least 1 item, not {capacity}")
        self.form = form
        self.sink = sink
        self.capacity = capacity
        self.interval = interval
        self.name = name
        self.dropped = 0  # items refused because the queue was full, since the start
        self.written = 0  # lines the sink took
        self._reported = 0  # of `dropped`, those a warning has told of
        self._queue: deque[Item] = deque()
        self._flushing = threading.Lock()  # one batch at a time, so lines keep their order
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, item: Item) -> None:
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            return
        self._queue.append(item)
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Format and write every item queued now, on the calling thread."""
        with self._flushing:
            queue = self._queue
            batch = [queue.popleft() for _ in range(len(queue))]
            if batch:
                try:
                    self.sink.write_lines([self.form(item) for item in batch])
                except Exception:  # a broken sink must not end the thread that feeds it
                    log.exception("%s: %d lines could not be written", self.name, len(batch))
                    self.dropped += len(batch)
                    self._reported += len(batch)  # told just now
                else:
                    self.written += len(batch)
            unreported = self.dropped - self._reported
            if unreported:
                self._reported += unreported
                log.warning(
                    "%s dropped %d lines: the queue of %d was full (the output is too slow)",
                    self.name,
                    unreported,
                    self.capacity,
                )

    def close(self) -> None:
        """Stop the thread and write what is still queued. Items added later are written
        at once, on the caller's thread."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None  # from now on, add writes at once: see _start
        self.flush()

    def _start(self) -> None:
        if self._closing.is_set():
            self.flush()
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(self.interval):
            self.flush()
