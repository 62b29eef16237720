"""`RedisJobStore`: job records in SQL (PostgreSQL), delivery through Redis Streams.

Several gateways share one Redis and one PostgreSQL. Each function has a stream; every
gateway reads it in the consumer group `nuvem` under its own consumer name. The SQL record
stays the authority: an entry a gateway reads becomes its job only if the conditional
claim in SQL succeeds, so a duplicate entry runs nothing twice at the same time.

- A gateway that dies leaves its entries pending; once idle for longer than a lease, any
  live gateway takes them over with XAUTOCLAIM. A live gateway keeps its entries fresh by
  re-claiming them to itself whenever it renews its leases.
- Retries wait in a sorted set (score: due time) until the reaper moves them to the stream.
- The reaper also re-enqueues jobs that SQL says are due but that no stream holds (a
  crash between the SQL write and XADD, or a Redis that lost its data): a hash counts each
  job's live entries, kept in step with XADD and XACK atomically. Acked entries are
  deleted, so a stream holds only the work still to do. The reaper runs in every gateway's
  step, one at a time (a short Redis lock), so it runs while any gateway lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from nuvem.stores.job import CallbackState, Finish, Job, JobState, NewJob
from nuvem.stores.sql_jobs import SqlJobStore

GROUP = "nuvem"
PREFIX = "nuvem:jobs:"
DELAYED = PREFIX + "delayed"
REAPER_LOCK = PREFIX + "reaper"
REAP_INTERVAL = 1.0
# job id -> entries it has in the streams (added, not yet acked), so the reaper can tell a
# job waiting in a long stream from one a crash left out, without reading the streams.
ENQUEUED = PREFIX + "enqueued"
# XACK, XDEL and the count in one step; only an entry really deleted lowers the count, so
# acking twice (two gateways settling the same entry) counts once.
_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local deleted = redis.call('XDEL', KEYS[1], ARGV[2])
if deleted == 1 and redis.call('HINCRBY', KEYS[2], ARGV[3], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return deleted
"""


class RedisJobStore:
    def __init__(
        self,
        records: SqlJobStore,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        client: redis.Redis | None = None,
    ) -> None:
        self.records = records
        # Typed as Any: redis-py's response types are unions of every shape a command can
        # answer in (bytes or str, RESP2 or RESP3); the helpers below read the one we use.
        self.redis: Any = client or redis.Redis.from_url(url)
        self._clock = clock
        self._groups: set[str] = set()
        self._entries: dict[str, tuple[str, bytes]] = {}  # job id -> (stream, entry id)
        self._reaped_at = 0.0
        self._lease = 15.0
        self._ack_script = self.redis.register_script(_ACK)

    # -- clients: the records answer, the stream is told --------------------------------------

    def submit(self, job: NewJob) -> tuple[Job, bool]:
        return self.submit_many([job])[0]

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        answers = self.records.submit_many(new)
        created = [job for job, fresh in answers if fresh]
        if created:
            pipe = self.redis.pipeline(transaction=True)
            for job in created:
                self._enqueue(pipe, self._stream(job.function), job.id)
            pipe.execute()
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
            self._reap(owner, lease)
        claimed: list[Job] = []
        for function, limit in capacity.items():
            # An estimate, to read no more entries than could run: claim_ids has the final
            # word, under the function's claim turn.
            free = limit - self.records.running(function)
            if free <= 0:
                continue
            stream = self._stream(function)
            try:
                entries = self._take_over(stream, owner, lease, free)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost the group (restarted without its data): make it again; the
                # reaper re-enqueues the jobs from the records.
                self._groups.discard(stream)
                stream = self._stream(function)
                entries = self._take_over(stream, owner, lease, free)
            if len(entries) < free:
                entries += self._read(stream, owner, free - len(entries))
            if not entries:
                continue
            ids = {self._job_id(fields): entry_id for entry_id, fields in entries}
            got = self.records.claim_ids(owner, function, list(ids), lease, limit)
            for job in got:
                self._entries[job.id] = (stream, ids.pop(job.id))
            claimed += got
            self._settle_unclaimed(function, stream, ids, now)
        return claimed

    def _settle_unclaimed(
        self, function: str, stream: str, entries: dict[str, bytes], now: float
    ) -> None:
        """Entries read but not claimed. A job that is over (or gone) or waits for its retry
        time (the delayed set brings it back) is acked; one that was due but found no free
        slot (another gateway took it) goes back to the stream for whoever has room. A running
        one stays pending: its owner acks its own entry, and should the owner have died,
        XAUTOCLAIM hands this entry on once it has been idle for a lease."""
        pipe = self.redis.pipeline(transaction=True)
        for job_id, entry_id in entries.items():
            job = self.records.get(job_id, with_body=False)
            waits = job is not None and job.state is JobState.QUEUED and job.available_at > now
            if job is None or job.state.finished or waits:
                self._done(pipe, stream, entry_id, job_id)
            elif job.state is JobState.QUEUED:
                self._enqueue(pipe, stream, job_id)
                self._done(pipe, stream, entry_id, job_id)
        if len(pipe):
            pipe.execute()

    def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        lost = self.records.renew(owner, job_ids, lease)
        by_stream: dict[str, list[bytes]] = {}
        for job_id in job_ids:
            held = self._entries.get(job_id)
            if held is not None and job_id not in lost:
                by_stream.setdefault(held[0], []).append(held[1])
        for stream, entry_ids in by_stream.items():
            # Re-claiming to ourselves resets the idle time XAUTOCLAIM looks at.
            self.redis.xclaim(stream, GROUP, owner, 0, entry_ids, justid=True)
        return lost

    def finish(self, owner: str, job_id: str, finish: Finish) -> bool:
        return self.finish_many(owner, [(job_id, finish)])[0]

    def finish_many(self, owner: str, ends: Sequence[tuple[str, Finish]]) -> list[bool]:
        answers = self.records.finish_many(owner, ends)
        pipe = self.redis.pipeline(transaction=True)
        for (job_id, finish), ok in zip(ends, answers, strict=True):
            held = self._entries.pop(job_id, None)
            if ok and finish.state is JobState.QUEUED:
                job = self.records.get(job_id, with_body=False)
                if job is not None:
                    due = finish.retry_at if finish.retry_at is not None else self._clock()
                    pipe.zadd(DELAYED, {f"{job.function}|{job_id}": due})
            if held is not None:
                self._done(pipe, held[0], held[1], job_id)
        if len(pipe):
            pipe.execute()
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

    def _reap(self, owner: str, lease: float) -> None:
        # The lock keeps two gateways from reaping at once; it expires by itself should its
        # holder die mid-step.
        if not self.redis.set(REAPER_LOCK, owner, nx=True, px=int(lease * 1000)):
            return
        try:
            self._reap_step(lease)
        finally:
            if self.redis.get(REAPER_LOCK) == owner.encode():
                self.redis.delete(REAPER_LOCK)

    def _reap_step(self, lease: float) -> None:
        now = self._clock()
        for member in self.redis.zrangebyscore(DELAYED, "-inf", now, start=0, num=500):
            # ZREM first: only the gateway whose ZREM removed it enqueues it.
            if self.redis.zrem(DELAYED, member):
                function, _, job_id = member.decode().partition("|")
                self._add(function, job_id)
        stranded = self.records.stranded(now - 2 * lease)
        if not stranded:
            return
        # A job due this long may simply wait its turn in a long stream: only one that has
        # no entry in any stream (ENQUEUED) and no retry time (DELAYED) is enqueued again.
        pipe = self.redis.pipeline(transaction=False)
        for function, job_id in stranded:
            pipe.hexists(ENQUEUED, job_id)
            pipe.zscore(DELAYED, f"{function}|{job_id}")
        found = pipe.execute()
        for index, (function, job_id) in enumerate(stranded):
            if not found[2 * index] and found[2 * index + 1] is None:
                self._add(function, job_id)

    # -- streams ------------------------------------------------------------------------------

    def _stream(self, function: str) -> str:
        stream = PREFIX + function
        if stream not in self._groups:
            try:
                self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(stream)
        return stream

    def _add(self, function: str, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self._enqueue(pipe, self._stream(function), job_id)
        pipe.execute()

    @staticmethod
    def _enqueue(pipe: Any, stream: str, job_id: str) -> None:
        """A new entry for the job, counted in ENQUEUED in the same MULTI."""
        pipe.xadd(stream, {"id": job_id})
        pipe.hincrby(ENQUEUED, job_id, 1)

    def _done(self, pipe: Any, stream: str, entry_id: bytes, job_id: str) -> None:
        """Ack the entry and delete it: acked entries would otherwise stay in the stream,
        which would grow by one entry per job forever."""
        self._ack_script(keys=[stream, ENQUEUED], args=[GROUP, entry_id, job_id], client=pipe)

    def _take_over(self, stream: str, owner: str, lease: float, count: int) -> list[Any]:
        answer: Any = self.redis.xautoclaim(
            stream, GROUP, owner, min_idle_time=int(lease * 1000), start_id="0-0", count=count
        )
        entries: list[Any] = [e for e in answer[1] if e[1]]  # deleted entries come back empty
        return entries

    def _read(self, stream: str, owner: str, count: int) -> list[Any]:
        answer: Any = self.redis.xreadgroup(GROUP, owner, {stream: ">"}, count=count)
        return list(answer[0][1]) if answer else []

    @staticmethod
    def _job_id(fields: dict[bytes, bytes]) -> str:
        return fields[b"id"].decode()
