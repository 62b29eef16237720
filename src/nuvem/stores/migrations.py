"""Versioned schemas: ordered migration steps, each applied once, in its own transaction.

A store lists its steps; `upgrade` reads the version the database is at, applies every
newer step and records the new version, all in one transaction that holds the database's
write lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so gateways
starting together upgrade once. A database newer than this nuvem is refused, untouched.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from nuvem.errors import NuvemError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int  # the schema version this step leads to; steps go 1, 2, 3, ...
    what: str  # one line for the log and for people reading the list
    apply: Callable[[Connection], None]


def upgrade(
    conn: Connection,
    steps: list[Migration],
    read_version: Callable[[Connection], int],
    write_version: Callable[[Connection, int], None],
    where: str,
) -> list[Migration]:
    """Bring the database at `conn` to the last step's version; returns the steps applied.

    `read_version` answers 0 for an empty database.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(where.encode()))))
    latest = steps[-1].version
    current = read_version(conn)
    if current > latest:
        raise NuvemError(
            f"{where} has schema version '{current}'; this nuvem knows versions up to {latest}",
            hint="upgrade nuvem, or point it at another state directory",
        )
    applied = [step for step in steps if step.version > current]
    for step in applied:
        step.apply(conn)
    if applied:
        write_version(conn, latest)
    return applied
