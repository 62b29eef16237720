"""`SqlRecordStore`: the `RecordStore` on SQL (PostgreSQL's builds on it, in postgres.py), and
`SqliteRecordStore`, the embedded one in one SQLite file (WAL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from nuvem.errors import StoreUnreachable
from nuvem.stack.function import FunctionSpec
from nuvem.stores.engines import sqlite_engine
from nuvem.stores.migrations import Migration, upgrade
from nuvem.stores.record_codec import (
    SCHEMA_VERSION_SETTING,
    check_replicas,
    decode_functions,
    encode_data,
    encode_functions,
    encode_spec,
    event_record,
    function_not_found,
    function_record,
)
from nuvem.stores.records import ApiKeyRecord, EventRecord, FunctionRecord

_metadata = sa.MetaData()

_functions = sa.Table(
    "functions",
    _metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

_api_keys = sa.Table(
    "api_keys",
    _metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("secret_hash", sa.String, nullable=False),
    sa.Column("functions", sa.Text, nullable=True),  # JSON list; NULL means every function
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("rate", sa.Float, nullable=True),  # since schema 3
    sa.Column("burst", sa.Integer, nullable=True),  # since schema 3
)

_events = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("function", sa.String, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("events_by_function", "function", "id"),
    # AUTOINCREMENT: ids are never reused, so a follower's after_id cursor stays valid.
    sqlite_autoincrement=True,
)

_settings = sa.Table(
    "settings",
    _metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _create_v1(conn: Connection) -> None:
    # checkfirst: files made before migrations existed are at version 1 with these tables.
    _metadata.create_all(conn, tables=[_functions, _api_keys, _events, _settings])


def _index_events_by_time(conn: Connection) -> None:
    # Plain DDL: an sa.Index built here would attach itself to the shared table object.
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS events_by_time ON events (time)")


def _add_key_rate_limits(conn: Connection) -> None:
    # A database created at this version already has them (create_all makes today's table).
    have = {column["name"] for column in sa.inspect(conn).get_columns("api_keys")}
    for name, kind in (("rate", "FLOAT"), ("burst", "INTEGER")):
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE api_keys ADD COLUMN {name} {kind}")


MIGRATIONS = [
    Migration(1, "functions, api_keys, events and settings", _create_v1),
    Migration(2, "index events by time, for pruning old events", _index_events_by_time),
    Migration(3, "a rate limit of its own for each API key", _add_key_rate_limits),
]


def _read_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("settings"):
        return 0
    found = conn.execute(
        sa.select(_settings.c.value).where(_settings.c.name == SCHEMA_VERSION_SETTING)
    ).scalar_one_or_none()
    if found is None:
        return 0
    return int(found) if found.isdigit() else 10**9  # unreadable: refuse, as if newer


def _write_version(conn: Connection, version: int) -> None:
    updated = conn.execute(
        sa.update(_settings)
        .where(_settings.c.name == SCHEMA_VERSION_SETTING)
        .values(value=str(version))
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(_settings).values(name=SCHEMA_VERSION_SETTING, value=str(version)))


class SqlRecordStore:
    """Functions, API keys, events and settings in an SQL database.

    Safe to share between threads: each call checks a connection out of the engine's pool
    and runs in its own transaction. The schema is upgraded on open (see migrations.py).
    """

    def __init__(
        self, engine: Engine, writer: Engine, where: str, clock: Callable[[], float]
    ) -> None:
        self.where = where
        self._clock = clock
        self._engine = engine
        self._writer = writer
        try:
            with self._writer.begin() as conn:
                upgrade(conn, MIGRATIONS, _read_version, _write_version, where)
        except BaseException:
            self._engine.dispose()
            raise

    # functions

    def put_function(self, spec: FunctionSpec, replicas: int) -> FunctionRecord:
        check_replicas(replicas)
        now = self._clock()
        with self._writer.begin() as conn:
            created = conn.execute(
                sa.select(_functions.c.created_at).where(_functions.c.name == spec.name)
            ).scalar_one_or_none()
            values = {
                "spec": encode_spec(spec),
                "replicas": replicas,
                "updated_at": now,
            }
            if created is None:
                created = now
                conn.execute(
                    sa.insert(_functions).values(name=spec.name, created_at=created, **values)
                )
            else:
                conn.execute(
                    sa.update(_functions).where(_functions.c.name == spec.name).values(**values)
                )
        return FunctionRecord(spec=spec, replicas=replicas, created_at=created, updated_at=now)

    def get_function(self, name: str) -> FunctionRecord | None:
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(_functions).where(_functions.c.name == name)).first()
        return None if row is None else _function_record(row)

    def list_functions(self) -> list[FunctionRecord]:
        """Every function, by name."""
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(_functions).order_by(_functions.c.name)).all()
        return [_function_record(row) for row in rows]

    def delete_function(self, name: str) -> bool:
        with self._writer.begin() as conn:
            result = conn.execute(sa.delete(_functions).where(_functions.c.name == name))
        return result.rowcount > 0

    def set_replicas(self, name: str, replicas: int) -> None:
        """Sets the desired replica count and updated_at; NotFound for an unknown name."""
        check_replicas(replicas)
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(_functions)
                .where(_functions.c.name == name)
                .values(replicas=replicas, updated_at=self._clock())
            )
        if result.rowcount == 0:
            raise function_not_found(name)

    # API keys

    def put_key(self, key: ApiKeyRecord) -> None:
        """Stores the key, replacing any key with the same id."""
        values = {
            "name": key.name,
            "secret_hash": key.secret_hash,
            "functions": encode_functions(key.functions),
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
            "rate": key.rate,
            "burst": key.burst,
        }
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(_api_keys).where(_api_keys.c.id == key.id).values(**values)
            )
            if result.rowcount == 0:
                conn.execute(sa.insert(_api_keys).values(id=key.id, **values))

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record; raises StoreUnreachable when the database does not answer (the
        gateway then keeps using a record it has seen)."""
        try:
            with self._engine.begin() as conn:
                row = conn.execute(sa.select(_api_keys).where(_api_keys.c.id == key_id)).first()
        except OperationalError as exc:
            raise StoreUnreachable(
                f"the records database does not answer ({type(exc.orig).__name__})",
                "retry in a moment; if it lasts, check the server in NUVEM_RECORDS_URL",
            ) from exc
        return None if row is None else _key_record(row)

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(_api_keys).order_by(_api_keys.c.created_at, _api_keys.c.id)
            ).all()
        return [_key_record(row) for row in rows]

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Marks the key revoked; False if there is no such key. Revoking twice keeps the
        first time."""
        with self._writer.begin() as conn:
            exists = conn.execute(sa.select(_api_keys.c.id).where(_api_keys.c.id == key_id)).first()
            conn.execute(
                sa.update(_api_keys)
                .where(_api_keys.c.id == key_id, _api_keys.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
        return exists is not None

    # events

    def add_event(
        self,
        kind: str,
        function: str | None,
        message: str,
        data: dict[str, Any] | None = None,
        when: float | None = None,
    ) -> EventRecord:
        encoded = encode_data(data)
        at = self._clock() if when is None else when
        with self._writer.begin() as conn:
            event_id = conn.execute(
                sa.insert(_events)
                .values(time=at, kind=kind, function=function, message=message, data=encoded)
                .returning(_events.c.id)
            ).scalar_one()
        return event_record(int(event_id), at, kind, function, message, encoded)

    def list_events(
        self, function: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """As `RecordStore.list_events` says."""
        if limit <= 0:
            return []
        query = sa.select(_events)
        if function is not None:
            query = query.where(_events.c.function == function)
        if after_id > 0:
            query = query.where(_events.c.id > after_id).order_by(_events.c.id).limit(limit)
        else:
            query = query.order_by(_events.c.id.desc()).limit(limit)
        with self._engine.begin() as conn:
            rows = conn.execute(query).all()
        events = [_event_record(row) for row in rows]
        return events if after_id > 0 else events[::-1]

    # settings

    def get_setting(self, name: str) -> str | None:
        with self._engine.begin() as conn:
            value: str | None = conn.execute(
                sa.select(_settings.c.value).where(_settings.c.name == name)
            ).scalar_one_or_none()
        return value

    def set_setting(self, name: str, value: str) -> None:
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(_settings).where(_settings.c.name == name).values(value=value)
            )
            if result.rowcount == 0:
                conn.execute(sa.insert(_settings).values(name=name, value=value))

    def close(self) -> None:
        """Closes every pooled connection; calling it again is harmless."""
        self._engine.dispose()


class SqliteRecordStore(SqlRecordStore):
    """The records in one SQLite file, opened in WAL mode so readers never wait for the
    writer."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        engine, writer = sqlite_engine(path)
        super().__init__(engine, writer, f"records file {path}", clock)


def _function_record(row: sa.Row[Any]) -> FunctionRecord:
    return function_record(row.spec, row.replicas, row.created_at, row.updated_at)


def _key_record(row: sa.Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        functions=decode_functions(row.functions),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        rate=row.rate,
        burst=row.burst,
    )


def _event_record(row: sa.Row[Any]) -> EventRecord:
    return event_record(row.id, row.time, row.kind, row.function, row.message, row.data)
