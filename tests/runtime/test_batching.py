"""The batcher in-process: grouping, results mapped back, failures kept to their own call."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from nuvem.handler import Request, Response
from nuvem.runtime.batching import BATCH_SIZE_HEADER, Batcher, Item, Outcome


class Recorder:
    """predict() that records each batch; it holds the first batch until released, so the
    calls submitted meanwhile are known to be queued together."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

    def predict(self, batch: list[Request]) -> list[Any]:
        self.entered.set()
        self.release.wait(10)
        self.batches.append([r.body for r in batch])
        results: list[Any] = []
        for request in batch:
            if request.body == b"boom":
                results.append(ValueError("boom is not a number"))
            elif request.body == b"bad":
                results.append(Response(400, {"error": "bad input"}))
            else:
                results.append({"double": int(request.body) * 2})
        return results

    def deliver(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.outcomes.put(outcome)

    def collect(self, count: int) -> dict[int, Outcome]:
        return {o.call_id: o for o in (self.outcomes.get(timeout=10) for _ in range(count))}


def items(*bodies: bytes) -> list[Item]:
    return [Item(number, Request(body)) for number, body in enumerate(bodies, 1)]


def test_calls_queued_together_run_as_one_batch_in_order() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.predict, max_batch_size=4, max_delay=0.0, deliver=recorder.deliver)
    batcher.submit(1, Request(b"1"))
    assert recorder.entered.wait(10)
    for call_id in range(2, 7):
        batcher.submit(call_id, Request(str(call_id).encode()))
    recorder.release.set()
    outcomes = recorder.collect(6)
    batcher.stop()
    # The first call ran alone (it was running when the others came); the rest queued
    # meanwhile and were taken four, then one, at a time.
    assert [len(b) for b in recorder.batches] == [1, 4, 1]
    for call_id, outcome in outcomes.items():
        assert outcome.result is not None
        status, _headers, body = outcome.result
        assert status == 200
        assert body == f'{{"double":{call_id * 2}}}'.encode()
    third = outcomes[3].result
    assert third is not None
    assert (BATCH_SIZE_HEADER, "4") in third[1]


def test_a_failing_item_fails_only_its_own_call() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.predict, 8, 0.0, recorder.deliver)
    outcomes = {o.call_id: o for o in batcher.run(items(b"1", b"boom", b"bad", b"4"))}
    batcher.stop()
    assert outcomes[1].result is not None
    assert outcomes[1].result[0] == 200
    assert isinstance(outcomes[2].error, ValueError)
    assert "boom is not a number" in outcomes[2].traceback
    assert outcomes[3].result is not None
    assert outcomes[3].result[0] == 400
    assert outcomes[4].result is not None
    assert outcomes[4].result[2] == b'{"double":8}'


def test_a_batch_that_raises_is_retried_call_by_call() -> None:
    seen: list[int] = []

    def predict(batch: list[Request]) -> list[Any]:
        seen.append(len(batch))
        if any(r.body == b"poison" for r in batch):
            raise RuntimeError("poisoned batch")
        return [r.body.upper() for r in batch]

    batcher = Batcher(predict, 8, 0.0, lambda outcomes: None)
    outcomes = batcher.run(items(b"a", b"poison", b"c"))
    batcher.stop()
    assert seen == [3, 1, 1, 1]
    assert [o.result[2] if o.result else None for o in outcomes] == [b"A", None, b"C"]
    assert isinstance(outcomes[1].error, RuntimeError)


def test_predict_returning_the_wrong_length_fails_the_calls_with_a_hint() -> None:
    batcher = Batcher(lambda batch: [], 8, 0.0, lambda outcomes: None)
    outcomes = batcher.run(items(b"x"))
    batcher.stop()
    assert outcomes[0].error is not None
    assert "return a list with one result per request" in str(outcomes[0].error)


def test_a_lone_call_runs_at_once_however_long_max_delay_is() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.predict, 8, max_delay=30.0, deliver=recorder.deliver)
    batcher.submit(1, Request(b"1"))
    # Waiting out max_delay would take 30 s; collect gives up after 10.
    assert recorder.collect(1)[1].result is not None
    batcher.stop()
    assert recorder.batches == [[b"1"]]


def test_waits_up_to_max_delay_for_calls_known_to_be_coming() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.predict, 4, max_delay=30.0, deliver=recorder.deliver)
    batcher.submit(1, Request(b"1"), behind=2)  # two more were queued at the gateway
    time.sleep(0.2)
    batcher.submit(2, Request(b"2"), behind=1)
    time.sleep(0.2)
    batcher.submit(3, Request(b"3"))  # the last one: nothing behind it, so no more waiting
    recorder.collect(3)
    batcher.stop()
    assert recorder.batches == [[b"1", b"2", b"3"]]


def test_the_calls_of_one_read_run_together_up_to_max_batch_size() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.predict, 4, max_delay=30.0, deliver=recorder.deliver)
    batcher.submit_many(items(b"1", b"2", b"3", b"4", b"5", b"6"))
    recorder.collect(6)
    batcher.stop()
    assert [len(b) for b in recorder.batches] == [4, 2]


def test_stop_runs_every_call_already_queued() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.predict, 2, 0.0, recorder.deliver)
    batcher.submit(1, Request(b"1"))
    assert recorder.entered.wait(10)
    batcher.submit_many([Item(n, Request(str(n).encode())) for n in (2, 3, 4)])
    recorder.release.set()
    batcher.stop()
    assert sorted(recorder.collect(4)) == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [0, -3])
def test_batch_size_is_at_least_one(size: int) -> None:
    batcher = Batcher(lambda batch: batch, size, 0.0, lambda outcomes: None)
    batcher.stop()
    assert batcher.max_batch_size == 1
