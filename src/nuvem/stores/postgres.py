"""`PostgresRecordStore`: the records (functions, keys, events, settings) in PostgreSQL, shared
by every gateway that points at the same database."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from nuvem.stores.engines import postgres_engine
from nuvem.stores.sql_records import SqlRecordStore


class PostgresRecordStore(SqlRecordStore):
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        engine = postgres_engine(url)
        shown = sa.make_url(url).render_as_string(hide_password=True)
        super().__init__(engine, engine, f"records database {shown}", clock)
