"""Dynamic batching inside a replica: calls that arrive together run as one `predict(batch)`.

The handler's contract is `predict(batch: list[Request]) -> list` of the same length. One
thread runs the batches, so the worker's event loop keeps reading frames (and queueing the
next batch) while a batch computes.

A batch never waits for nobody: it takes every call already queued (up to `max_batch_size`)
and waits up to `max_delay` for more only while more are known to be coming, that is while
the latest call said the gateway still held calls of this function behind it. A lone call
runs at once; under load the calls that queued while the last batch computed fill the next.

An item may come back as an exception, which fails only its own call; if `predict` raises
for a batch of several, each item runs alone so the one that fails is found and the rest
still answer. Standard library only.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nuvem.handler import Request, to_http
from nuvem.runtime import loader

Predict = Callable[[list[Request]], list[Any]]
HttpResult = tuple[int, list[tuple[str, str]], bytes]
BATCH_SIZE_HEADER = "x-batch-size"


@dataclass(slots=True)
class Outcome:
    """One call's answer, or the failure that ends it."""

    call_id: int
    result: HttpResult | None = None
    error: BaseException | None = None
    traceback: str = ""


@dataclass(slots=True)
class Item:
    """One call waiting for a batch."""

    call_id: int
    request: Request
    behind: int = 0  # calls of this function queued at the gateway when this one was sent


class BatchSizeMismatch(RuntimeError):
    """predict() returned a list whose length differs from the batch it was given."""


class Batcher:
    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_delay: float,
        deliver: Callable[[list[Outcome]], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`deliver` is called from the batch thread with each batch's outcomes."""
        self.predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay = max(0.0, max_delay)
        self.deliver = deliver
        self.clock = clock
        self.batches = 0  # batches run so far
        self.largest = 0  # the largest batch run so far
        # Groups, not single calls: the calls of one socket read arrive as one group, so the
        # batch thread never sees half of them and runs the rest as a batch of their own.
        self._queue: queue.SimpleQueue[list[Item] | None] = queue.SimpleQueue()
        self._carried: list[Item] = []  # taken from the queue, beyond the last batch
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, call_id: int, request: Request, behind: int = 0) -> None:
        self._queue.put([Item(call_id, request, behind)])

    def submit_many(self, items: list[Item]) -> None:
        if items:
            self._queue.put(items)

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            if not self._carried:
                group = self._queue.get()
                if group is None:
                    return
                self._carried = group
            batch, stopping = self._gather()
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            self.deliver(self.run(batch))
            if stopping:
                while self._carried:  # what was taken before the stop still runs
                    batch, _ = self._gather()
                    self.deliver(self.run(batch))
                return

    def _gather(self) -> tuple[list[Item], bool]:
        """What is queued, up to max_batch_size; more within max_delay only while the
        latest call knew of others behind it."""
        size = self.max_batch_size
        batch, self._carried = self._carried[:size], self._carried[size:]
        deadline = self.clock() + self.max_delay
        while len(batch) < size:
            try:
                # Calls that queued while the last batch ran are taken without waiting.
                group = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - self.clock()
                if batch[-1].behind <= 0 or remaining <= 0:
                    break
                try:
                    group = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if group is None:
                return batch, True
            room = size - len(batch)
            batch.extend(group[:room])
            self._carried = group[room:]
        return batch, False

    def run(self, batch: list[Item]) -> list[Outcome]:
        try:
            results = self._predict([item.request for item in batch])
        except Exception as exc:
            if len(batch) == 1:
                return [Outcome(batch[0].call_id, error=exc, traceback=traceback.format_exc())]
            # Find the culprit: each call alone, so only the failing one fails.
            return [outcome for item in batch for outcome in self.run([item])]
        outcomes = []
        size = str(len(batch))
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                text = "".join(traceback.format_exception(result))
                outcomes.append(Outcome(item.call_id, error=result, traceback=text))
                continue
            try:
                status, headers, body = to_http(result)
                # Says how many calls ran together: for tuning max_batch_size and in tests.
                headers.append((BATCH_SIZE_HEADER, size))
                outcomes.append(Outcome(item.call_id, result=(status, headers, body)))
            except Exception as exc:
                outcomes.append(Outcome(item.call_id, error=exc, traceback=traceback.format_exc()))
        return outcomes

    def _predict(self, requests: list[Request]) -> list[Any]:
        results = loader.run_coroutine_sync(self.predict(requests))
        if not isinstance(results, list | tuple) or len(results) != len(requests):
            got = len(results) if isinstance(results, list | tuple) else type(results).__name__
            raise BatchSizeMismatch(
                f"predict() was given {len(requests)} requests and returned {got}; "
                "return a list with one result per request, in order"
            )
        return list(results)
