"""`RedisJobStore`: job records in SQL (PostgreSQL), delivery through Redis Streams.

Several gateways share one Redis and one PostgreSQL. Each function has a stream; every
gateway reads it in the consumer group `nuvem` under its own consumer name. The SQL record
stays the authority: an entry a gateway reads becomes its job only if the conditional
claim in SQL succeeds, so a duplicate entry runs nothing twice at the same time.

- A gateway that dies leaves its entries pending; once idle for longer than a lease, any
  live gateway takes them over with XAUTOCLAIM. A live gateway keeps its entries fresh by
  re-claiming them to itself whenever it renews its leases.
- Retries wait in a sorted set per function (score: due time) until the reaper moves them
  to the stream.
- The reaper also re-enqueues jobs that SQL says are due but that no stream holds (a
  crash between the SQL write and XADD, or a Redis that lost its data): a hash counts each
  job's live entries, kept in step with XADD and XACK atomically. Acked entries are
  deleted, so a stream holds only the work still to do. The reaper runs in every gateway's
  step, one at a time (a short Redis lock), so it runs while any gateway lives.

The same code runs on one Redis server and on a Redis Cluster (`redis+cluster://`): all
keys of a function share a hash tag (stores/redis_keys.py), every script touches one
function's keys (stores/redis_scripts.py), and a step over many functions makes one call
per function. An older single Redis is moved to this layout on start (redis_layout.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from nuvem.stack.redis_url import RedisUrl
from nuvem.stores.job import CallbackState, Finish, Job, JobState, NewJob
from nuvem.stores.redis_client import connect
from nuvem.stores.redis_keys import FUNCTIONS, REAPER_LOCK, FunctionKeys
from nuvem.stores.redis_layout import migrate_layout
from nuvem.stores.redis_scripts import ACK, ENQUEUE, PROMOTE, Scripts
from nuvem.stores.sql_jobs import SqlJobStore

GROUP = "nuvem"
REAP_INTERVAL = 1.0
PROMOTE_BATCH = 500


class RedisJobStore:
    def __init__(
        self,
        records: SqlJobStore,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        self.records = records
        target = RedisUrl.parse(url)
        self.cluster = target.cluster
        self.redis: Any = client or connect(target)
        self._clock = clock
        self._groups: set[str] = set()  # functions whose stream and group exist
        self._entries: dict[str, tuple[str, bytes]] = {}  # job id -> (function, entry id)
        self._reaped_at = 0.0
        self._lease = 15.0
        self._scripts = Scripts(self.redis)
        if not self.cluster:
            migrate_layout(self.redis, self._ensure_group)

    # -- clients: the records answer, the stream is told --------------------------------------

    def submit(self, job: NewJob) -> tuple[Job, bool]:
        return self.submit_many([job])[0]

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        answers = self.records.submit_many(new)
        by_function: dict[str, list[str]] = {}
        for job, fresh in answers:
            if fresh:
                by_function.setdefault(job.function, []).append(job.id)
        for function, job_ids in by_function.items():
            self._enqueue(function, job_ids)
        return answers

    def get(self, job_id: str, *, with_body: bool = True) -> Job | None:
        return self.records.get(job_id, with_body=with_body)

    def find(
        self, function: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[Job]:
        return self.records.find(function, state, limit)

    def counts(self) -> dict[tuple[str, JobState], int]:
        return self.records.counts()

    def cancel(self, job_id: str, expires_at: float) -> Job | None:
        # Its stream entry stays: whoever reads it finds the job cancelled and acks it.
        return self.records.cancel(job_id, expires_at)

    # -- workers -----------------------------------------------------------------------------

    def claim(self, owner: str, capacity: dict[str, int], lease: float) -> list[Job]:
        self._lease = lease
        now = self._clock()
        if now - self._reaped_at >= REAP_INTERVAL:
            self._reaped_at = now
            self._reap(owner, lease, capacity)
        claimed: list[Job] = []
        for function, limit in capacity.items():
            # An estimate, to read no more entries than could run: claim_ids has the final
            # word, under the function's claim turn.
            free = limit - self.records.running(function)
            if free <= 0:
                continue
            try:
                entries = self._take_over(function, owner, lease, free)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost the group (restarted without its data, or a replica promoted
                # before it had it): make it again; the reaper re-enqueues from the records.
                self._groups.discard(function)
                entries = self._take_over(function, owner, lease, free)
            if len(entries) < free:
                entries += self._read(function, owner, free - len(entries))
            if not entries:
                continue
            ids = {self._job_id(fields): entry_id for entry_id, fields in entries}
            got = self.records.claim_ids(owner, function, list(ids), lease, limit)
            for job in got:
                self._entries[job.id] = (function, ids.pop(job.id))
            claimed += got
            self._settle_unclaimed(function, ids, now)
        return claimed

    def _settle_unclaimed(self, function: str, entries: dict[str, bytes], now: float) -> None:
        """Entries read but not claimed. A job that is over (or gone) or waits for its retry
        time (the delayed set brings it back) is acked; one that was due but found no free
        slot (another gateway took it) goes back to the stream for whoever has room. A running
        one stays pending: its owner acks its own entry, and should the owner have died,
        XAUTOCLAIM hands this entry on once it has been idle for a lease."""
        again: list[str] = []
        done: list[tuple[bytes, str]] = []
        for job_id, entry_id in entries.items():
            job = self.records.get(job_id, with_body=False)
            waits = job is not None and job.state is JobState.QUEUED and job.available_at > now
            if job is None or job.state.finished or waits:
                done.append((entry_id, job_id))
            elif job.state is JobState.QUEUED:
                again.append(job_id)
                done.append((entry_id, job_id))
        # The new entry first, so the count of the job's entries never drops to 0 between.
        self._enqueue(function, again)
        self._ack(function, done)

    def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        lost = self.records.renew(owner, job_ids, lease)
        by_function: dict[str, list[bytes]] = {}
        for job_id in job_ids:
            held = self._entries.get(job_id)
            if held is not None and job_id not in lost:
                by_function.setdefault(held[0], []).append(held[1])
        for function, entry_ids in by_function.items():
            # Re-claiming to ourselves resets the idle time XAUTOCLAIM looks at.
            stream = FunctionKeys.of(function).stream
            self.redis.xclaim(stream, GROUP, owner, 0, entry_ids, justid=True)
        return lost

    def finish(self, owner: str, job_id: str, finish: Finish) -> bool:
        return self.finish_many(owner, [(job_id, finish)])[0]

    def finish_many(self, owner: str, ends: Sequence[tuple[str, Finish]]) -> list[bool]:
        answers = self.records.finish_many(owner, ends)
        retries: dict[str, dict[str, float]] = {}
        done: dict[str, list[tuple[bytes, str]]] = {}
        for (job_id, finish), ok in zip(ends, answers, strict=True):
            held = self._entries.pop(job_id, None)
            if ok and finish.state is JobState.QUEUED:
                job = self.records.get(job_id, with_body=False)
                if job is not None:
                    due = finish.retry_at if finish.retry_at is not None else self._clock()
                    retries.setdefault(job.function, {})[job_id] = due
            if held is not None:
                done.setdefault(held[0], []).append((held[1], job_id))
        for function, due_at in retries.items():
            # Listed before the retry is added, so the reaper never misses a waiting retry.
            self.redis.sadd(FUNCTIONS, function)
            self.redis.zadd(FunctionKeys.of(function).delayed, due_at)
        for function, entries in done.items():
            self._ack(function, entries)
        return answers

    def claim_callbacks(self, owner: str, limit: int, lease: float) -> list[Job]:
        return self.records.claim_callbacks(owner, limit, lease)

    def callback_done(
        self, job_id: str, state: CallbackState, retry_at: float = 0.0, error: str | None = None
    ) -> None:
        self.records.callback_done(job_id, state, retry_at, error)

    def purge(self, now: float) -> int:
        return self.records.purge(now)

    def close(self) -> None:
        self.records.close()
        self.redis.close()

    # -- the reaper ---------------------------------------------------------------------------

    def _reap(self, owner: str, lease: float, capacity: dict[str, int]) -> None:
        # The lock keeps two gateways from reaping at once; it expires by itself should its
        # holder die mid-step.
        if not self.redis.set(REAPER_LOCK, owner, nx=True, px=int(lease * 1000)):
            return
        try:
            self._reap_step(lease, capacity)
        finally:
            if self.redis.get(REAPER_LOCK) == owner.encode():
                self.redis.delete(REAPER_LOCK)

    def _reap_step(self, lease: float, capacity: dict[str, int]) -> None:
        now = self._clock()
        listed = {member.decode() for member in self.redis.smembers(FUNCTIONS)}
        for function in sorted(listed | set(capacity)):
            if self._scripts.run(PROMOTE, function, [now, PROMOTE_BATCH]):
                self._ensure_group(function)
        stranded = self.records.stranded(now - 2 * lease)
        if not stranded:
            return
        # A job due this long may simply wait its turn in a long stream: only one that has
        # no entry in its stream (enqueued) and no retry time (delayed) is enqueued again.
        # Not a MULTI: on a cluster these keys live on several masters.
        pipe = self.redis.pipeline(transaction=False)
        for function, job_id in stranded:
            keys = FunctionKeys.of(function)
            pipe.hexists(keys.enqueued, job_id)
            pipe.zscore(keys.delayed, job_id)
        found = pipe.execute()
        lost: dict[str, list[str]] = {}
        for index, (function, job_id) in enumerate(stranded):
            if not found[2 * index] and found[2 * index + 1] is None:
                lost.setdefault(function, []).append(job_id)
        for function, job_ids in lost.items():
            self._enqueue(function, job_ids)

    # -- streams ------------------------------------------------------------------------------

    def _ensure_group(self, function: str) -> None:
        if function in self._groups:
            return
        try:
            self.redis.xgroup_create(FunctionKeys.of(function).stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(function)

    def _enqueue(self, function: str, job_ids: list[str]) -> None:
        """A new entry for each job, counted in the function's `enqueued` in the same step."""
        if job_ids:
            self._ensure_group(function)
            self._scripts.run(ENQUEUE, function, job_ids)

    def _ack(self, function: str, entries: list[tuple[bytes, str]]) -> None:
        """Ack the entries and delete them."""
        if entries:
            args: list[Any] = [GROUP]
            for entry_id, job_id in entries:
                args += [entry_id, job_id]
            self._scripts.run(ACK, function, args)

    def _take_over(self, function: str, owner: str, lease: float, count: int) -> list[Any]:
        self._ensure_group(function)
        answer: Any = self.redis.xautoclaim(
            FunctionKeys.of(function).stream,
            GROUP,
            owner,
            min_idle_time=int(lease * 1000),
            start_id="0-0",
            count=count,
        )
        entries: list[Any] = [e for e in answer[1] if e[1]]  # deleted entries come back empty
        return entries

    def _read(self, function: str, owner: str, count: int) -> list[Any]:
        stream = FunctionKeys.of(function).stream
        answer: Any = self.redis.xreadgroup(GROUP, owner, {stream: ">"}, count=count)
        return list(answer[0][1]) if answer else []

    @staticmethod
    def _job_id(fields: dict[bytes, bytes]) -> str:
        return fields[b"id"].decode()
