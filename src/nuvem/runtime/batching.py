"""Dynamic batching inside a replica: calls that arrive together run as one `predict(batch)`.

The handler's contract is `predict(batch: list[Request]) -> list` of the same length. One
thread runs the batches, so the worker's event loop keeps reading frames (and queueing the
next batch) while a batch computes. An item may come back as an exception, which fails
only its own call; if `predict` raises for a batch of several, each item runs alone so the
one that fails is found and the rest still answer. Standard library only.
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
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, call_id: int, request: Request) -> None:
        self._queue.put(Item(call_id, request))

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._gather(first)
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            self.deliver(self.run(batch))
            if stopping:
                return

    def _gather(self, first: Item) -> tuple[list[Item], bool]:
        """The first call, plus those arriving within max_delay, up to max_batch_size."""
        batch = [first]
        deadline = self.clock() + self.max_delay
        while len(batch) < self.max_batch_size:
            try:
                # Calls that queued while the last batch ran are taken without waiting.
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
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
