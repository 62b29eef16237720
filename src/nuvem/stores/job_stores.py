"""Choosing the job store from settings: SQLite under the state dir unless told otherwise."""

from __future__ import annotations

from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.stores.job import JobStore
from nuvem.stores.sql_jobs import SqlJobStore

JOBS_FILE = "jobs.db"


def open_job_store(settings: Settings) -> JobStore:
    queue, records = settings.queue_url, settings.records_url
    if queue.startswith(("redis://", "rediss://")):
        from nuvem.stores.redis_jobs import RedisJobStore  # redis-py loads only when used

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
            "use redis://host:6379/0, or leave it empty for the embedded SQLite queue",
        )
    if records.startswith("postgresql"):
        return SqlJobStore.postgres(records)
    return SqlJobStore.sqlite(settings.state_dir / JOBS_FILE)
