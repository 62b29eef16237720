"""WAL checkpoints off the write path: the WAL is copied back and reused, and stays small."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from nuvem.stores import checkpointer, engines
from nuvem.stores.checkpointer import WalCheckpointer

LIMIT = 256 * 1024


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "WAL_SIZE_LIMIT", LIMIT)
    monkeypatch.setattr(checkpointer, "TRUNCATE_ABOVE", LIMIT)


def wal_size(path: Path) -> int:
    return path.with_name(path.name + "-wal").stat().st_size


def fill(writer: sa.Engine, rows: int, start: int = 0) -> None:
    with writer.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO t VALUES (:i, :blob)"),
            [{"i": start + i, "blob": b"x" * 4000} for i in range(rows)],
        )


@pytest.fixture
def database(tmp_path: Path, small_limits: None) -> tuple[Path, sa.Engine]:
    path = tmp_path / "wal.db"
    _, writer = engines.sqlite_engine(path, autocheckpoint=False)
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (i INTEGER PRIMARY KEY, blob BLOB)"))
    return path, writer


def test_a_checkpointed_wal_is_reused_and_trimmed(database: tuple[Path, sa.Engine]) -> None:
    path, writer = database
    ckpt = WalCheckpointer(path, thread=False)
    fill(writer, 500)  # about 2 MiB: no automatic checkpoint on these connections
    assert wal_size(path) > 4 * LIMIT
    ckpt.step()
    fill(writer, 1, start=1000)  # this writer starts the WAL over and trims the file
    assert wal_size(path) <= LIMIT
    assert ckpt.truncated == 0  # a PASSIVE checkpoint was enough
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (501,)
    ckpt.stop()
    writer.dispose()


def test_a_reader_on_an_old_snapshot_postpones_the_truncate_without_failing(
    database: tuple[Path, sa.Engine],
) -> None:
    path, writer = database
    ckpt = WalCheckpointer(path, thread=False)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds the snapshot before the fill
    fill(writer, 500)
    ckpt.step()  # PASSIVE copies nothing past the reader; TRUNCATE waits briefly, then yields
    assert ckpt.truncated == 0
    fill(writer, 1, start=1000)  # writers were not left blocked
    reader.execute("COMMIT")
    reader.close()
    ckpt.step()
    fill(writer, 1, start=1001)
    assert wal_size(path) <= LIMIT
    ckpt.stop()
    writer.dispose()
