"""Choosing the record store: PostgreSQL when a records URL is set, else SQLite in state_dir."""

from __future__ import annotations

from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.stores.records import RecordStore
from nuvem.stores.sql_records import SqliteRecordStore

RECORDS_FILE = "nuvem.db"


def open_record_store(settings: Settings) -> RecordStore:
    url = settings.records_url
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        from nuvem.stores.postgres import PostgresRecordStore  # psycopg loads only when used

        return PostgresRecordStore(url.replace("postgres://", "postgresql://", 1))
    if url and url not in ("sqlite", "embedded"):
        raise BadRequest(
            f"records URL {url!r} is not supported",
            "use postgresql://user:password@host:5432/database, or leave it empty for the "
            "embedded SQLite file",
        )
    return SqliteRecordStore(settings.state_dir / RECORDS_FILE)
