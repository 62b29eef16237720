"""Choosing the job store from settings: SQLite under the state dir unless told otherwise."""

from __future__ import annotations

from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.stack.redis_url import FORMS, RedisUrl, is_redis_url
from nuvem.stores.job import JobStore
from nuvem.stores.sql_jobs import SqlJobStore

JOBS_FILE = "jobs.db"


def open_job_store(settings: Settings) -> JobStore:
    queue, records = settings.queue_url, settings.records_url
    if is_redis_url(queue):
        from nuvem.stores.redis_jobs import RedisJobStore  # redis-py loads only when used

        try:
            RedisUrl.parse(queue)
        except ValueError as exc:
            raise BadRequest(f"queue URL: {exc}", f"use {FORMS}") from None

        if not records.startswith("postgresql"):
            raise BadRequest(
                f"queue {queue!r} is Redis but records are {records or 'embedded SQLite'!r}",
                "a Redis queue is shared between gateways, so the job records must be too: "
                "set stores.records (NUVEM_RECORDS_URL) to a postgresql:// URL",
            )
        return RedisJobStore(SqlJobStore.postgres(records), queue)
    if queue and queue not in ("sqlite", "embedded") and not queue.startswith("postgresql"):
        raise BadRequest(
            f"queue URL {queue!r} is not supported",
            f"use {FORMS}, or leave it empty for the embedded SQLite queue",
        )
    if records.startswith("postgresql"):
        return SqlJobStore.postgres(records)
    return SqlJobStore.sqlite(settings.state_dir / JOBS_FILE)
