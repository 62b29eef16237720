"""`SqlJobStore`: jobs and their queue in one SQL table, on SQLite (WAL) or PostgreSQL.

The table is the queue: a claim is one transaction that picks due jobs and writes the
lease, so a job is never handed to two live gateways at once (SQLite serialises writers
with BEGIN IMMEDIATE; PostgreSQL skips rows another gateway has locked).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from nuvem.stores.checkpointer import WalCheckpointer
from nuvem.stores.engines import postgres_engine, sqlite_engine
from nuvem.stores.job import (
    CallbackState,
    Finish,
    Job,
    JobRequest,
    JobResult,
    JobState,
    NewJob,
)
from nuvem.stores.migrations import Migration, upgrade

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(63), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),  # JSON list of [name, value]
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("callback_url", sa.Text, nullable=True),
    sa.Column("callback_state", sa.String(16), nullable=False),
    sa.Column("callback_attempts", sa.Integer, nullable=False),
    sa.Column("callback_at", sa.Float, nullable=False),  # next delivery, or lease end
    sa.Column("callback_error", sa.Text, nullable=True),  # why the last delivery failed
    sa.Column("result_status", sa.Integer, nullable=True),
    sa.Column("result_headers", sa.Text, nullable=True),
    sa.Column("result_body", sa.LargeBinary, nullable=True),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String(300), nullable=True),
    sa.Index("jobs_due", "function", "state", "available_at"),
    sa.Index("jobs_created", "created_at"),
)
# Partial indexes: a submit writes only the pages of the indexes its row is in, and most
# rows have no idempotency key, no pending callback and no expiry yet. Fewer pages per
# commit is less WAL to write and to checkpoint.
_only = {
    "jobs_idempotency": sa.column("idempotency_key").is_not(None),
    "jobs_callbacks": sa.column("callback_state") == CallbackState.PENDING.value,
    "jobs_expiry": sa.column("expires_at").is_not(None),
}
sa.Index(
    "jobs_idempotency",
    jobs.c.idempotency_key,
    unique=True,
    sqlite_where=_only["jobs_idempotency"],
    postgresql_where=_only["jobs_idempotency"],
)
sa.Index(
    "jobs_callbacks",
    jobs.c.callback_at,
    sqlite_where=_only["jobs_callbacks"],
    postgresql_where=_only["jobs_callbacks"],
)
sa.Index(
    "jobs_expiry",
    jobs.c.expires_at,
    sqlite_where=_only["jobs_expiry"],
    postgresql_where=_only["jobs_expiry"],
)

# One row: the version of the jobs schema, which upgrades on its own (see migrations.py).
jobs_schema = sa.Table("jobs_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

MIGRATIONS = [
    Migration(1, "jobs table", lambda conn: metadata.create_all(conn, tables=[jobs, jobs_schema])),
    Migration(
        2,
        "jobs.callback_error: why the last callback failed",
        lambda conn: _add_column(conn, jobs.c.callback_error),
    ),
]


def _add_column(conn: sa.Connection, column: sa.Column[Any]) -> None:
    # Step 1 creates the table as declared now, new columns included: add only where missing.
    present = {c["name"] for c in sa.inspect(conn).get_columns(column.table.name)}
    if column.name not in present:
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}"))


def _read_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("jobs_schema"):
        return 0
    found = conn.execute(sa.select(jobs_schema.c.version)).scalar_one_or_none()
    return int(found or 0)


def _write_version(conn: sa.Connection, version: int) -> None:
    conn.execute(sa.delete(jobs_schema))
    conn.execute(sa.insert(jobs_schema).values(version=version))


# Built once: statements on the accept and finish paths are the hottest, and building
# them per call (coercing every column) costs more than running them.
_INSERT = sa.insert(jobs)
_HELD = (
    jobs.c.id == sa.bindparam("p_id"),
    jobs.c.owner == sa.bindparam("p_owner"),
    jobs.c.state == JobState.RUNNING.value,
)
_ATTEMPT_ENDED = {
    "state": sa.bindparam("p_state"),
    "owner": None,
    "lease_until": None,
    "updated_at": sa.bindparam("p_now"),
    "error": sa.bindparam("p_error"),
    "result_status": sa.bindparam("p_status"),
    "result_headers": sa.bindparam("p_headers"),
    "result_body": sa.bindparam("p_body", type_=sa.LargeBinary),
    "duration": sa.bindparam("p_duration"),
}
_REQUEUE = (
    sa.update(jobs).where(*_HELD).values(**_ATTEMPT_ENDED, available_at=sa.bindparam("p_available"))
)
_FINISH = (
    sa.update(jobs)
    .where(*_HELD)
    .values(
        **_ATTEMPT_ENDED,
        finished_at=sa.bindparam("p_now"),
        expires_at=sa.bindparam("p_expires"),
        callback_at=sa.bindparam("p_now"),
        # A callback waiting for the end is due now; a job without one stays without.
        callback_state=sa.case(
            (jobs.c.callback_state == CallbackState.WAITING.value, CallbackState.PENDING.value),
            else_=jobs.c.callback_state,
        ),
    )
)

_NOW = sa.bindparam("p_now", type_=sa.Float)
_CLAIM = (
    sa.select(jobs.c.id)
    .where(
        jobs.c.function == sa.bindparam("p_function"),
        sa.or_(
            sa.and_(jobs.c.state == JobState.QUEUED.value, jobs.c.available_at <= _NOW),
            sa.and_(jobs.c.state == JobState.RUNNING.value, jobs.c.lease_until < _NOW),
        ),
    )
    .order_by(jobs.c.available_at)
    .limit(sa.bindparam("p_free"))
)
_CLAIM_PG = _CLAIM.with_for_update(skip_locked=True)
_LEASE = (
    sa.update(jobs)
    .where(jobs.c.id.in_(sa.bindparam("p_ids", expanding=True)))
    .values(
        state=JobState.RUNNING.value,
        owner=sa.bindparam("p_owner"),
        lease_until=sa.bindparam("p_until"),
        attempts=jobs.c.attempts + 1,
        started_at=sa.func.coalesce(jobs.c.started_at, _NOW),
        updated_at=_NOW,
    )
)
# One statement: pick the due jobs and lease them, answering their rows.
_LEASED = {
    "state": JobState.RUNNING.value,
    "owner": sa.bindparam("p_owner"),
    "lease_until": sa.bindparam("p_until"),
    "attempts": jobs.c.attempts + 1,
    "started_at": sa.func.coalesce(jobs.c.started_at, _NOW),
    "updated_at": _NOW,
}
_TAKE = (
    sa.update(jobs)
    .where(jobs.c.id.in_(_CLAIM.scalar_subquery()))
    .values(**_LEASED)
    .returning(*jobs.c)
)
_TAKE_PG = (
    sa.update(jobs)
    .where(jobs.c.id.in_(_CLAIM_PG.scalar_subquery()))
    .values(**_LEASED)
    .returning(*jobs.c)
)
_MANY = sa.select(jobs).where(jobs.c.id.in_(sa.bindparam("p_ids", expanding=True)))
# Jobs of a function running anywhere now: a lease that ran out no longer counts.
_RUNNING = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(
        jobs.c.function == sa.bindparam("p_function"),
        jobs.c.state == JobState.RUNNING.value,
        jobs.c.lease_until >= _NOW,
    )
)
# Gateways claiming jobs of one function take turns (until their transaction ends), so that
# two of them never both see room for the last free slot.
_CLAIM_TURN_PG = sa.select(
    sa.func.pg_advisory_xact_lock(sa.func.hashtext(sa.bindparam("p_lock", type_=sa.String)))
)

# Read on every scrape of /metrics: an index-only scan of jobs_due (function, state, ...).
_COUNTS = sa.select(jobs.c.function, jobs.c.state, sa.func.count().label("n")).group_by(
    jobs.c.function, jobs.c.state
)

_SUMMARY = [c for c in jobs.c if c.name not in ("body", "result_body")]
_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


class SqlJobStore:
    """Jobs in the `jobs` table of an SQL database; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        writer: Engine | None = None,
        *,
        accepter: Engine | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._writer = writer or engine
        # Submits may need a stronger commit than the rest: a lost claim or finish only runs
        # a job again, but a lost submit loses a job the client was told is accepted.
        self._accepter = accepter or self._writer
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._checkpointer: WalCheckpointer | None = None
        with self._writer.begin() as conn:
            upgrade(conn, MIGRATIONS, _read_version, _write_version, "job store")

    @classmethod
    def sqlite(cls, path: Path, *, clock: Callable[[], float] = time.time) -> SqlJobStore:
        engine, writer = sqlite_engine(path, autocheckpoint=False)
        # Submits commit with synchronous=FULL: an accepted job survives power loss too. The
        # sync costs one fsync per batch of submits (see jobs/store_thread.py), and it makes
        # every commit before it durable as well.
        _, accepter = sqlite_engine(path, autocheckpoint=False, synchronous="FULL")
        store = cls(engine, writer, accepter=accepter, clock=clock)
        store._checkpointer = WalCheckpointer(path)
        return store

    @classmethod
    def postgres(cls, url: str, *, clock: Callable[[], float] = time.time) -> SqlJobStore:
        return cls(postgres_engine(url), clock=clock)

    # -- clients ---------------------------------------------------------------------------

    def submit(self, job: NewJob) -> tuple[Job, bool]:
        return self.submit_many([job])[0]

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        now = self._clock()
        # A job with an idempotency key may meet an earlier one: each goes on its own (a
        # look, then an insert that may lose a race). The others cannot collide (their ids
        # are fresh UUIDs), so they share one transaction.
        plain = [job for job in new if job.idempotency_key is None]
        if plain:
            with self._accepter.begin() as conn:
                conn.execute(_INSERT, [_new_row(job, now) for job in plain])
        return [
            (_queued(job, now), True) if job.idempotency_key is None else self._submit_keyed(job)
            for job in new
        ]

    def _submit_keyed(self, job: NewJob) -> tuple[Job, bool]:
        key = job.idempotency_key
        assert key is not None
        existing = self._by_idempotency_key(key)
        if existing is not None:
            return existing, False
        now = self._clock()
        try:
            with self._accepter.begin() as conn:
                conn.execute(_INSERT, _new_row(job, now))
        except IntegrityError:
            # Another gateway stored the same idempotency key between our look and our insert.
            existing = self._by_idempotency_key(key)
            if existing is None:
                raise
            return existing, False
        return _queued(job, now), True

    def _by_idempotency_key(self, key: str) -> Job | None:
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(*_SUMMARY).where(jobs.c.idempotency_key == key)).first()
        return None if row is None else _job(row, with_body=False)

    def get(self, job_id: str, *, with_body: bool = True) -> Job | None:
        columns = list(jobs.c) if with_body else _SUMMARY
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(*columns).where(jobs.c.id == job_id)).first()
        return None if row is None else _job(row, with_body=with_body)

    def find(
        self, function: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[Job]:
        query = sa.select(*_SUMMARY).order_by(jobs.c.created_at.desc()).limit(max(limit, 0))
        if function is not None:
            query = query.where(jobs.c.function == function)
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        with self._engine.begin() as conn:
            rows = conn.execute(query).all()
        return [_job(row, with_body=False) for row in rows]

    def counts(self) -> dict[tuple[str, JobState], int]:
        with self._engine.begin() as conn:
            rows = conn.execute(_COUNTS).all()
        return {(row.function, JobState(row.state)): int(row.n) for row in rows}

    def cancel(self, job_id: str, expires_at: float) -> Job | None:
        now = self._clock()
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state.in_(_ACTIVE))
                .values(
                    state=JobState.CANCELLED.value,
                    updated_at=now,
                    finished_at=now,
                    expires_at=expires_at,
                    owner=None,
                    lease_until=None,
                    callback_state=CallbackState.NONE.value,
                )
            )
        return self.get(job_id, with_body=False)

    # -- workers ---------------------------------------------------------------------------

    def claim(self, owner: str, capacity: dict[str, int], lease: float) -> list[Job]:
        now = self._clock()
        claimed: list[Job] = []
        statement = _TAKE_PG if self._postgres else _TAKE
        with self._writer.begin() as conn:
            for function, limit in capacity.items():
                free = limit - self._running(conn, function, now)
                if free <= 0:
                    continue
                params = {
                    "p_function": function,
                    "p_now": now,
                    "p_free": free,
                    "p_owner": owner,
                    "p_until": now + lease,
                }
                rows = conn.execute(statement, params).all()
                claimed += sorted(
                    (_job(row, with_body=True) for row in rows),
                    key=lambda j: (j.available_at, j.created_at, j.id),
                )
        return claimed

    def _running(self, conn: sa.Connection, function: str, now: float) -> int:
        """Jobs of `function` running on any gateway; on PostgreSQL, first wait for the turn
        to claim them (SQLite's BEGIN IMMEDIATE already lets one writer in at a time)."""
        if self._postgres:
            conn.execute(_CLAIM_TURN_PG, {"p_lock": f"nuvem-jobs:{function}"})
        return int(conn.execute(_RUNNING, {"p_function": function, "p_now": now}).scalar_one())

    def running(self, function: str) -> int:
        """Jobs of `function` running on any gateway now (without taking the turn)."""
        with self._engine.begin() as conn:
            found = conn.execute(_RUNNING, {"p_function": function, "p_now": self._clock()})
            return int(found.scalar_one())

    def claim_ids(
        self, owner: str, function: str, job_ids: list[str], lease: float, limit: int
    ) -> list[Job]:
        """Those of `job_ids` (jobs of `function`) that are due, now RUNNING under owner's
        lease, as long as no more than `limit` of the function's jobs then run (a queue in
        front of this store decides which jobs to try)."""
        if not job_ids:
            return []
        now = self._clock()
        with self._writer.begin() as conn:
            free = limit - self._running(conn, function, now)
            if free <= 0:
                return []
            query = (
                sa.select(jobs.c.id)
                .where(jobs.c.id.in_(job_ids), _due(now))
                .order_by(jobs.c.available_at)
                .limit(free)
            )
            ids = self._pick(conn, query)
            if ids:
                self._lease(conn, owner, ids, now, lease)
        return self._many(ids) if ids else []

    def stranded(self, older_than: float, limit: int = 500) -> list[tuple[str, str]]:
        """(function, id) of jobs due since before `older_than`: a queue in front of this
        store may have lost track of them (a crash between writing here and enqueuing)."""
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(jobs.c.function, jobs.c.id)
                .where(
                    sa.or_(
                        sa.and_(
                            jobs.c.state == JobState.QUEUED.value,
                            jobs.c.available_at < older_than,
                        ),
                        sa.and_(
                            jobs.c.state == JobState.RUNNING.value,
                            jobs.c.lease_until < older_than,
                        ),
                    )
                )
                .limit(limit)
            ).all()
        return [(row.function, row.id) for row in rows]

    def _pick(self, conn: sa.Connection, query: sa.Select[Any]) -> list[str]:
        """The ids `query` selects; on PostgreSQL locked until the transaction ends, skipping
        rows another gateway has locked (SQLite lets one writer in at a time anyway)."""
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        return list(conn.execute(query).scalars())

    def _lease(
        self, conn: sa.Connection, owner: str, ids: list[str], now: float, lease: float
    ) -> None:
        conn.execute(_LEASE, {"p_ids": ids, "p_owner": owner, "p_until": now + lease, "p_now": now})

    def _many(self, ids: list[str]) -> list[Job]:
        with self._engine.begin() as conn:
            rows = conn.execute(_MANY, {"p_ids": ids}).all()
        found = {row.id: _job(row, with_body=True) for row in rows}
        return [found[i] for i in ids if i in found]

    def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        if not job_ids:
            return set()
        now = self._clock()
        held = (
            jobs.c.id.in_(job_ids),
            jobs.c.owner == owner,
            jobs.c.state == JobState.RUNNING.value,
        )
        with self._writer.begin() as conn:
            conn.execute(sa.update(jobs).where(*held).values(lease_until=now + lease))
            kept = set(conn.execute(sa.select(jobs.c.id).where(*held)).scalars())
        return set(job_ids) - kept

    def finish(self, owner: str, job_id: str, finish: Finish) -> bool:
        return self.finish_many(owner, [(job_id, finish)])[0]

    def finish_many(self, owner: str, ends: Sequence[tuple[str, Finish]]) -> list[bool]:
        if not ends:
            return []
        now = self._clock()
        with self._writer.begin() as conn:
            # Which of them owner still holds, asked first: an executemany tells only how
            # many rows it changed in all, not which.
            query = sa.select(jobs.c.id).where(
                jobs.c.id.in_([job_id for job_id, _ in ends]),
                jobs.c.owner == owner,
                jobs.c.state == JobState.RUNNING.value,
            )
            if self._postgres:
                query = query.with_for_update()
            held = set(conn.execute(query).scalars())
            answers: list[bool] = []
            final: list[dict[str, Any]] = []
            requeue: list[dict[str, Any]] = []
            for job_id, finish in ends:
                answers.append(job_id in held)
                if job_id not in held:
                    continue
                held.discard(job_id)  # the same job twice: only the first end counts
                params = _end_params(owner, job_id, finish, now)
                (requeue if finish.state is JobState.QUEUED else final).append(params)
            if final:
                conn.execute(_FINISH, final)
            if requeue:
                conn.execute(_REQUEUE, requeue)
        return answers

    def claim_callbacks(self, owner: str, limit: int, lease: float) -> list[Job]:
        now = self._clock()
        with self._writer.begin() as conn:
            query = (
                sa.select(jobs.c.id)
                .where(
                    # A literal, not a parameter: the planner then sees that the partial
                    # index jobs_callbacks covers this query.
                    jobs.c.callback_state == sa.literal_column(f"'{CallbackState.PENDING.value}'"),
                    jobs.c.callback_at <= now,
                )
                .order_by(jobs.c.callback_at)
                .limit(limit)
            )
            ids = self._pick(conn, query)
            if ids:
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.id.in_(ids))
                    .values(
                        callback_at=now + lease,
                        callback_attempts=jobs.c.callback_attempts + 1,
                    )
                )
        return self._many(ids) if ids else []

    def callback_done(
        self, job_id: str, state: CallbackState, retry_at: float = 0.0, error: str | None = None
    ) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id)
                .values(callback_state=state.value, callback_at=retry_at, callback_error=error)
            )

    def purge(self, now: float) -> int:
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.delete(jobs).where(
                    jobs.c.state.not_in(_ACTIVE),
                    jobs.c.expires_at < now,
                    jobs.c.callback_state != CallbackState.PENDING.value,
                )
            )
        return int(result.rowcount)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._engine.dispose()
        self._accepter.dispose()  # its own pool on SQLite; disposing a shared one again is a no-op


def _new_row(job: NewJob, now: float) -> dict[str, Any]:
    return {
        "id": job.id,
        "function": job.function,
        "state": JobState.QUEUED.value,
        "method": job.request.method,
        "path": job.request.path,
        "query": job.request.query,
        "headers": json.dumps(job.request.headers),
        "body": job.request.body,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "created_at": now,
        "updated_at": now,
        "available_at": now,
        "callback_url": job.callback_url,
        "callback_state": _first_callback_state(job).value,
        "callback_attempts": 0,
        "callback_at": 0.0,
        "idempotency_key": job.idempotency_key,
    }


def _first_callback_state(job: NewJob) -> CallbackState:
    return CallbackState.WAITING if job.callback_url else CallbackState.NONE


def _queued(job: NewJob, now: float) -> Job:
    """The record a submit just wrote, built rather than read back: one write per accept."""
    return Job(
        id=job.id,
        function=job.function,
        state=JobState.QUEUED,
        request=job.request,
        attempts=0,
        max_attempts=job.max_attempts,
        created_at=now,
        updated_at=now,
        available_at=now,
        callback_url=job.callback_url,
        callback_state=_first_callback_state(job),
    )


def _end_params(owner: str, job_id: str, finish: Finish, now: float) -> dict[str, Any]:
    result = finish.result
    params: dict[str, Any] = {
        "p_id": job_id,
        "p_owner": owner,
        "p_state": finish.state.value,
        "p_now": now,
        "p_error": finish.error,
        "p_status": None if result is None else result.status,
        "p_headers": None if result is None else json.dumps(result.headers),
        "p_body": None if result is None else result.body,
        "p_duration": None if result is None else result.duration,
    }
    if finish.state is JobState.QUEUED:
        params["p_available"] = now if finish.retry_at is None else finish.retry_at
    else:
        params["p_expires"] = finish.expires_at
    return params


def _due(now: float) -> sa.ColumnElement[bool]:
    """Queued and past its retry time, or running under a lease that ran out."""
    return sa.or_(
        sa.and_(jobs.c.state == JobState.QUEUED.value, jobs.c.available_at <= now),
        sa.and_(jobs.c.state == JobState.RUNNING.value, jobs.c.lease_until < now),
    )


def _pairs(encoded: str | None) -> tuple[tuple[str, str], ...]:
    if not encoded:
        return ()
    return tuple((str(k), str(v)) for k, v in json.loads(encoded))


def _job(row: sa.Row[Any], *, with_body: bool) -> Job:
    m = row._mapping
    result = None
    if m["result_status"] is not None:
        result = JobResult(
            status=m["result_status"],
            headers=_pairs(m["result_headers"]),
            body=bytes(m["result_body"]) if with_body else b"",
            duration=m["duration"] or 0.0,
        )
    return Job(
        id=m["id"],
        function=m["function"],
        state=JobState(m["state"]),
        request=JobRequest(
            method=m["method"],
            path=m["path"],
            query=m["query"],
            headers=_pairs(m["headers"]),
            body=bytes(m["body"]) if with_body else b"",
        ),
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        available_at=m["available_at"],
        callback_url=m["callback_url"],
        callback_state=CallbackState(m["callback_state"]),
        callback_attempts=m["callback_attempts"],
        callback_error=m["callback_error"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        expires_at=m["expires_at"],
        result=result,
        error=m["error"],
        owner=m["owner"],
    )
