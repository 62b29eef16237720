"""`RedisJobStore`: job records in SQL (PostgreSQL), delivery through Redis Streams.

Several gateways share one Redis and one PostgreSQL. Each function has a stream; every
gateway reads it in the consumer group `nuvem` under its own consumer name. The SQL record
stays the authority: an entry a gateway reads becomes its job only if the conditional
claim in SQL succeeds, so a duplicate entry runs nothing twice at the same time.

- A gateway that dies leaves its entries pending; once idle for longer than a lease, any
  live gateway takes them over with XAUTOCLAIM. A live gateway keeps its entries fresh by
  re-claiming them to itself whenever it renews its leases.
- Retries wait in a sorted set (score: due time) until the reaper moves them to the stream.
- The reaper also re-enqueues jobs that SQL says are due but that no stream may hold (a
  crash between the SQL write and XADD). It runs in every gateway's step, one at a time
  (a short Redis lock), so it runs while any gateway lives.
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

    # -- clients: the records answer, the stream is told --------------------------------------

    def submit(self, job: NewJob) -> tuple[Job, bool]:
        return self.submit_many([job])[0]

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        answers = self.records.submit_many(new)
        streams = {job.function: self._stream(job.function) for job, created in answers if created}
        if streams:
            pipe = self.redis.pipeline(transaction=False)
            for job, created in answers:
                if created:
                    pipe.xadd(streams[job.function], {"id": job.id})
            pipe.execute()
        return answers

    def get(self, job_id: str, *, with_body: bool = True) -> Job | None:
        return self.records.get(job_id, with_body=with_body)

    def find(
        self, function: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[Job]:
        return self.records.find(function, state, limit)

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
        pipe = self.redis.pipeline(transaction=False)
        for job_id, entry_id in entries.items():
            job = self.records.get(job_id, with_body=False)
            waits = job is not None and job.state is JobState.QUEUED and job.available_at > now
            if job is None or job.state.finished or waits:
                pipe.xack(stream, GROUP, entry_id)
            elif job.state is JobState.QUEUED:
                pipe.xadd(stream, {"id": job_id})
                pipe.xack(stream, GROUP, entry_id)
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
        pipe = self.redis.pipeline(transaction=False)
        for (job_id, finish), ok in zip(ends, answers, strict=True):
            held = self._entries.pop(job_id, None)
            if ok and finish.state is JobState.QUEUED:
                job = self.records.get(job_id, with_body=False)
                if job is not None:
                    due = finish.retry_at if finish.retry_at is not None else self._clock()
                    pipe.zadd(DELAYED, {f"{job.function}|{job_id}": due})
            if held is not None:
                pipe.xack(held[0], GROUP, held[1])
        if len(pipe):
            pipe.execute()
        return answers

    def claim_callbacks(self, owner: str, limit: int, lease: float) -> list[Job]:
        return self.records.claim_callbacks(owner, limit, lease)

    def callback_done(self, job_id: str, state: CallbackState, retry_at: float = 0.0) -> None:
        self.records.callback_done(job_id, state, retry_at)

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
        known: dict[str, set[str]] = {}
        for function, job_id in self.records.stranded(now - 2 * lease):
            if function not in known:
                known[function] = self._stream_ids(self._stream(function))
            if job_id in known[function]:
                continue
            if self.redis.zscore(DELAYED, f"{function}|{job_id}") is None:
                self._add(function, job_id)

    def _stream_ids(self, stream: str) -> set[str]:
        """Job ids with an entry in the stream that is pending or not yet delivered."""
        found = set()
        for pending in self.redis.xpending_range(stream, GROUP, "-", "+", 10_000):
            entry_id = pending["message_id"]
            for _, fields in self.redis.xrange(stream, entry_id, entry_id):
                found.add(self._job_id(fields))
        groups: Any = self.redis.xinfo_groups(stream)
        last = next((g["last-delivered-id"] for g in groups if _text(g["name"]) == GROUP), None)
        if last is not None:
            for _, fields in self.redis.xrange(stream, f"({_text(last)}", "+", count=10_000):
                found.add(self._job_id(fields))
        return found

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
        self.redis.xadd(self._stream(function), {"id": job_id})

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
