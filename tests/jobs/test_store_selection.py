"""Which stores a platform opens: the stack's `stores:` block, the environment, or SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.platform import Platform
from nuvem.stack.stack import Stack
from nuvem.stack.store_urls import Stores
from nuvem.stores.job_stores import open_job_store
from nuvem.stores.postgres import PostgresRecordStore
from nuvem.stores.redis_jobs import RedisJobStore
from nuvem.stores.sql_jobs import SqlJobStore
from nuvem.stores.sql_records import SqliteRecordStore


def test_embedded_by_default(tmp_path: Path) -> None:
    platform = Platform.create(Settings(state_dir=tmp_path, admin_password="pw"))
    try:
        assert isinstance(platform.records, SqliteRecordStore)
        assert platform.jobs is not None
        assert isinstance(platform.jobs.store, SqlJobStore)
        assert (tmp_path / "jobs.db").exists()
    finally:
        platform.jobs.store.close()
        platform.records.close()


def test_stack_stores_select_redis_and_postgres(
    tmp_path: Path, clean_redis: str, postgres_url: str
) -> None:
    stack = Stack(stores=Stores(queue=clean_redis, records=postgres_url))
    platform = Platform.create(Settings(state_dir=tmp_path, admin_password="pw"), stack=stack)
    try:
        assert isinstance(platform.records, PostgresRecordStore)
        assert platform.jobs is not None
        assert isinstance(platform.jobs.store, RedisJobStore)
        assert not (tmp_path / "nuvem.db").exists()
    finally:
        platform.jobs.store.close()
        platform.records.close()


def test_a_redis_queue_needs_shared_records(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, queue_url="redis://127.0.0.1:1/0")
    with pytest.raises(BadRequest, match="postgresql://"):
        open_job_store(settings)
