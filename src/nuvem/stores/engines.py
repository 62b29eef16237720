"""SQLAlchemy engines for the SQL stores: SQLite (embedded, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry

from nuvem.errors import BadRequest

BUSY_TIMEOUT_MS = 10_000
WAL_SIZE_LIMIT = 64 * 2**20

# An execution option read by the "begin" hook: transactions that write start with
# BEGIN IMMEDIATE, so they take the write lock up front and wait out busy_timeout
# instead of failing with "database is locked" when a read lock cannot be upgraded.
BEGIN_OPTION = "nuvem_sqlite_begin"


def sqlite_engine(
    path: Path, *, autocheckpoint: bool = True, synchronous: str = "NORMAL"
) -> tuple[Engine, Engine]:
    """The engine for reads and one whose transactions take the write lock at BEGIN.

    Without `autocheckpoint`, commits never checkpoint the WAL: the caller runs a
    WalCheckpointer (checkpointer.py). `synchronous` NORMAL is durable in WAL mode except
    for the last commits on power loss (or an OS crash); FULL syncs the WAL at each commit,
    so a commit that returned survives those too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(sa.URL.create("sqlite", database=str(path)))
    sa.event.listen(engine, "connect", functools.partial(_on_connect, synchronous=synchronous))
    if not autocheckpoint:
        sa.event.listen(engine, "connect", _no_autocheckpoint)
    sa.event.listen(engine, "begin", _on_begin)
    return engine, engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})


def postgres_engine(url: str) -> Engine:
    """An engine for a postgresql:// URL, driven by psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise BadRequest(
            f"records URL {parsed.render_as_string(hide_password=True)!r} is not PostgreSQL",
            "write postgresql://user:password@host:5432/database",
        )
    parsed = parsed.set(drivername="postgresql+psycopg")
    # pool_pre_ping: a gateway outlives database restarts without failing its next call.
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry, *, synchronous: str) -> None:
    # Take BEGIN away from the sqlite3 module (its legacy mode skips BEGIN before SELECT);
    # _on_begin emits it instead, so every transaction really is one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # WAL persists in the file; asking again on a WAL file only reads the mode. It must run
        # outside a transaction, which only this hook is sure of.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # When a writer starts the WAL over, it trims the file back to this size: without a
        # limit the file stays as large as the biggest backlog it ever held.
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    finally:
        cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
