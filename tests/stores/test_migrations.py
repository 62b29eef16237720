"""Upgrading keeps data: a records file from before migrations opens at the new version."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from nuvem.errors import NuvemError
from nuvem.stores import sql_jobs, sql_records
from nuvem.stores.job import CallbackState, JobRequest, NewJob
from nuvem.stores.migrations import Migration, upgrade
from nuvem.stores.postgres import PostgresRecordStore
from nuvem.stores.record_codec import SCHEMA_VERSION
from nuvem.stores.sql_jobs import SqlJobStore
from nuvem.stores.sql_records import SqliteRecordStore

# The schema nuvem 0.1.0 wrote, before versioned migrations: version 1 in settings.
V1 = """
CREATE TABLE functions (name VARCHAR PRIMARY KEY, spec TEXT NOT NULL, replicas INTEGER NOT NULL,
    created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL);
CREATE TABLE api_keys (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL,
    secret_hash VARCHAR NOT NULL, functions TEXT, created_at FLOAT NOT NULL, revoked_at FLOAT);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time FLOAT NOT NULL,
    kind VARCHAR NOT NULL, function VARCHAR, message TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX events_by_function ON events (function, id);
CREATE TABLE settings (name VARCHAR PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO settings VALUES ('schema_version', '1'), ('admin_password_hash', 'kept');
INSERT INTO functions VALUES ('echo',
    '{"name": "echo", "handler": "functions:echo"}', 2, 1.0, 2.0);
INSERT INTO events (time, kind, function, message, data)
    VALUES (3.0, 'deployed', 'echo', 'deployed echo', '{}');
INSERT INTO api_keys VALUES ('0123456789ab', 'ci', 'hash', '["echo"]', 4.0, NULL);
"""


def test_sqlite_v1_file_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "nuvem.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(V1)
        conn.commit()
    store = SqliteRecordStore(path)
    try:
        assert store.get_setting("schema_version") == str(SCHEMA_VERSION)
        assert store.get_setting("admin_password_hash") == "kept"
        (function,) = store.list_functions()
        assert function.spec.name == "echo"
        assert function.replicas == 2
        assert [e.message for e in store.list_events()] == ["deployed echo"]
        # Schema 3 gave keys rate limits of their own: an old key keeps the default.
        old_key = store.get_key("0123456789ab")
        assert old_key is not None
        assert (old_key.functions, old_key.rate, old_key.burst) == (("echo",), None, None)
        store.put_key(dataclasses.replace(old_key, rate=1.5, burst=3))
        assert store.get_key("0123456789ab") == dataclasses.replace(old_key, rate=1.5, burst=3)
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
    assert "events_by_time" in indexes


def test_upgrading_twice_applies_nothing(tmp_path: Path) -> None:
    SqliteRecordStore(tmp_path / "nuvem.db").close()
    applied: list[int] = []
    steps = [Migration(1, "one", lambda conn: applied.append(1))]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    version = {"v": 0}
    with engine.begin() as conn:
        upgrade(conn, steps, lambda c: version["v"], lambda c, v: version.update(v=v), "db")
        upgrade(conn, steps, lambda c: version["v"], lambda c, v: version.update(v=v), "db")
    engine.dispose()
    assert applied == [1]
    assert version["v"] == 1


def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    steps = [Migration(1, "one", lambda conn: None)]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db'}")
    with engine.begin() as conn, pytest.raises(NuvemError, match="schema version '7'"):
        upgrade(conn, steps, lambda c: 7, lambda c, v: None, "db")
    engine.dispose()


Store = PostgresRecordStore | SqlJobStore


def counted(steps: list[Migration], schema: str, applied: list[str]) -> list[Migration]:
    """The same steps, each noting in `applied` when it runs."""

    def step_that_counts(step: Migration) -> Migration:
        def apply(conn: Connection) -> None:
            applied.append(f"{schema} {step.version}")  # list.append is atomic
            step.apply(conn)

        return dataclasses.replace(step, apply=apply)

    return [step_that_counts(step) for step in steps]


def test_postgres_gateways_starting_together_upgrade_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[str] = []
    monkeypatch.setattr(
        sql_records, "MIGRATIONS", counted(sql_records.MIGRATIONS, "records", applied)
    )
    monkeypatch.setattr(sql_jobs, "MIGRATIONS", counted(sql_jobs.MIGRATIONS, "jobs", applied))
    openers: list[Callable[[], Store]] = [
        *[functools.partial(PostgresRecordStore, postgres_url)] * 3,
        *[functools.partial(SqlJobStore.postgres, postgres_url)] * 2,
    ]
    # Five gateways open the same empty database at one moment, each on a thread of its own.
    start = threading.Barrier(len(openers))

    def open_together(opener: Callable[[], Store]) -> Store:
        start.wait(timeout=30)
        return opener()

    with ThreadPoolExecutor(len(openers)) as pool:
        outcomes = [pool.submit(open_together, opener) for opener in openers]
        wait(outcomes, timeout=120)
    opened = [o.result() for o in outcomes if o.exception() is None]
    try:
        for outcome in outcomes:
            outcome.result()  # a gateway that failed to open fails the test, with its error
        records = [s for s in opened if isinstance(s, PostgresRecordStore)]
        assert len(records) == 3
        assert {s.get_setting("schema_version") for s in records} == {str(SCHEMA_VERSION)}
        expected = [f"records {m.version}" for m in sql_records.MIGRATIONS]
        expected += [f"jobs {m.version}" for m in sql_jobs.MIGRATIONS]
        assert sorted(applied) == sorted(expected)  # every step once, by one of them
    finally:
        for store in opened:
            store.close()


def test_a_jobs_table_of_schema_1_gains_the_callback_error(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    SqlJobStore.sqlite(path).close()
    with closing(sqlite3.connect(path)) as conn:  # back to what schema 1 wrote
        conn.execute("ALTER TABLE jobs DROP COLUMN callback_error")
        conn.execute("UPDATE jobs_schema SET version = 1")
        conn.commit()
    store = SqlJobStore.sqlite(path)
    try:
        request = JobRequest("POST", "/", "", (), b"x")
        store.submit(NewJob("a", "f", request, 1, "http://example.com/cb"))
        store.callback_done("a", CallbackState.PENDING, 1.0, "it answered 502")
        job = store.get("a")
        assert job is not None
        assert job.callback_error == "it answered 502"
    finally:
        store.close()
