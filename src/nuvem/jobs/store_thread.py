"""`StoreThread`: a job store's blocking calls on one thread of their own, with group commit.

The gateway's event loop must not wait on a database: a commit (an fsync on PostgreSQL, a
network round trip to it or to Redis) there would hold up every call the gateway serves.
So every store call the loop makes is handed to this thread and awaited. Submits and
finishes that arrive while the thread is busy are written together, in one transaction,
when it comes back for more: under load, one commit serves a batch of accepts. Submits go
first in each round, since a client is waiting on them.

One thread rather than a pool: SQLite has one writer at a time anyway, and one thread
never waits on its own locks (SQLite's busy handler sleeps in steps of milliseconds).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from nuvem.stores.job import Finish, Job, JobStore, NewJob

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(slots=True)
class _Submit:
    job: NewJob
    future: asyncio.Future[tuple[Job, bool]]


@dataclass(slots=True)
class _Finish:
    owner: str
    job_id: str
    finish: Finish
    future: asyncio.Future[bool]


@dataclass(slots=True)
class _Call:
    work: Callable[[], Any]
    future: asyncio.Future[Any]


_STOP = object()


class StoreThread:
    def __init__(self, store: JobStore, name: str = "job store") -> None:
        self.store = store
        self.batches = 0  # transactions of submits written, and the jobs in them (for tests)
        self.batched = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._loop = asyncio.get_running_loop()
            self._started = True
            self._thread.start()

    async def submit(self, job: NewJob) -> tuple[Job, bool]:
        future: asyncio.Future[tuple[Job, bool]] = self._future()
        self._inbox.put(_Submit(job, future))
        return await future

    async def finish(self, owner: str, job_id: str, finish: Finish) -> bool:
        future: asyncio.Future[bool] = self._future()
        self._inbox.put(_Finish(owner, job_id, finish, future))
        return await future

    async def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Any other store call, e.g. `await thread.call(store.purge, now)`."""
        future: asyncio.Future[T] = self._future()
        self._inbox.put(_Call(functools.partial(work, *args, **kwargs), future))
        return await future

    async def stop(self) -> None:
        """Finish what was handed over, then end the thread (the store stays open)."""
        if self._started and self._thread.is_alive():
            self._inbox.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    def _future(self) -> asyncio.Future[Any]:
        if not self._started:
            self.start()
        loop = asyncio.get_running_loop()
        if loop is not self._loop or not self._thread.is_alive():
            raise RuntimeError("the job store thread is not running on this event loop")
        return loop.create_future()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._inbox.get()]
            while True:  # whatever else has arrived joins this round
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in items
            self._round(items)

    def _round(self, items: list[object]) -> None:
        submits = [i for i in items if isinstance(i, _Submit)]
        plain = [s for s in submits if s.job.idempotency_key is None]
        if plain:
            self._settle([s.future for s in plain], self.store.submit_many, [s.job for s in plain])
            self.batches += 1
            self.batched += len(plain)
        for keyed in submits:
            if keyed.job.idempotency_key is not None:
                # Alone: its failure (a lost race) is its own, not the batch's.
                self._settle([keyed.future], self.store.submit_many, [keyed.job])
        by_owner: dict[str, list[_Finish]] = {}
        for end in (i for i in items if isinstance(i, _Finish)):
            by_owner.setdefault(end.owner, []).append(end)
        for owner, ends in by_owner.items():
            self._settle(
                [e.future for e in ends],
                functools.partial(self.store.finish_many, owner),
                [(e.job_id, e.finish) for e in ends],
            )
        for call in (i for i in items if isinstance(i, _Call)):
            self._settle([call.future], _one, call.work)

    def _settle(
        self, futures: list[asyncio.Future[Any]], work: Callable[[Any], list[Any]], arg: Any
    ) -> None:
        """Run `work(arg)` (one answer per future) and hand the answers to the loop at once."""
        try:
            answers = work(arg)
        except Exception as exc:  # the awaiting callers get it
            self._post(_fail_all, futures, exc)
            return
        self._post(_resolve_all, futures, answers)

    def _post(self, deliver: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(deliver, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.debug("job store answer dropped: the event loop is closed")


def _one(work: Callable[[], Any]) -> list[Any]:
    return [work()]


def _resolve_all(futures: list[asyncio.Future[Any]], answers: list[Any]) -> None:
    for future, answer in zip(futures, answers, strict=True):
        if not future.done():  # a caller that gave up (cancelled) is not answered
            future.set_result(answer)


def _fail_all(futures: list[asyncio.Future[Any]], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
