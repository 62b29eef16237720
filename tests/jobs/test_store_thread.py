"""The job store's own thread: calls leave the event loop, and waiting writes share a commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from nuvem.jobs.store_thread import StoreThread
from nuvem.stores.job import Finish, Job, JobRequest, JobResult, JobState, NewJob
from nuvem.stores.sql_jobs import SqlJobStore
from support import wait_until

pytestmark = pytest.mark.anyio
RESULT = JobResult(200, (), b"ok", 0.1)


def new(job_id: str, key: str | None = None) -> NewJob:
    request = JobRequest("POST", "/", "", (), job_id.encode())
    return NewJob(id=job_id, function="f", request=request, max_attempts=1, idempotency_key=key)


class FlakyStore(SqlJobStore):
    """Fails the next `failures` batches of submits, as a database that went away would."""

    failures = 0

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        return super().submit_many(new)


@pytest.fixture
async def thread(tmp_path: Path) -> AsyncIterator[StoreThread]:
    store = FlakyStore.sqlite(tmp_path / "jobs.db")
    io = StoreThread(store)
    io.start()
    yield io
    await io.stop()
    store.close()


async def held_up(io: StoreThread) -> threading.Event:
    """Keep the thread busy until the event is set, so that what comes next queues up.

    Returns once the thread is inside the blocking call: had it not taken that call yet,
    what comes next could join the call's round, or split across two."""
    gate = threading.Event()
    inside = threading.Event()

    def hold() -> None:
        inside.set()
        gate.wait()

    busy = asyncio.ensure_future(io.call(hold))
    await wait_until(inside.is_set, what="the store thread inside the held-up call")
    _held.add(busy)
    busy.add_done_callback(_held.discard)
    return gate


_held: set[asyncio.Future[None]] = set()  # the loop keeps only weak references to tasks


async def test_calls_run_off_the_event_loop(thread: StoreThread) -> None:
    loop_thread = threading.get_ident()
    assert await thread.call(threading.get_ident) != loop_thread


async def test_submits_that_wait_together_share_one_transaction(thread: StoreThread) -> None:
    gate = await held_up(thread)
    waiting = [asyncio.ensure_future(thread.submit(new(f"j{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # each has handed its job over
    gate.set()
    answers = await asyncio.gather(*waiting)
    assert [(job.id, created) for job, created in answers] == [(f"j{i}", True) for i in range(20)]
    # The thread counts a batch after answering it: read the counters on the thread.
    assert await thread.call(lambda: (thread.batches, thread.batched)) == (1, 20)
    stored = thread.store.find(limit=100)
    assert {job.id for job in stored} == {f"j{i}" for i in range(20)}


async def test_keyed_submits_are_answered_one_by_one(thread: StoreThread) -> None:
    gate = await held_up(thread)
    first = asyncio.ensure_future(thread.submit(new("a", key="k")))
    second = asyncio.ensure_future(thread.submit(new("b", key="k")))
    await asyncio.sleep(0)
    gate.set()
    (job_a, created_a), (job_b, created_b) = await asyncio.gather(first, second)
    assert (job_a.id, created_a, job_b.id, created_b) == ("a", True, "a", False)


async def test_a_failed_batch_fails_its_callers_and_the_thread_goes_on(
    thread: StoreThread,
) -> None:
    assert isinstance(thread.store, FlakyStore)
    thread.store.failures = 1
    gate = await held_up(thread)
    waiting = [asyncio.ensure_future(thread.submit(new(f"j{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert thread.store.find() == []  # nothing half-written: the callers may retry
    job, created = await thread.submit(new("later"))
    assert created
    assert job.id == "later"


async def test_finishes_are_grouped_and_each_answered(thread: StoreThread) -> None:
    store = thread.store
    for job_id in ("a", "b", "c"):
        store.submit(new(job_id))
    store.claim("me", {"f": 2}, lease=10)  # a and b run here; c is still queued
    done = Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12)
    gate = await held_up(thread)
    waiting = [
        asyncio.ensure_future(thread.finish("me", job_id, done)) for job_id in ("a", "b", "c")
    ]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [True, True, False]
    states = {job_id: store.get(job_id) for job_id in "abc"}
    assert {k: v.state if v else None for k, v in states.items()} == {
        "a": JobState.SUCCEEDED,
        "b": JobState.SUCCEEDED,
        "c": JobState.QUEUED,
    }


async def test_a_caller_that_gives_up_does_not_undo_the_write(thread: StoreThread) -> None:
    gate = await held_up(thread)
    impatient = asyncio.ensure_future(thread.submit(new("a")))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    # The job was handed over: it is stored (and will run) whether or not anyone hears 202.
    assert await thread.call(thread.store.get, "a") is not None


async def test_stop_writes_what_was_handed_over_first(tmp_path: Path) -> None:
    store = SqlJobStore.sqlite(tmp_path / "jobs.db")
    io = StoreThread(store)
    io.start()
    gate = await held_up(io)
    waiting = asyncio.ensure_future(io.submit(new("last")))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(io.stop())
    gate.set()
    await stopping
    assert (await waiting)[1]
    assert store.get("last") is not None
    with pytest.raises(RuntimeError, match="not running"):
        await io.submit(new("too-late"))
    store.close()
